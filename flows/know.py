"""The ``audit`` and ``drift`` flows: what is wrong with a set's data, and whether tonight's items still look
like what a head was trained on. Each publishes its report as an artifact; drift also emits the event
``mmfeat.drift`` (the figures in its payload, ``mmfeat.drifted`` among its resource's labels), so that a
Prefect automation can alert (docs/know-your-data.md)."""
from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.events import emit_event

from flows.artifacts import artifact_key, library_logs_to_run
from pipeline.insight import audit, drift
from pipeline.insight.drift import history_picture

DRIFT_EVENT = "mmfeat.drift"


@task(name="audit")
def audit_task(feature_set: str, overrides: dict, store: str | None) -> dict:
    return audit(feature_set, overrides, store)


@flow(name="audit")
def audit_flow(feature_set: str, overrides: dict[str, str] | None = None, store: str | None = None) -> dict:
    """Audit a feature set (duplicates, leakage, likely label errors, outliers); returns the counts."""
    from pipeline.store import FeatureStore

    with library_logs_to_run():
        result = audit_task(feature_set, overrides or {}, store)
    st = FeatureStore(store)
    with st.fs.open_input_stream(result["report"]) as f:
        report = f.read().decode()
    create_markdown_artifact(report, key=artifact_key("audit-report", result["feature_set"]),
                             description=f"audit of {result['feature_set']}")
    create_table_artifact([{"finding": k, "count": v} for k, v in result["counts"].items()],
                          key=artifact_key("audit-counts", result["feature_set"]))
    return result["counts"]


@task(name="drift")
def drift_task(feature_set: str, reference: str, current: str, store: str | None) -> dict:
    return drift(feature_set, reference, current, store)


@flow(name="drift")
def drift_flow(feature_set: str, reference: str, current: str = "latest", store: str | None = None) -> dict:
    """Drift figures of a set's newest items against what ``reference`` (a head, or a run) trained on."""
    with library_logs_to_run():
        figures = drift_task(feature_set, reference, current, store)
    publish_drift(figures, store)
    return figures


def publish_drift(figures: dict, store: str | None) -> None:
    """The ``mmfeat.drift`` event and the drift artifact (the figures over nights as a picture)."""
    name = figures["feature_set"]
    payload = {k: v for k, v in figures.items() if k not in ("reject_rates",)}
    emit_event(DRIFT_EVENT, resource={"prefect.resource.id": f"mmfeat.feature-set.{name}",
                                      "prefect.resource.name": name,
                                      "mmfeat.drifted": "true" if figures["drifted"] else "false"}, payload=payload)
    rows = [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |"
            for k, v in figures.items() if k in ("domain_auc", "mmd2", "mmd_p", "mean_shift", "label_psi",
                                                 "predicted_psi", "drifted", "reference", "current")]
    picture = history_picture(name, store)
    text = "\n".join([f"# Drift of {name}", "", "| figure | value |", "|---|---|", *rows, "",
                      *([f"![drift over nights]({picture})"] if picture else [])])
    create_markdown_artifact(text, key=artifact_key("drift", name), description=f"drift of {name}")

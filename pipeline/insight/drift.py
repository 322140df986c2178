"""``mmfeat drift``: does tonight's data still look like what a head was trained on?

The current rows (the items the dataset's latest run added or changed, or the whole view) against a
reference (the items a head run trained on, or the items of one of the dataset's runs), as a few named
statistics with thresholds: the mean's shift in units of the reference's spread; a kernel two-sample
statistic (MMD², RBF kernel at the median distance, with a permutation p-value); a domain classifier's
cross-validated AUC (about 0.5 when nothing drifted); the label distribution's and, with a head, the
predicted classes' population stability index (PSI); the reject rate of each run. Each result is kept
(``<set>/_drift/<time>.json``), so the figures can be followed over nights.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import MmfeatError
from ..store import FeatureStore, feature_matrix, files

AUC_DRIFT, PSI_DRIFT = 0.6, 0.25  # above: drifted (AUC 0.5 is chance; PSI 0.25 the usual "significant shift")


def drift(feature_set: str, reference: str, current: str = "latest", store: str | None = None,
          sample: int = 2000, seed: int = 0) -> dict[str, Any]:
    """The drift figures of ``feature_set``'s ``current`` rows ("latest": what the dataset's latest run added
    or changed; "all": the whole view) against ``reference`` (a head, or a run id of the dataset)."""
    st = FeatureStore(store)
    fs = st.resolve(feature_set)
    ref, head = _reference(fs, reference, st)
    cur = _current(fs, current)
    if cur.num_rows == 0 or ref.num_rows == 0:
        raise MmfeatError(f"nothing to compare: {ref.num_rows} reference and {cur.num_rows} current rows "
                          f"({current!r}; --current all compares the whole view)")
    rng = np.random.default_rng(seed)
    a, b = _sample(_dense(ref, fs), rng, sample), _sample(_dense(cur, fs), rng, sample)
    figures = {"reference": reference, "current": current, "rows": {"reference": ref.num_rows, "current": cur.num_rows},
               "mean_shift": mean_shift(a, b), **mmd(a, b, rng), "domain_auc": domain_auc(a, b, seed),
               "label_psi": psi(ref["label"].to_pylist(), cur["label"].to_pylist())}
    if head is not None:
        figures["predicted_psi"] = _predicted_psi(head, fs, ref, cur)
    figures["reject_rates"] = _reject_rates(fs)
    figures["drifted"] = bool(figures["domain_auc"] >= AUC_DRIFT or figures["label_psi"] >= PSI_DRIFT
                              or figures.get("predicted_psi", 0) >= PSI_DRIFT)
    figures["time"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    figures["feature_set"] = fs.name
    files.write_json_atomic(st.fs, files.join(fs.path, "_drift", figures["time"].replace(":", "") + ".json"), figures)
    return figures


def _reference(fs, reference: str, st) -> tuple[pa.Table, str | None]:
    """The reference rows (id, label, features) and the head run when the reference is a head."""
    from ..heads.artifacts import resolve_head_dir
    from ..store.pins import PIN_SCHEMA, SNAPSHOT
    import pyarrow.parquet as pq

    try:
        run = resolve_head_dir(reference, st)
    except MmfeatError:
        run = None
    if run is not None:
        pins = pq.read_table(os.path.join(run, SNAPSHOT)).cast(PIN_SCHEMA)
        pins = pins.filter(pc.equal(pins["config_id"], fs.config_id))
        if pins.num_rows == 0:
            raise MmfeatError(f"the head {reference} was not trained on {fs.name}")
        return fs.rows_for(pins, ["id", "label", "features"]), run
    from ..store.items import check_run

    try:
        check_run(reference)
    except MmfeatError:
        raise MmfeatError(f"--reference {reference!r} is neither a head nor a run of {fs.manifest['dataset']} "
                          f"(mmfeat heads and mmfeat log {fs.manifest['dataset']} list them)") from None
    path = files.join(fs.items.path, "_log", f"{reference}.items.parquet")
    try:
        items = pq.read_table(path, filesystem=fs.fs)
    except (OSError, pa.ArrowInvalid):
        raise MmfeatError(f"no items kept of run {reference} (the last three runs' are): use a head as the "
                          "reference") from None
    pins = pa.table({"config_id": pa.array([fs.config_id] * items.num_rows), "id": items["id"],
                     "content": items["content"], "label": items["label"],
                     "split": pc.coalesce(items["split"], items["assigned_split"])})
    return fs.rows_for(pins, ["id", "label", "features"]), None


def _current(fs, current: str) -> pa.Table:
    view = fs.table(columns=["id", "label", "features"])
    if current == "all":
        return view
    if current != "latest":
        raise MmfeatError(f"current must be latest or all; got {current!r}")
    runs = fs.items.log()
    if not runs:
        return view.slice(0, 0)
    changed = fs.items.changes(runs[0]["run"])
    new = changed.filter(pc.is_in(changed["change"], pa.array(["added", "content_changed"])))["id"]
    stem = pc.list_element(pc.split_pattern(view["id"], "#"), 0)  # audio windows belong to their clip
    return view.filter(pc.is_in(stem, value_set=new))


def _dense(table: pa.Table, fs) -> np.ndarray:
    x = feature_matrix(table["features"], fs.dim)
    if hasattr(x, "tocsr"):  # tf-idf: a dense sketch of the sparse rows
        rng = np.random.default_rng(1)
        x = np.asarray(x @ (rng.normal(size=(x.shape[1], 128)).astype(np.float32) / np.sqrt(128)))
    return np.asarray(x, np.float32)


def _sample(x: np.ndarray, rng, n: int) -> np.ndarray:
    return x[rng.permutation(len(x))[:n]] if len(x) > n else x


def mean_shift(a: np.ndarray, b: np.ndarray) -> float:
    """The distance between the means, in units of the reference's root-mean-square spread."""
    spread = np.sqrt(np.mean(a.var(0))) + 1e-12
    return float(np.linalg.norm(a.mean(0) - b.mean(0)) / spread / np.sqrt(a.shape[1]))


def mmd(a: np.ndarray, b: np.ndarray, rng, permutations: int = 50, cap: int = 500) -> dict[str, float]:
    """Unbiased MMD² with an RBF kernel at the pooled median distance, and its permutation p-value."""
    a, b = _sample(a, rng, cap), _sample(b, rng, cap)
    z = np.concatenate([a, b]).astype(np.float64)
    sq = np.maximum((z * z).sum(1)[:, None] + (z * z).sum(1)[None, :] - 2 * z @ z.T, 0)
    gamma = 1.0 / max(np.median(sq[np.triu_indices(len(z), 1)]), 1e-12)
    kernel = np.exp(-gamma * sq)

    def statistic(first: np.ndarray) -> float:
        second = ~first
        kxx, kyy, kxy = kernel[np.ix_(first, first)], kernel[np.ix_(second, second)], kernel[np.ix_(first, second)]
        m, n = first.sum(), second.sum()
        return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                     - 2 * kxy.mean())

    labels = np.arange(len(z)) < len(a)
    observed = statistic(labels)
    null = [statistic(rng.permutation(labels)) for _ in range(permutations)]
    return {"mmd2": observed, "mmd_p": float((1 + sum(v >= observed for v in null)) / (1 + permutations))}


def domain_auc(a: np.ndarray, b: np.ndarray, seed: int = 0) -> float:
    """Cross-validated ROC AUC of a logistic regression telling the current rows from the reference."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n = min(len(a), len(b))
    if n < 10:
        return float("nan")
    x = np.concatenate([a[:n], b[:n]])
    y = np.r_[np.zeros(n), np.ones(n)]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    folds = min(5, n // 2)
    proba = cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, proba))


def psi(reference: list, current: list, eps: float = 1e-4) -> float:
    """Population stability index of a categorical distribution (labels, predicted classes)."""
    ref = [v for v in reference if v is not None]
    cur = [v for v in current if v is not None]
    if not ref or not cur:
        return 0.0
    values = sorted(set(ref) | set(cur))
    p = np.array([ref.count(v) for v in values], float) / len(ref) + eps
    q = np.array([cur.count(v) for v in values], float) / len(cur) + eps
    return float(np.sum((q - p) * np.log(q / p)))


def _predicted_psi(run: str, fs, ref: pa.Table, cur: pa.Table) -> float | None:
    from ..heads.artifacts import load_head
    from ..heads.registry import kind_of_card

    model, card = load_head(run)
    if [s["config_id"] for s in card["feature_sets"]] != [fs.config_id] or kind_of_card(card).input_column([fs]) != "features":
        return None
    kind, classes = kind_of_card(card), np.array(card["classes"], dtype=object)
    predicted = [list(classes[kind.predict(model, feature_matrix(t["features"], fs.dim), card).argmax(1)])
                 for t in (ref, cur)]
    return psi(*predicted)


def _reject_rates(fs) -> list[dict[str, Any]]:
    """The share of rejects each published run left (newest first), as its record says."""
    return [{"run": r["run"], "rate": r["rejected"] / r["items"]} for r in fs.items.log()[:30]
            if isinstance(r.get("rejected"), int) and r.get("items")]


def history(fs) -> list[dict[str, Any]]:
    """Every drift result kept for the set, oldest first."""
    out = []
    for name in files.list_names(fs.fs, files.join(fs.path, "_drift")):
        try:
            out.append(json.loads(json.dumps(files.read_json(fs.fs, files.join(fs.path, "_drift", name)))))
        except (OSError, ValueError):
            continue
    return sorted(out, key=lambda r: r.get("time", ""))


def history_picture(feature_set: str, store: str | None = None) -> str | None:
    """The figures of every drift result kept for the set, over time, as a data URI (None before two)."""
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = history(FeatureStore(store).resolve(feature_set))
    if len(runs) < 2:
        return None
    fig, ax = plt.subplots(figsize=(6, 3))
    for key in ("domain_auc", "mean_shift", "label_psi"):
        ax.plot(range(len(runs)), [r.get(key) or 0 for r in runs], "o-", label=key)
    ax.axhline(AUC_DRIFT, color="gray", linestyle="--", label=f"AUC {AUC_DRIFT} (drift)")
    ax.set_xticks(range(len(runs)), [r["time"][5:16] for r in runs], rotation=45, ha="right", fontsize=7)
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=70)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()

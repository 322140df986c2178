"""The ``finetune`` flow: pretrain -> fine-tune from stored activations, as one run.

Extract a block's activations (the ``extract`` flow as a subflow), train the ``finetune`` head on them
(the ``train-head`` flow as a subflow), and, when ``export_to`` is given, write the tuned network as cnn
weights (one library call). Full fine-tuning on raw inputs (a GPU flow) is not built yet.
"""
from __future__ import annotations

from prefect import flow, get_run_logger, task

from flows.extract import extract_flow
from flows.heads import train_head_flow
from pipeline.heads.finetune import export_weights


@task(name="export-weights")
def export_task(head_dir: str, out: str) -> dict:
    return export_weights(head_dir, out)


@flow(name="finetune")
def finetune_flow(source: str, dataset: str | None = None, model: str = "efficientnet_lite1",
                  activations: str = "_blocks.19", label: str = "label", overrides: dict[str, str] | None = None,
                  store: str | None = None, out: str | None = None, export_to: str | None = None) -> str:
    """Fine-tune the pretrained top above ``activations`` of ``model`` on the images of ``source``;
    returns the head card's path. ``overrides``: head keys (lr, max_epochs, patience, ...)."""
    feature_set = extract_flow(source, "image", "cnn", {"model": model, "activations": activations},
                               dataset=dataset, store=store)
    card = train_head_flow([feature_set], label=label, head="finetune", overrides=overrides, store=store, out=out)
    if export_to:
        import os

        result = export_task(os.path.dirname(card), export_to)
        get_run_logger().info("tuned weights: %s (extract --set model=%s --set weights=%s)", result["path"],
                              result["model"], result["path"])
    return card

"""The ``finetune`` flow: pretrain -> fine-tune, as one run.

With ``activations`` (a block, e.g. ``_blocks.19``): extract that block's activations (the ``extract``
flow as a subflow) and train the ``finetune`` head on them, tuning the layers above it from the store
(cheap: a CPU does it). With ``activations=None``: extract pooled features and fine-tune the network
itself on the images (its last ``tune_blocks`` blocks, or all layers; mixed precision on a GPU), which
extracts the set again with the tuned weights. Then, when ``export_to`` is given, write the tuned
network as cnn weights (one library call).
"""
from __future__ import annotations

from prefect import flow, get_run_logger, task

from flows.extract import extract_flow
from flows.heads import train_head_flow
from pipeline.heads.export import export


@task(name="export-weights")
def export_task(head_dir: str, out: str) -> dict:
    return export(head_dir, out)


@flow(name="finetune")
def finetune_flow(source: str, dataset: str | None = None, model: str = "efficientnet_lite1",
                  activations: str | None = "_blocks.19", tune_blocks: int | None = None, label: str = "label",
                  overrides: dict[str, str] | None = None, store: str | None = None, out: str | None = None,
                  export_to: str | None = None) -> str:
    """Fine-tune ``model`` on the images of ``source``: the top above ``activations`` from the store, or
    (``activations=None``) the network on the images, its last ``tune_blocks`` blocks (None: all layers).
    Returns the head card's path. ``overrides``: head keys (lr, max_epochs, patience, ...)."""
    extract_config = {"model": model, **({"activations": activations} if activations else {})}
    feature_set = extract_flow(source, "image", "cnn", extract_config, dataset=dataset, store=store)
    # tune_blocks with activations reaches the library, which refuses it in one line
    head = dict(overrides or {}, **({"tune_blocks": str(tune_blocks)} if tune_blocks is not None else {}))
    card = train_head_flow([feature_set], label=label, head="finetune", overrides=head, store=store, out=out)
    if export_to:
        import os

        result = export_task(os.path.dirname(card), export_to)
        get_run_logger().info("tuned weights: %s (extract --set model=%s --set weights=%s)", result["path"],
                              result["model"], result["path"])
    return card

"""Prefect 3 flows over the mmfeat library: ``extract``, ``train-head``, ``predict``, ``finetune``, ``audit``, ``drift``.

Thin wrappers: every task is one library call. Run them directly (``extract_flow(...)``), serve them
(``flow.serve()``) or deploy them with ``prefect deploy --all`` (prefect.yaml).
"""
from flows.extract import extract_flow
from flows.finetune import finetune_flow
from flows.heads import predict_flow, train_head_flow
from flows.know import audit_flow, drift_flow

__all__ = ["extract_flow", "train_head_flow", "predict_flow", "finetune_flow", "audit_flow", "drift_flow"]

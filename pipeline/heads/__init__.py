"""Heads: linear and MLP classifiers trained on stored features."""
from .predict import list_heads, predict, predict_source
from .train import HeadConfig, train_head, train_heads

__all__ = ["HeadConfig", "train_head", "train_heads", "predict", "predict_source", "list_heads"]

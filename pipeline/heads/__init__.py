"""Heads: linear and MLP classifiers trained on stored features."""
from .predict import predict
from .train import HeadConfig, train_head, train_heads

__all__ = ["HeadConfig", "train_head", "train_heads", "predict"]

"""Heads: linear and MLP classifiers trained on stored features."""
from .predict import predict
from .train import HeadConfig, train_head

__all__ = ["HeadConfig", "train_head", "predict"]

"""Heads: classifiers trained on stored features, one registered kind per module (kinds.py)."""
from .config import HeadConfig
from .kinds import HeadKind, TrainedHead, TrainJob, head_names, kinds, register_head
from .listing import list_heads
from .predict import predict, predict_source
from .train import train_head, train_heads

__all__ = ["HeadConfig", "HeadKind", "TrainJob", "TrainedHead", "register_head", "kinds", "head_names",
           "train_head", "train_heads", "predict", "predict_source", "list_heads"]

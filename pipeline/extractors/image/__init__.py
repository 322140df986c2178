"""Image extractors."""
from .cnn import CNNConfig, CNNExtractor

__all__ = ["CNNConfig", "CNNExtractor"]

"""Audio extractors."""
from .config import SpectralConfig
from .spectral import SpectralExtractor

__all__ = ["SpectralConfig", "SpectralExtractor"]

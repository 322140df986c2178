"""Audio extractors."""
from .spectral import SpectralConfig, SpectralExtractor

__all__ = ["SpectralConfig", "SpectralExtractor"]

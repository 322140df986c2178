"""Audio extractors: ``spectral`` (registered when looked up: pipeline/registry.py)."""

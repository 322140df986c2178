"""Image extractors: ``cnn`` (registered when looked up: pipeline/registry.py)."""

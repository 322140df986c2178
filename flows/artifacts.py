"""Prefect artifact keys: lowercase letters, digits and dashes only."""
from __future__ import annotations


def artifact_key(prefix: str, name: str = "") -> str:
    """``prefix`` followed by ``name`` made key-safe (other characters become dashes)."""
    safe = "".join(c if c.isalnum() else "-" for c in name.lower())
    return f"{prefix}-{safe}"[:80] if safe else prefix

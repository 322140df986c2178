"""Knowing your data from its stored features: neighbours, audits (duplicates, leakage, label errors, outliers)
and drift against what a head was trained on."""
from .audit import AuditConfig, audit
from .drift import drift
from .neighbors import neighbors

__all__ = ["AuditConfig", "audit", "drift", "neighbors"]

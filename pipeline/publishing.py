"""Finishing a run: judge its rejects over the items it would publish, then publish them (the run's log, then
the items switch: one atomic rename) and release the set's lease. A run that fails or is killed before the
switch changes nothing readers see; the next run finds its pending changes again (they are computed
against the last published items) and reports them."""
from __future__ import annotations

from typing import Any

from .errors import MmfeatError
from .rejects import FIXES
from .store import FeatureStore
from .store.lease import Lease
from .store.pending import read_pending, remove_pending

DEFAULT_MAX_REJECT_FRACTION = 0.5
# Fewer rejects than this never fail a run by the fraction (a new dataset of three items with one bad
# file), unless no item at all gave features (a wrong modality or column fails at once).
MIN_REJECTS_TO_FAIL = 5


class TooManyRejects(MmfeatError):
    """More than ``max_reject_fraction`` of the dataset's items are rejects of this feature set."""


def finish(store: str | None, set_path: str, markers: list[dict[str, Any]],
           max_reject_fraction: float = DEFAULT_MAX_REJECT_FRACTION, lease: str | None = None) -> dict[str, Any]:
    """Publish the run's items when its rejects are within the limit, release the lease, and return the
    feature set's summary (with ``run``: the published run's id); raises :class:`TooManyRejects` (nothing
    published) otherwise. No model is loaded."""
    if not 0 <= max_reject_fraction <= 1:
        raise MmfeatError(f"max_reject_fraction must be in [0, 1]; got {max_reject_fraction}")
    st = FeatureStore(store)
    fs = st.open_path(set_path)
    try:
        pending = read_pending(fs.fs, fs.path)
        summary = fs.summary(pending[0] if pending else None)
        check_rejects(summary, max_reject_fraction)
        if pending is not None:
            items, record, changes = pending
            if _changed(fs.items, items, record):
                record = fs.items.publish(items, {**record, "rejected": summary["rejected"]}, changes)
            summary.update(run=fs.items.record().get("run"), current=fs.items.record())
    finally:
        remove_pending(fs.fs, fs.path)
        Lease(st.fs, set_path, lease).release()
    return summary


def check_rejects(summary: dict[str, Any], max_fraction: float) -> None:
    """Fail when the set's rejects are over ``max_fraction`` of the items (and at least MIN_REJECTS_TO_FAIL
    of them, or every item)."""
    n, rejected = summary["items"], summary["rejected"]
    if not n or rejected / n <= max_fraction or (rejected < MIN_REJECTS_TO_FAIL and summary["rows"] > 0):
        return
    ranked = sorted(summary["rejects_by_reason"].items(), key=lambda kv: -kv[1])
    shown = ", ".join(f"{r} {c}" for r, c in ranked)
    fix = FIXES.get(ranked[0][0]) if ranked else None
    raise TooManyRejects(f"{summary['feature_set']}: {rejected} of {n} items rejected ({rejected / n:.0%} > "
                         f"max_reject_fraction={max_fraction}): {shown}; nothing was published (the last run's "
                         "items stay current, and the next run reports these changes again)"
                         + (f". To fix: {fix}" if fix else ""))


def _changed(handle, items, record: dict[str, Any]) -> bool:
    """Whether publishing would change anything (the items, or how the source was read)."""
    if any(record.get("changes", {}).values()):
        return True
    current = handle.record()
    if not current.get("run") or current.get("read") != record.get("read") or \
            current.get("manifest_sha256") != record.get("manifest_sha256"):
        return True
    return not handle.current().select(["id", "content", "assigned_split"]).equals(
        items.select(["id", "content", "assigned_split"]))

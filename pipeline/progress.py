"""Live progress of long steps, per batch: a tqdm bar on a terminal, a log line every few seconds
otherwise (piped or logged runs), and an optional callback (the Prefect progress artifact).

Extractors report work as they do it with :func:`advance` (the shared batch loops do); whoever runs
the step installs a :class:`Progress` with :func:`tracking`. Messages go to the ``mmfeat`` logger.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import time
from typing import Callable, Iterator

log = logging.getLogger("mmfeat")
_CURRENT: contextvars.ContextVar["Progress | None"] = contextvars.ContextVar("mmfeat_progress", default=None)


class Progress:
    """Counts items of one step; ``total`` may be 0 (unknown)."""

    def __init__(self, total: int, desc: str, unit: str = "item", tty: bool | None = None, interval_s: float = 10.0,
                 callback: Callable[[int, int], None] | None = None, callback_interval_s: float = 3.0):
        self.total, self.desc, self.unit, self.done = total, desc, unit, 0
        self.start = self._last_log = self._last_cb = time.perf_counter()
        self.interval_s, self.callback, self.callback_interval_s = interval_s, callback, callback_interval_s
        tty = sys.stderr.isatty() if tty is None else tty
        self.bar = None
        if tty:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total or None, desc=desc, unit=unit, file=sys.stderr)

    def advance(self, n: int) -> None:
        if n <= 0:
            return
        self.done += n
        now = time.perf_counter()
        if self.bar is not None:
            self.bar.update(n)
        elif now - self._last_log >= self.interval_s:
            self._last_log = now
            log.info(self.line())
        if self.callback is not None and now - self._last_cb >= self.callback_interval_s:
            self._last_cb = now
            self.callback(self.done, self.total)

    def line(self) -> str:
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        of = f"/{self.total:,}" if self.total else ""
        eta = f", ETA {(self.total - self.done) / rate:.0f} s" if self.total and rate > 0 else ""
        return f"{self.desc}: {self.done:,}{of} {self.unit}s, {rate:,.1f} {self.unit}s/s{eta}"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.callback is not None:
            self.callback(self.done, self.total)


@contextlib.contextmanager
def tracking(progress: Progress | None) -> Iterator[Progress | None]:
    """Make ``progress`` the sink of :func:`advance` calls in this context (thread/task)."""
    token = _CURRENT.set(progress)
    try:
        yield progress
    finally:
        _CURRENT.reset(token)


def current() -> "Progress | None":
    return _CURRENT.get()


def advance(n: int) -> None:
    """Report ``n`` more items done (a no-op when nobody is tracking)."""
    progress = _CURRENT.get()
    if progress is not None:
        progress.advance(n)


class ShardCounter:
    """Wraps a Progress for one shard, so the runner can top up what the extractor did not report."""

    def __init__(self, inner: Progress | None):
        self.inner, self.done = inner, 0

    def advance(self, n: int) -> None:
        self.done += n
        if self.inner is not None:
            self.inner.advance(n)

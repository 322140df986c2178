"""Prefect artifact keys (lowercase letters, digits and dashes only), and library logs in the run's logs."""
from __future__ import annotations

import contextlib
import logging


def artifact_key(prefix: str, name: str = "") -> str:
    """``prefix`` followed by ``name`` made key-safe (other characters become dashes)."""
    safe = "".join(c if c.isalnum() else "-" for c in name.lower())
    return f"{prefix}-{safe}"[:80] if safe else prefix


@contextlib.contextmanager
def library_logs_to_run():
    """Send the library's ``mmfeat`` log records (progress with items/s and ETA, head training) to
    the flow run's logs, which the Prefect UI shows."""
    from prefect import get_run_logger

    run_logger = get_run_logger()

    class Forward(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            run_logger.log(record.levelno, record.getMessage())

    handler, logger = Forward(), logging.getLogger("mmfeat")
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # once, under the run's logger: a worker's root handler would print it again
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate

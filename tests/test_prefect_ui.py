"""The head report and extract summaries as a user sees them: the Prefect UI in headless Chromium."""
import os
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow
sys.path.insert(0, os.path.join(ROOT, "scripts"))


def test_artifacts_render_in_the_prefect_ui():
    import prefect_ui

    try:
        prefect_ui.require_browser()
    except RuntimeError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the browser test cannot run: {exc}")
        pytest.skip(str(exc))
    out = os.path.join(ROOT, "test-artifacts", "prefect-ui")  # screenshots kept for whoever reads the run
    found = prefect_ui.capture(out)
    report = next(v for k, v in found.items() if k.startswith("train-head-report"))
    assert len(report["images"]) == 2 and all(i["width"] > 0 for i in report["images"]), report["images"]
    assert "data:" not in report["text"] and "Data: {" not in report["text"]  # no raw JSON line
    summary = next(v for k, v in found.items() if k.startswith("extract-summary"))
    assert len(summary["rows"]) == 1 and "texts/word2vec" in summary["rows"][0]
    rejects = next(v for k, v in found.items() if k.startswith("extract-rejects"))
    assert len(rejects["rows"]) == 1 and "empty_text" in rejects["rows"][0] and "2" in rejects["rows"][0]
    metrics = next(v for k, v in found.items() if k.startswith("train-head-metrics"))
    assert len(metrics["rows"]) == 3
    assert all(os.path.getsize(v["shot"]) > 10_000 for v in found.values())

"""Every README code block that claims to work runs here, in README order, in one scratch folder
(blocks preceded by a `<!-- not run ... -->` comment say why they are not, and what covers them)."""
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

FENCE = re.compile(r"(<!-- not run[^>]*-->\s*)?```(\w+)\n(.*?)```", re.S)


def readme_blocks():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    return [(m.group(2), m.group(3), bool(m.group(1)), text[:m.start()].count("\n") + 1) for m in FENCE.finditer(text)]


@pytest.mark.slow
def test_readme_blocks_run(tmp_path):
    os.symlink(os.path.join(ROOT, "sample_data"), tmp_path / "sample_data")
    os.symlink(os.path.dirname(os.path.dirname(sys.executable)), tmp_path / ".venv")
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
           "PYTHONPATH": ROOT}
    for leaked in ("MMFEAT_STORE", "MMFEAT_PLUGINS"):  # a user's shell has neither
        env.pop(leaked, None)
    ran = 0
    for lang, code, skipped, line in readme_blocks():
        if skipped or lang not in ("bash", "python"):
            continue
        cmd = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
        r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"README.md line {line} ({lang}) failed:\n{code}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
        ran += 1
    assert ran >= 4


def test_readme_blocks_that_do_not_run_say_why():
    blocks = readme_blocks()
    assert blocks and all(lang in ("bash", "python", "yaml", "text") for lang, *_ in blocks), \
        "fence every block with its language (bash, python, yaml, or text for synopses)"

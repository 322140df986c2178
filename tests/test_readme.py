"""Every code block of README.md and docs/*.md that claims to work runs here: a page's blocks in its order, in
one scratch folder per page (blocks preceded by a `<!-- not run ... -->` comment say why they are not, and
what covers them). The docs' option tables are rendered from the config fields (scripts/render_docs.py)."""
import glob
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

FENCE = re.compile(r"(<!-- not run[^>]*-->\s*)?```(\w+)\n(.*?)```", re.S)
PAGES = ["README.md"] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))


def blocks(page: str):
    text = open(os.path.join(ROOT, page), encoding="utf-8").read()
    return [(m.group(2), m.group(3), bool(m.group(1)), text[:m.start()].count("\n") + 1) for m in FENCE.finditer(text)]


def run_page(page: str, folder) -> int:
    os.symlink(os.path.join(ROOT, "sample_data"), folder / "sample_data")
    os.symlink(os.path.dirname(os.path.dirname(sys.executable)), folder / ".venv")
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
           "PYTHONPATH": ROOT}
    for leaked in ("MMFEAT_STORE", "MMFEAT_PLUGINS"):  # a user's shell has neither
        env.pop(leaked, None)
    ran = 0
    for lang, code, skipped, line in blocks(page):
        if skipped or lang not in ("bash", "python"):
            continue
        cmd = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
        r = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"{page} line {line} ({lang}) failed:\n{code}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
        ran += 1
    return ran


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_page_blocks_run(page, tmp_path):
    ran = run_page(page, tmp_path)
    assert ran >= (3 if page == "README.md" else 0)


def test_blocks_say_their_language_and_readme_stays_short():
    for page in PAGES:
        assert all(lang in ("bash", "python", "yaml", "text") for lang, *_ in blocks(page)), \
            f"{page}: fence every block with its language (bash, python, yaml, or text for synopses)"
    assert len(open(os.path.join(ROOT, "README.md")).read().splitlines()) <= 200


def test_docs_option_tables_are_rendered_from_the_config_fields():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "render_docs.py"), "--check"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_docs_page_is_linked_from_the_readme():
    readme = open(os.path.join(ROOT, "README.md")).read()
    assert all(f"({page})" in readme for page in PAGES if page.startswith("docs/"))

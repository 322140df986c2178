"""Render the option tables in docs/*.md from the config fields' own docs (what ``mmfeat describe`` prints), so
that they cannot drift: ``python scripts/render_docs.py`` rewrites them; ``--check`` exits 1 when a page is
stale (tests/test_readme.py runs it).

A table sits between ``<!-- options:NAME -->`` and ``<!-- /options -->``, NAME being an extractor name,
``head`` (the keys every head kind takes), ``kind:NAME`` (one head kind's own keys) or ``audit``."""
from __future__ import annotations

import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKED = re.compile(r"(<!-- options:([\w:-]+) -->\n)(.*?)(<!-- /options -->)", re.S)


def table(name: str) -> str:
    from pipeline.heads import HeadConfig, kinds
    from pipeline.options import markdown_table
    from pipeline.registry import extractor_class

    if name == "head":
        return markdown_table(HeadConfig, runtime_note=False)
    if name == "audit":
        from pipeline.insight.audit import AuditConfig

        return markdown_table(AuditConfig, runtime_note=False)
    if name.startswith("kind:"):
        return markdown_table(kinds()[name[5:]].params_type, runtime_note=False)
    return markdown_table(extractor_class(name).config_type)


def rendered(text: str) -> str:
    return MARKED.sub(lambda m: f"{m.group(1)}{table(m.group(2))}\n{m.group(4)}", text)


def main(check: bool) -> int:
    sys.path.insert(0, ROOT)
    stale = []
    for path in sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))):
        text = open(path, encoding="utf-8").read()
        new = rendered(text)
        if new != text:
            stale.append(os.path.relpath(path, ROOT))
            if not check:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(new)
    if stale:
        print(("stale option tables (python scripts/render_docs.py): " if check else "rendered: ") + ", ".join(stale))
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv))

"""``mmfeat describe``: the extractors and head kinds, or one's config keys (type, default, whether the key
changes the feature set id, its doc), as text for a person and as an object for ``--json``."""
from __future__ import annotations

from typing import Any

from .options import describe_extractor, options, render, summary_line


def describe(name: str | None) -> tuple[str, Any]:
    """(text, JSON object) for ``mmfeat describe [NAME | head]``."""
    from .registry import list_extractors

    if name == "head":
        return _heads()
    if name:
        entry = describe_extractor(name)
        return render(entry), entry
    entries = [describe_extractor(n) for n in list_extractors()]
    lines = [f"{e['name']:<12} {e['modality']:<6} {e['summary']}" for e in entries]
    lines.append("\nmmfeat describe NAME: its --set keys; mmfeat describe head: the head kinds and train-head's keys")
    return "\n".join(lines), entries


def _heads() -> tuple[str, Any]:
    from .heads.config import HeadConfig
    from .heads.registry import kind_infos

    common = {"name": "head", "summary": "train-head --set keys every kind takes", "options": options(HeadConfig)}
    entries = [{"name": name, "family": family, "summary": summary_line(params), "options": options(params)}
               for name, family, params in kind_infos()]
    text = [render(common), ""]
    for e in entries:
        family = f" (--head {e['family']} picks it for its sets)" if e["family"] else ""
        text += [render({"name": f"--head {e['name']}{family}", "summary": e["summary"], "options": e["options"]}), ""]
    # The flat option list keeps its place for older scripts; "kinds" has each kind's own keys.
    flat = {o["key"]: o for e in entries for o in e["options"]} | {o["key"]: o for o in common["options"]}
    return "\n".join(text).rstrip(), {**common, "options": list(flat.values()), "kinds": entries}

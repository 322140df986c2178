"""The audit's report: counts, then examples of each kind of finding shown as what they are (an image's
thumbnail inlined, a text's opening words, an audio file's name) beside their partner, and a 2-D map of
the set (PCA of the features, coloured by label) where looking says more than reading."""
from __future__ import annotations

import base64
import io
import os

import numpy as np
import pyarrow as pa

from ..store import files


def audit_report(fs, findings: pa.Table, counts: dict, x, view: pa.Table, cfg) -> str:
    """Write ``<set>/_audit/report.md`` (pictures inlined) and return its path."""
    shown = _shower(fs, view)
    lines = [f"# Audit of {fs.name}", "", f"{x.shape[0]} rows. Near-copies: cosine similarity >= {cfg.near_duplicate}; "
             f"label errors from {cfg.label_folds}-fold out-of-fold probabilities (confident learning).", "",
             "| finding | count |", "|---|---|", *[f"| {k.replace('_', ' ')} | {v} |" for k, v in counts.items()], ""]
    table = findings.to_pylist()
    for kind in counts:
        rows = sorted((r for r in table if r["kind"] == kind), key=lambda r: -r["score"])[:cfg.examples]
        if rows:
            lines += [f"## {kind.replace('_', ' ')}", "", "| item | partner | label | suggested | score |", "|---|---|---|---|---|"]
            lines += [f"| {shown(r['id'])} | {shown(r['partner_id']) if r['partner_id'] else ''} | {r['label'] or ''} "
                      f"| {r['suggested_label'] or ''} | {r['score']:.3f} |" for r in rows]
            lines.append("")
    picture = embedding_map(x, view["label"].to_pylist())
    if picture:
        lines += ["## The set at a glance", "", f"![PCA of the features, coloured by label]({picture})", ""]
    path = files.join(fs.path, "_audit", "report.md")
    files.write_bytes_atomic(fs.fs, path, "\n".join(lines).encode())
    return path


def _shower(fs, view: pa.Table):
    """id -> how the report shows the item: a thumbnail, a text's start, or a file name."""
    items = fs.items.current()
    source = dict(zip(items["id"].to_pylist(), items["source"].to_pylist()))
    preview = dict(zip(items["id"].to_pylist(), items["preview"].to_pylist()))
    root = _root(fs)
    modality = fs.manifest.get("modality")

    def show(item_id: str) -> str:
        item = item_id.split("#")[0]
        if modality == "text":
            text = (preview.get(item) or "").replace("|", "/").replace("\n", " ")
            return f"`{item_id}` {text[:120]}{'…' if len(text) > 120 else ''}"
        path = source.get(item)
        if modality == "image" and path and root:
            thumb = thumbnail(os.path.join(root, path))
            if thumb:
                return f"![{item_id}]({thumb}) `{item_id}`"
        return f"`{item_id}`" + (f" ({os.path.basename(path)})" if path else "")
    return show


def _root(fs) -> str | None:
    from ..inputs import source_root

    try:
        return source_root((fs.items.binding() or {})["source"])
    except Exception:  # the source moved or is gone: file names still show
        return None


def thumbnail(path: str, size: int = 96) -> str | None:
    """A small PNG of an image as a data URI (None when it no longer reads)."""
    try:
        from PIL import Image

        with Image.open(path) as img:
            img.draft("RGB", (size, size))
            img = img.convert("RGB")
            img.thumbnail((size, size))
            out = io.BytesIO()
            img.save(out, "PNG")
    except Exception:  # a thumbnail is a courtesy: a file that no longer reads shows its name instead
        return None
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def embedding_map(x, labels: list, limit: int = 4000) -> str | None:
    """A PCA scatter of (a sample of) the rows, coloured by label, as a data URI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = x.shape[0]
    if n < 3:
        return None
    pick = np.random.default_rng(0).permutation(n)[:limit]
    sample = x[pick].toarray() if hasattr(x, "toarray") else np.asarray(x[pick])
    centered = sample - sample.mean(0)
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    xy = centered @ vt[:2].T
    names = np.asarray([str(labels[i]) if labels[i] is not None else "(none)" for i in pick], dtype=object)
    fig, ax = plt.subplots(figsize=(5, 4))
    for name in sorted(set(names))[:20]:
        at = names == name
        ax.scatter(xy[at, 0], xy[at, 1], s=6, label=name)
    ax.set_title("PCA of the features")
    if len(set(names)) <= 20:
        ax.legend(fontsize=7, markerscale=2)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=70)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()

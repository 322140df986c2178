"""Linear heads on feature sets larger than memory: features spilled once to per-split files on local
disk, then every L-BFGS evaluation streams them in chunks, accumulating the loss and its gradient.

Memory is bounded by ``memory_gb`` (the chunk size follows from it), whatever the row count: what grows
with the rows is only the ids, labels and splits, and the validation/test logits (rows x classes).
The objective, penalty path, class-weight sweep, refit, temperature and metrics are those of the
in-memory head (``linear.py``): the two agree to L-BFGS tolerance (tests/test_heads.py).
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import nn

from ..store import feature_matrix
from .calibration import helpful_temperature
from .config import ADAMW_KEYS
from .data import HeadData
from .dense import best_of, report_fits
from .registry import TrainedHead
from .solvers import lbfgs, linear_from
from .training import Fit, class_weights, weightings


@dataclasses.dataclass
class Spilled:
    """One split's rows on disk (float32, row-major), with their labels, in file order."""

    path: str
    dim: int
    y: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def chunks(self, rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        with open(self.path, "rb") as f:
            for start in range(0, len(self), rows):
                n = min(rows, len(self) - start)
                yield np.fromfile(f, np.float32, n * self.dim).reshape(n, self.dim), self.y[start:start + n]


def feature_bytes(fs) -> int:
    """Bytes of the set's features as float32 (from the commit markers: nothing is read)."""
    return sum(m["rows"] for m in fs.done_markers().values()) * fs.dim * 4


def spill(fs, data: HeadData, folder: str) -> dict[str, Spilled]:
    """The features of the splits' rows (decided on ids and labels, as in memory) written split by split."""
    names = ("train", "val", "test")
    ids = pa.array(np.concatenate([getattr(data, n).ids for n in names]), pa.string())
    split_of = np.concatenate([np.full(len(getattr(data, n).ids), k) for k, n in enumerate(names)])
    label_of = np.concatenate([getattr(data, n).y for n in names])
    files = {name: open(os.path.join(folder, f"{name}.f32"), "wb") for name in names}
    order: dict[str, tuple[list, list]] = {name: ([], []) for name in names}
    try:
        for part in fs.iter_tables(["id", "features"]):  # one shard in memory at a time
            x = feature_matrix(part["features"], fs.dim)
            found = pc.index_in(part["id"], value_set=ids)  # null: a row without a label (not trained on)
            placed = found.is_valid().to_numpy(zero_copy_only=False)
            at = pc.fill_null(found, 0).to_numpy(zero_copy_only=False).astype(np.int64)
            for k, name in enumerate(names):
                rows = np.flatnonzero(placed & (split_of[at] == k))
                if len(rows):
                    np.ascontiguousarray(x[rows]).tofile(files[name])
                    order[name][0].extend(part["id"].take(pa.array(rows)).to_pylist())
                    order[name][1].extend(label_of[at[rows]].tolist())
    finally:
        for f in files.values():
            f.close()
    return {name: Spilled(os.path.join(folder, f"{name}.f32"), fs.dim, np.array(order[name][1], np.int64),
                          np.array(order[name][0], dtype=object)) for name in files}


def moments(parts: list[Spilled], rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and std (floored at 1e-6) over the rows of ``parts``, in float64 sums."""
    total, square, n = 0.0, 0.0, 0
    for part in parts:
        for x, _ in part.chunks(rows):
            x64 = x.astype(np.float64)
            total, square, n = total + x64.sum(0), square + np.square(x64).sum(0), n + len(x)
    mean = total / n
    return mean.astype(np.float32), np.maximum(np.sqrt(np.maximum(square / n - mean ** 2, 0)), 1e-6).astype(np.float32)


class Stream:
    """Standardized chunks of one or more spilled splits on the device."""

    def __init__(self, parts: list[Spilled], mean: np.ndarray, std: np.ndarray, rows: int, device: str):
        self.parts, self.mean, self.std, self.rows, self.device = parts, mean, std, rows, device
        self.y = np.concatenate([p.y for p in parts]) if parts else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.y)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for part in self.parts:
            for x, y in part.chunks(self.rows):
                yield (torch.from_numpy((x - self.mean) / self.std).to(self.device),
                       torch.from_numpy(y).to(self.device))

    def logits(self, model: nn.Module) -> torch.Tensor:
        with torch.no_grad():
            out = [model(x).cpu() for x, _ in self]
        return torch.cat(out) if out else torch.zeros(0, model.out_features)


def lbfgs_path(train: Stream, val: Stream, k: int, class_weight: torch.Tensor | None, l2s, max_iter: int = 500):
    """``solvers.fit_linear_lbfgs`` over streamed chunks: each evaluation is one pass, the weighted-mean
    cross-entropy and its gradient summed chunk by chunk (one chunk's graph alive at a time)."""
    dim = train.parts[0].dim
    w = torch.zeros(dim, k, device=train.device, requires_grad=True)
    b = torch.zeros(k, device=train.device, requires_grad=True)
    cw = class_weight if class_weight is not None else torch.ones(k, device=train.device)
    denominator = float(cw[torch.from_numpy(train.y).to(train.device)].sum())

    def loss_and_gradient() -> float:
        total = 0.0
        for x, y in train:
            part = (nn.functional.cross_entropy(x @ w + b, y, reduction="none") * cw[y]).sum() / denominator
            part.backward()  # gradients add up over the chunks
            total += float(part.detach())
        return total

    fits = {}
    for l2 in sorted(set(l2s), reverse=True):
        opt = lbfgs([w, b], max_iter)
        evaluations = [0]

        def objective():
            opt.zero_grad()
            loss = loss_and_gradient()
            penalty = 0.5 * l2 * w.square().sum()
            penalty.backward()
            evaluations[0] += 1
            return torch.tensor(loss + float(penalty.detach()))

        opt.step(objective)
        fits[l2] = _validated(w, b, val, l2, evaluations[0], class_weight)
    return [fits[l2] for l2 in l2s]


def _validated(w, b, val: Stream, l2: float, evaluations: int, class_weight) -> Fit:
    with torch.no_grad():
        model, _ = linear_from(w.detach(), b.detach(), torch.zeros(0, w.shape[0], device=w.device),
                               torch.zeros(0, dtype=torch.long, device=w.device))
    val_logits = val.logits(model).to(w.device)
    yv = torch.from_numpy(val.y).to(w.device)
    val_loss = float(nn.functional.cross_entropy(val_logits, yv, weight=class_weight)) if len(yv) else float("inf")
    acc = float((val_logits.argmax(1) == yv).float().mean()) if len(yv) else float("nan")
    return Fit(model, l2, val_loss, acc, evaluations, [])


def chunk_rows(dim: int, memory_gb: float) -> int:
    """Rows per chunk: a chunk and its standardized copy and gradient buffers in a tenth of the budget."""
    return int(max(1024, memory_gb * (1 << 30) / 10 / (dim * 4 * 4)))


def train_streamed(job, params) -> TrainedHead:
    """The linear head of ``linear.py`` on a set too large for ``memory_gb``: spilled, streamed."""
    import time

    fs, cfg = job.sets[0], job.cfg
    folder = tempfile.mkdtemp(prefix="mmfeat-head-")
    try:
        spilled = spill(fs, job.data, folder)
        rows = chunk_rows(fs.dim, cfg.memory_gb)
        start = time.perf_counter()
        mean, std = moments([spilled["train"]], rows)
        train, val = (Stream([spilled[s]], mean, std, rows, job.device) for s in ("train", "val"))
        k = len(job.data.classes)
        fits = []
        for weighting in weightings(params.class_weight):
            weight = class_weights(train.y, k, weighting, job.device)
            fits += [dataclasses.replace(f, weighting=weighting) for f in lbfgs_path(train, val, k, weight, params.l2_penalties)]
        report_fits("linear (streamed)", fits)
        best = best_of(fits)
        temperature = helpful_temperature(val.logits(best.model), torch.from_numpy(val.y))
        model, refit = best.model, None
        if params.refit:
            model, mean, std, refit = _refit(spilled, train, best, rows, k, job.device)
        seconds = time.perf_counter() - start
        test = Stream([spilled["test"]], mean, std, rows, "cpu")
        logits = test.logits(model.cpu())
        report = {"streamed": {"memory_gb": cfg.memory_gb, "chunk_rows": rows, "feature_bytes": feature_bytes(fs)}}
        used = {k: v for k, v in dataclasses.asdict(params).items() if k not in ADAMW_KEYS}
        return TrainedHead(model, best, fits, temperature, logits, seconds, "lbfgs (streamed)", fs.dim, mean, std,
                           tuple(params.l2_penalties), refit, y_test=test.y, report=report, params=used)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _refit(spilled, train: Stream, best: Fit, rows: int, k: int, device: str):
    both = [spilled["train"], spilled["val"]]
    mean, std = moments(both, rows)
    everything = Stream(both, mean, std, rows, device)
    l2 = best.l2 * len(train) / len(everything)
    weight = class_weights(everything.y, k, best.weighting, device)
    model = lbfgs_path(everything, Stream([], mean, std, rows, device), k, weight, [l2])[0].model
    return model, mean, std, {"on": "train+val", "rows": len(everything), "l2": l2}

"""The map-style batch loop that the image and text extractors share: decode each item (in DataLoader
workers when there are several), embed decoded batches on the device, and do the ok/reject
bookkeeping once. A map-style extractor writes ``decoder`` and ``embed`` only::

    @register_extractor
    class Lengths(MapExtractor):
        name, modality, config_type = "lengths", "text", LengthsConfig
        dim = 1
        def decoder(self, kind):
            return functools.partial(read_text, kind=kind, max_chars=10_000)
        def embed(self, texts):
            return np.array([[len(t)] for t in texts], np.float32)
"""
from __future__ import annotations

import abc
import functools
from typing import Any, Callable

import numpy as np
import torch

from ..errors import BadInput
from ..progress import advance
from ..registry import BatchResult, Extractor, ItemBatch, Reject
from .runtime import loader_context


class _Decoded(torch.utils.data.Dataset):
    """Item ``i`` -> (i, decoded, None), or (i, None, BadInput) for a bad one. Holds only the sources
    and a model-free decode function, so that it pickles cheaply into worker processes."""

    def __init__(self, sources: list[str], decode: Callable[[str], Any]):
        self.sources, self.decode = sources, decode

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int):
        try:
            return i, self.decode(self.sources[i]), None
        except BadInput as err:
            return i, None, err


def _worker_init(_: int = 0) -> None:
    torch.set_num_threads(1)  # decode workers must not compete with the model's threads


class MapExtractor(Extractor):
    """An extractor that maps each item independently (see module docstring)."""

    #: items per ``embed`` call (and per DataLoader batch)
    chunk_size: int = 64

    @abc.abstractmethod
    def decoder(self, kind: str) -> Callable[[str], Any]:
        """A picklable, model-free function: source (a path, or the text when ``kind == "text"``) ->
        decoded item. It raises ``BadInput`` for a bad item and runs in worker processes."""

    @abc.abstractmethod
    def embed(self, decoded: Any) -> np.ndarray | tuple:
        """Features (len(decoded), dim) of a collated batch; optionally ``(features, rejects)`` with
        per-position rejects, or ``(features, rejects, sequences)`` with a (t, frame_dim) array per
        position for extractors that store frame sequences (``frame_dim``)."""

    @staticmethod
    def collate(decoded: list[Any]) -> Any:
        """Turn a list of decoded items into what ``embed`` takes (default: the list). A staticmethod:
        it runs in the workers, which must not receive the model."""
        return decoded

    def decode_workers(self, n_items: int) -> int:
        """Worker processes for decoding (default none: decoding in this process)."""
        return 0

    def extract(self, batch: ItemBatch) -> BatchResult:
        n = len(batch)
        workers = self.decode_workers(n)
        cuda = getattr(self.device, "type", None) == "cuda"
        loader = torch.utils.data.DataLoader(
            _Decoded(batch.sources, self.decoder(batch.kind)), batch_size=self.chunk_size, num_workers=workers,
            collate_fn=functools.partial(_split, type(self).collate), pin_memory=cuda,
            worker_init_fn=_worker_init if workers else None, prefetch_factor=4 if workers else None, multiprocessing_context=loader_context() if workers else None)
        features = _Rows(n, self.dim, self.sparse, np.uint16 if self.tensor_shape else np.float32)
        ok = np.zeros(n, bool)
        sequences: dict[int, np.ndarray] = {}
        rejects: list[Reject] = []
        for index, decoded, bad in loader:
            rejects += [Reject.from_error(i, err) for i, err in bad]
            advance(len(bad))
            if not len(index):
                continue
            out = self.embed(decoded)
            out, failed, seqs = (out + (None,) * (3 - len(out))) if isinstance(out, tuple) else (out, {}, None)
            rejects += [Reject.from_error(int(index[j]), err) for j, err in failed.items()]
            good = np.setdiff1d(np.arange(len(index)), np.fromiter(failed, np.int64, len(failed)))
            features.put(index[good], out[good] if len(good) < len(index) else out)
            if seqs is not None:
                sequences.update((int(index[j]), seqs[j]) for j in good)
            ok[index[good]] = True
            advance(len(index))
        keep = np.flatnonzero(ok)
        return BatchResult(features.take(keep), keep, sorted(rejects, key=lambda r: r.index),
                           sequences=[sequences[i] for i in keep] if self.frame_dim else None)


class _Rows:
    """Feature rows filled chunk by chunk: a dense array, or CSR chunks stacked at the end (sparse)."""

    def __init__(self, n: int, dim: int, sparse: bool, dtype=np.float32):
        self.dense = None if sparse else np.zeros((n, dim), dtype)  # uint16: a tensor set's bfloat16 bits
        self.dim = dim
        self.chunks: list[tuple[np.ndarray, Any]] = []

    def put(self, where: np.ndarray, rows: Any) -> None:
        if self.dense is not None:
            self.dense[where] = rows
        else:
            self.chunks.append((where, rows))

    def take(self, keep: np.ndarray) -> Any:
        """The rows at ``keep`` (sorted positions, every one of them put)."""
        if self.dense is not None:
            return self.dense[keep]
        import scipy.sparse as sp

        if not self.chunks:
            return sp.csr_matrix((0, self.dim), dtype=np.float32)
        where = np.concatenate([w for w, _ in self.chunks])
        stacked = sp.vstack([r for _, r in self.chunks], format="csr", dtype=np.float32)
        return stacked[np.argsort(where, kind="stable")]


def _split(collate: Callable[[list], Any], items: list) -> tuple[np.ndarray, Any, list[tuple[int, BadInput]]]:
    """DataLoader collate: (indices of decoded items, their collated batch, (index, BadInput) of the rest)."""
    good = [(i, d) for i, d, e in items if e is None]
    bad = [(i, e) for i, _, e in items if e is not None]
    return np.array([i for i, _ in good], np.int64), collate([d for _, d in good]), bad

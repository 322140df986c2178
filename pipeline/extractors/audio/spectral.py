"""``spectral``: librosa-defined clip descriptors, on the GPU/CPU in torch or with librosa itself."""
from __future__ import annotations

import os

import numpy as np
import torch

from ...registry import BatchResult, Extractor, ItemBatch, register_extractor
from ..runtime import loader_context, resolve_device, use_threads, worker_count
from .clips import ClipResult, assemble, clip_windows
from .librosa_backend import decode_item, init_pool_worker, librosa_item
from ...progress import advance
from .config import FEATURES, SpectralConfig, frame_dims  # noqa: F401 (FEATURES: re-exported)
from .pooling import pool_torch_binned

# Measured on 2 cores (torch backend, clips/s by batch size): 1-s clips 398 (64), 514 (16), 441 (4);
# 10-s clips 42.8 (64), 57.1 (8), 67.4 (4). About 24 s of audio per batch is near the best for both.
CPU_BATCH_SECONDS = 24


def _advanced(result):
    advance(1)
    return result


class _Clips(torch.utils.data.Dataset):
    def __init__(self, paths, cfg):
        self.paths, self.cfg = paths, cfg

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        decoded, err = decode_item((self.paths[i], self.cfg))
        return i, decoded, err


@register_extractor
class SpectralExtractor(Extractor):
    name = "spectral"
    modality = "audio"
    config_type = SpectralConfig
    version = SpectralConfig.extractor_version

    def __init__(self, config: SpectralConfig):
        super().__init__(config)
        self.device = resolve_device(config.device) if config.backend == "torch" else torch.device("cpu")
        use_threads(config.threads)
        self.dtype = torch.float64 if config.precision == "float64" else torch.float32
        self._frames: dict[int, object] = {}
        self._pool = None

    @classmethod
    def weights_digest(cls, config: SpectralConfig) -> str | None:
        return None  # no weights: the config alone is the feature set's identity

    @property
    def dim(self) -> int:
        if self.config.preset == "classic193":
            return 193
        blocks = 1 + (self.config.time_bins if self.config.time_bins > 1 else 0)
        return sum(frame_dims(self.config)[f] for f in self.config.features) * len(self.config.stats) * blocks

    @property
    def frame_dim(self) -> int | None:
        return sum(frame_dims(self.config)[f] for f in self.config.features) if self.config.frames else None

    def describe(self) -> dict:
        return {"device": str(self.device), "dtype": str(self.dtype).replace("torch.", ""), "backend": self.config.backend}

    def extract(self, batch: ItemBatch) -> BatchResult:
        if self.config.backend == "librosa":
            results = self._librosa_results(batch.sources)
        else:
            results = self._torch_results(batch.sources)
        return assemble(results, self.dim, self.config.frames, self.config.long_clips == "split")

    def _librosa_results(self, paths):
        from concurrent.futures import ProcessPoolExecutor

        args = [(p, self.config) for p in paths]
        workers = self.config.num_workers if self.config.num_workers is not None else (os.cpu_count() or 1)
        if workers <= 1 or len(paths) < 4:
            return [_advanced(librosa_item(a)) for a in args]
        if self._pool is None:
            self._pool = ProcessPoolExecutor(workers, mp_context=loader_context(), initializer=init_pool_worker)
        chunk = max(1, min(64, len(args) // (workers * 4)))
        return [_advanced(r) for r in self._pool.map(librosa_item, args, chunksize=chunk)]

    def _torch_results(self, paths):
        workers = worker_count(self.config.num_workers, self.device, len(paths), self.config.batch_size)
        loader = torch.utils.data.DataLoader(_Clips(paths, self.config), batch_size=self.config.batch_size * 4,
                                             num_workers=workers, collate_fn=list,
                                             prefetch_factor=2 if workers else None,
                                             multiprocessing_context=loader_context() if workers else None)
        results = [None] * len(paths)
        for items in loader:
            good = [(i, d) for i, d, e in items if e is None]
            for i, _, err in items:
                if err is not None:
                    results[i] = ClipResult(error=err)
            by_rate: dict[int, list] = {}
            windows = {}
            for i, (y, sr, _) in good:
                windows[i] = clip_windows(len(y), sr, self.config)
                by_rate.setdefault(sr, []).extend((i, w, y[a:b]) for w, (a, b) in enumerate(windows[i]))
            done: dict[int, list] = {}
            for sr, clips in by_rate.items():
                clips.sort(key=lambda c: len(c[2]))  # similar lengths batch together: less padding
                for chunk in self._batches(clips, sr):
                    vectors, seqs = self._torch_batch([y for _, _, y in chunk], sr)
                    for k, (i, w, _) in enumerate(chunk):
                        rows = done.setdefault(i, [None] * len(windows[i]))
                        rows[w] = vectors if isinstance(vectors, Exception) else (vectors[k], seqs[k] if seqs else None)
            for i, (_, sr, padded_from) in good:
                failed = [r for r in done[i] if isinstance(r, Exception)]
                if failed:
                    results[i] = ClipResult(error=failed[0])
                else:
                    results[i] = ClipResult(np.stack([v for v, _ in done[i]]), [q for _, q in done[i]], windows[i], sr,
                                            padded_from)
            advance(len(items))
        return results

    def _batches(self, clips, sr):
        """Groups of at most ``batch_size`` clips; on the CPU also at most CPU_BATCH_SECONDS of audio, so
        a batch's spectrograms stay in cache (10-s clips: 42.8 clips/s in batches of 64, 67.4 in 4s)."""
        limit = None if self.device.type == "cuda" else CPU_BATCH_SECONDS * sr
        batch, samples = [], 0
        for clip in clips:
            if batch and (len(batch) == self.config.batch_size or limit and samples + len(clip[2]) > limit):
                yield batch
                batch, samples = [], 0
            batch.append(clip)
            samples += len(clip[2])
        if batch:
            yield batch

    def _torch_batch(self, clips, sr):
        """Pooled vectors (and frame sequences) of same-rate clips; clips at a rate where the features
        are undefined come back as rejects (an exception instance in place of the vectors)."""
        from .frames_torch import TorchFrames, classic_config
        from .tonal_torch import UnsupportedRate

        try:
            if sr not in self._frames:
                cfg = classic_config(self.config) if self.config.preset == "classic193" else self.config
                self._frames[sr] = TorchFrames(cfg, sr, self.device, self.dtype)
            with torch.inference_mode():
                return self._torch_pooled(self._frames[sr], clips)
        except UnsupportedRate as exc:
            from ...errors import BadInput

            return BadInput("unsupported_rate", f"{exc} (sr={sr})", stage="features"), None

    def _torch_pooled(self, computer, clips):
        if self.config.preset == "classic193":
            return computer.classic193(clips).float().cpu().numpy(), None
        frames, mask = computer.compute(clips, self.config.features)
        stacked = torch.cat([frames[f] for f in self.config.features], dim=1)
        pooled = pool_torch_binned(stacked, mask, self.config.stats, [frame_dims(self.config)[f] for f in self.config.features],
                                   self.config.time_bins)
        vectors = pooled.float().cpu().numpy()
        seqs = None
        if self.config.frames:
            lengths = mask.sum(1).cpu().numpy()
            seqs = [stacked[k, :, :n].T.float().cpu().numpy() for k, n in enumerate(lengths)]
        return vectors, seqs

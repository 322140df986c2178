"""Audio extraction throughput, files -> Parquet, with the default `spectral` config and the
classic193 preset on every backend.

Run: .venv/bin/python benchmarks/audio.py [N_SHORT] [N_LONG]
Generates WAV clips (1 s and 10 s; 8, 16, 22.05, 44.1 kHz; mono and stereo), then extracts them with
librosa in one process, librosa on all cores (process pool), torch on the CPU and torch on CUDA
(when present), each into a fresh feature set.
"""
from __future__ import annotations

import csv
import json
import os
import platform
import resource
import sys

import numpy as np
import soundfile as sf
import torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scratch import scratch_dir  # noqa: E402  (benchmarks/ is the script's folder)


def make_clips(root: str, n: int, seconds: float) -> tuple[str, float]:
    rng = np.random.default_rng(int(seconds))
    os.makedirs(root, exist_ok=True)
    rows, total = [], 0.0
    for i in range(n):
        sr = (8000, 16000, 22050, 44100)[i % 4]
        t = np.arange(int(sr * seconds)) / sr
        y = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 1000) * t) + rng.normal(0, 0.05, len(t))
        if i % 2:
            y = np.stack([y, 0.5 * y], axis=1)
        sf.write(os.path.join(root, f"{i:05d}.wav"), y.astype(np.float32), sr, subtype="PCM_16")
        rows.append((f"{i:05d}", f"{i:05d}.wav"))
        total += seconds
    manifest = os.path.join(root, "manifest.csv")
    with open(manifest, "w", newline="") as f:
        csv.writer(f).writerows([("id", "path"), *rows])
    return manifest, total


REPS = int(os.environ.get("MMFEAT_BENCH_REPS", "2"))


def main() -> None:
    from pipeline.extract import extract

    n_short = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    n_long = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    tmp = scratch_dir()
    backends = [("librosa, 1 process", {"backend": "librosa", "num_workers": "0"}),
                (f"librosa, {os.cpu_count()} processes", {"backend": "librosa"}),
                ("torch, CPU", {"backend": "torch", "device": "cpu"})]
    if torch.cuda.is_available():
        backends.append(("torch, CUDA", {"backend": "torch", "device": "cuda"}))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"cuda {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}")
    print(f"{'config':10} {'clips':14} {'backend':22} {'clips/s':>9} {'audio h/s':>10} {'vs librosa 1p':>14}")
    # One-time start-up outside the timings: decode workers (a forkserver once threads exist) and librosa's pool.
    warm, _ = make_clips(os.path.join(tmp, "warm"), 160, 1.0)  # enough to start decode workers
    for k, (_, overrides) in enumerate(backends):
        extract(warm, "audio", "spectral", overrides, store=os.path.join(tmp, f"store{k}"), dataset="warm", progress=False)
    clips = {label: make_clips(os.path.join(tmp, label.replace(" ", "")), n, seconds)[0]
             for label, n, seconds in (("1 s", n_short, 1.0), ("10 s", n_long, 10.0))}
    # The default descriptor, and classic193 (HPSS + constant-Q tonnetz: the expensive features).
    rates = {}
    for preset, extra in (("default", {}), ("classic193", {"preset": "classic193"})):
        for label, n, seconds in (("1 s", n_short, 1.0), ("10 s", n_long, 10.0)):
            base = None
            for k, (name, overrides) in enumerate(backends):
                # best of REPS runs (fresh stores): this machine's speed drifts between runs
                rate = max(extract(clips[label], "audio", "spectral", {**overrides, **extra},
                                   store=os.path.join(tmp, f"store{k}-{preset}-{rep}"),
                                   dataset=f"a{label.replace(' ', '')}", progress=False)["items_per_s"]
                           for rep in range(REPS))
                base = base or rate
                rates[(preset, label, name)] = rate
                print(f"{preset:10} {label + ' x' + str(n):14} {name:22} {rate:9.1f} {rate * seconds / 3600:10.4f} "
                      f"{rate / base:14.2f}", flush=True)
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB (parent process)")
    pool, best = backends[1][0], backends[-1][0]  # librosa on all cores; torch on the best device here
    print("RESULT " + json.dumps({"audio_torch_over_librosa_all_cores": rates[("default", "1 s", best)] /
                                  rates[("default", "1 s", pool)], "device": best}))  # read by benchmarks/gpu_suite.py


if __name__ == "__main__":
    main()

"""Every GPU target in one call (`make bench-gpu`): the image, text, audio and heads benchmarks plus the
`gpu`-marked tests, then one table with each figure beside its target.

    .venv/bin/python benchmarks/gpu_suite.py          # full sizes (a GPU machine: about 6 minutes)
    .venv/bin/python benchmarks/gpu_suite.py --tiny   # tiny sizes on any machine (CI runs this)

On the device (see ../shared/device/wheels.sh), with its own torch: `PYTHONPATH=$PWD python3 benchmarks/gpu_suite.py`.
Targets are judged only on CUDA; on the CPU the table says so.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FINETUNE = ["--sets", "digits", "--fusion", "--device", "cuda"]  # the network fine-tune's recipe on CUDA
FULL = {"image.py": ["2048"], "text.py": ["20000", "200000"], "audio.py": ["2000", "100"], "heads.py": ["100000"],
        "finetune.py": FINETUNE + ["--minutes", "3"]}
TINY = {"image.py": ["16"], "text.py": ["32", "5000"], "audio.py": ["8", "2"], "heads.py": ["2000"],
        "finetune.py": ["--sets", "digits", "--fusion", "--minutes", "0.1", "--limit", "120"]}
TARGETS = [  # (key in a RESULT line, target, how it is read)
    ("image_32px_pipeline_over_ceiling", 0.85, "image pipeline / eager bf16 channels_last ceiling, 32-px JPEGs"),
    ("text_news_texts_s", 60_000, "text pipeline, news-length texts/s"),
    ("audio_torch_over_librosa_all_cores", 50, "audio torch / librosa on all cores, 1-s clips"),
    ("heads_sweep_speedup_vs_sklearn", 10, "linear head sweep vs sklearn's same sweep"),
    ("finetune_digits_gain_points", 5, "network fine-tune on 8x8 digits, points over the frozen head (3 min)"),
]


def run(script: str, args: list[str], timeout: int) -> tuple[dict, float, str]:
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "MMFEAT_BENCH_REPS": "1"}
    r = subprocess.run([sys.executable, os.path.join(HERE, script), *args], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=timeout)
    print(r.stdout, flush=True)
    if r.returncode:
        print(r.stderr[-3000:], file=sys.stderr)
        return {"error": f"exit {r.returncode}"}, time.perf_counter() - start, r.stderr[-300:]
    lines = [line for line in r.stdout.splitlines() if line.startswith("RESULT ")]
    return (json.loads(lines[-1][7:]) if lines else {"error": "no RESULT line"}), time.perf_counter() - start, ""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", action="store_true", help="tiny sizes: checks that every piece runs, measures nothing")
    args = ap.parse_args()
    import torch

    cuda = torch.cuda.is_available()
    sizes = TINY if args.tiny else FULL
    results, failures = {}, []
    for script, script_args in sizes.items():
        result, seconds, err = run(script, script_args, timeout=900)
        if "error" in result:
            failures.append(f"{script}: {result['error']} {err}")
        results.update(result)
        results[f"{script} seconds"] = seconds
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider"], cwd=ROOT,
                           capture_output=True, text=True, timeout=900)
    summary = (tests.stdout.strip().splitlines() or ["(no output)"])[-1]
    if tests.returncode not in (0, 5):  # 5: every gpu test skipped or none collected (no CUDA)
        failures.append(f"gpu tests: {summary}")
    device = torch.cuda.get_device_name() if cuda else "CPU only"
    print(f"\nmmfeat GPU suite ({'tiny sizes' if args.tiny else 'full sizes'}) on {device}\n")
    print("| target | figure | target | met |")
    print("|---|---|---|---|")
    for key, target, what in TARGETS:
        value = results.get(key)
        shown = "—" if value is None else f"{value:,.2f}"
        met = "not judged (no CUDA)" if not cuda else ("yes" if value is not None and value >= target else "no")
        print(f"| {what} | {shown} | ≥ {target:,} | {met} |")
    print(f"| gpu-marked tests | {summary} | all pass | {'yes' if tests.returncode in (0, 5) else 'no'} |")
    if failures:
        print("\nfailed:\n  " + "\n  ".join(failures))
        sys.exit(1)


if __name__ == "__main__":
    main()

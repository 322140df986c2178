"""Inputs for benchmarks/stress.py: a text manifest, and mutated copies of real files of every format."""
from __future__ import annotations

import json
import os
import random
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "sample_data")
BASES = {"audio": ["audio/tone_00.wav", "audio/chirp_01.flac", "audio/noise_02.wav"],
         "image": ["images/circles/circles_01.png", "images/stripes/stripes_00.jpg"]}


def text_manifest(work: str, n: int) -> str:
    path = os.path.join(work, f"texts-{n}.jsonl")
    rng = random.Random(n)
    words = "market team game film music bank vote law court season player album chart profit".split()
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"t{i:06d}", "text": " ".join(rng.choices(words, k=10)), "label": "ab"[i % 2]}) + "\n")
    return path


def mutate(data: bytes, rng: random.Random, kind: str) -> bytes:
    """One of: flipped bits (header or body), a truncation, a patched header field, a huge length."""
    data = bytearray(data)
    choice = rng.choice(["flip_head", "flip_body", "truncate", "patch32", "zero_tail"])
    if choice == "flip_head":
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(min(64, len(data)))
            data[i] ^= 1 << rng.randrange(8)
    elif choice == "flip_body":
        for _ in range(rng.randint(1, 16)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif choice == "truncate":
        data = data[: rng.randrange(1, len(data))]
    elif choice == "patch32":  # a size, rate or dimension field set to an absurd value
        offset = {"wav": rng.choice([4, 24, 28, 40]), "png": rng.choice([16, 20]), "flac": rng.choice([18, 21]),
                  "jpg": rng.randrange(2, 200)}.get(kind, rng.randrange(0, 60))
        data[offset:offset + 4] = struct.pack(">I" if kind in ("png", "jpg") else "<I", rng.choice(
            [0, 1, 0xFFFFFFFF, 1 << 27, 60000, rng.getrandbits(32)]))
    else:
        keep = rng.randrange(len(data) // 2, len(data))
        data[keep:] = bytes(len(data) - keep)
    return bytes(data)


def fuzz_corpus(work: str, n: int):
    """(modality, manifest) pairs of ``n`` mutated files per base format."""
    rng = random.Random(0)
    for modality, bases in BASES.items():
        folder = os.path.join(work, f"fuzz-{modality}")
        os.makedirs(folder, exist_ok=True)
        lines = ["id,path"]
        for base in bases:
            kind = base.rsplit(".", 1)[1]
            data = open(os.path.join(SAMPLE, base), "rb").read()
            for k in range(n):
                name = f"{os.path.basename(base)}-{k}.{kind}"
                with open(os.path.join(folder, name), "wb") as f:
                    f.write(mutate(data, rng, kind))
                lines.append(f"{name},{name}")
        with open(os.path.join(folder, "manifest.csv"), "w") as f:
            f.write("\n".join(lines) + "\n")
        yield modality, os.path.join(folder, "manifest.csv")
    folder = os.path.join(work, "fuzz-text")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "manifest.csv"), "w") as m:
        m.write("id,path\n")
        for k in range(n):
            size = rng.choice([0, 1, 100, 10_000, 2_000_000])
            data = bytes(rng.getrandbits(8) for _ in range(min(size, 4096))) * max(1, size // 4096)
            if rng.random() < 0.5:
                data = ("word " * (size // 5)).encode() if size else b""
            with open(os.path.join(folder, f"t{k}.txt"), "wb") as f:
                f.write(data)
            m.write(f"t{k},t{k}.txt\n")
    yield "text", os.path.join(folder, "manifest.csv")

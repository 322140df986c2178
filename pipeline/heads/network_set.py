"""What a network fine-tune ends with: the dataset extracted again with the tuned weights, the head being the
tuned classifier on that new set (its test metrics come from the features ``predict`` will see); or, when
the probe stayed best, the probe on the stored features with nothing extracted again."""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from ..errors import MmfeatError
from .calibration import helpful_temperature
from .registry import TrainedHead, TrainJob

NETWORK_FILE = "network.pth"


def network_weights(run: str, info: dict) -> str:
    """The tuned network of a network-tuned head's run: where it was written, else the run's own copy."""
    return info["weights"] if os.path.isfile(info["weights"]) else os.path.join(run, NETWORK_FILE)


def kept_probe(frozen: TrainedHead, info: dict, seconds: float) -> TrainedHead:
    """Fine-tuning did not beat the probe: the head is the linear head on the base set's stored features,
    exactly as ``--head linear`` trains it, with the fine-tune's account in its report."""
    best = dataclasses.replace(frozen.best, epochs=0)  # epoch 0: the probe
    return dataclasses.replace(frozen, best=best, seconds=frozen.seconds + seconds,
                               report={**frozen.report, "finetune": info})


def extract_tuned(job: TrainJob, tuning, fit, info: dict, seconds: float) -> TrainedHead:
    """Extract the dataset with the tuned weights; the head is the tuned classifier on that set."""
    from .data import joined_table

    tuned = _extract(job, info)
    table, x, report = joined_table([tuned], job.cfg.missing)
    data = _same_splits(job, (table, x, report), info)
    head = torch.nn.Linear(tuning.fc.in_features, tuning.fc.out_features)
    head.load_state_dict({k: v.cpu() for k, v in tuning.fc.state_dict().items()})
    head.eval()
    with torch.no_grad():
        val_logits = head(torch.from_numpy(np.asarray(data.val.x, np.float32)))
        logits = head(torch.from_numpy(np.asarray(data.test.x, np.float32)))
    fit = dataclasses.replace(fit, model=head,
                              val_accuracy=float((val_logits.argmax(1).numpy() == data.val.y).mean()))
    dim = tuned.dim
    # The run carries its network too (NETWORK_FILE): a head published to an object store, or copied to
    # another machine, still predicts raw inputs and exports without <head>/networks.
    return TrainedHead(head, fit, [fit], helpful_temperature(val_logits, torch.from_numpy(data.val.y)), logits,
                       seconds, "adamw", dim, np.zeros(dim, np.float32), np.ones(dim, np.float32), sets=[tuned],
                       data=data, report={"finetune": info}, carried={NETWORK_FILE: info["weights"]})


def _extract(job: TrainJob, info: dict):
    from ..extract import extract

    fs = job.sets[0]
    binding = fs.items.binding() or {}
    read = fs.items.read_options()  # as the items were read: labels kept
    weights = info["weights"]
    base = dict(identity_of(fs))
    at_size = {"image_size": size} if (size := info.get("extract_image_size")) else {}
    summary = extract(binding["source"], "image", "cnn", base | at_size | {"weights": weights}, dataset=fs.manifest["dataset"],
                      store=job.store.uri, progress=False, allow_absolute=bool(read.get("allow_absolute")),
                      label_from_name=read.get("label_from_name"), limit=read.get("limit"))
    return job.store.resolve(summary["feature_set"])


def identity_of(fs) -> dict:
    """The base set's config as extract overrides (the fields that define its features)."""
    from ..config import identity
    from ..extractors.image.cnn import CNNConfig

    fields = set(CNNConfig.__dataclass_fields__)
    config = CNNConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in fs.manifest["config"].items()
                          if k in fields})
    return identity(config)


def _same_splits(job: TrainJob, joined, info: dict):
    """The tuned set's rows in the base set's splits, as they were trained and validated on (a random split
    drawn again over the items that still decode could move an item the network trained on into test)."""
    from .data import load_head_data

    table, x, report = joined
    data = job.data
    parts = [(part, getattr(data, part).ids) for part in ("train", "val", "test")]
    known = pa.array(np.concatenate([ids for _, ids in parts]).astype(str))
    names = pa.array(np.repeat([p for p, _ in parts], [len(ids) for _, ids in parts]))
    where = pc.index_in(table["id"], value_set=known)
    table = table.set_column(table.schema.get_field_index("split"), "split", pc.take(names, where))
    tuned = load_head_data((table, x, report), data.report["label"], job.cfg, fixed_splits=True)
    for part in ("train", "val", "test"):  # items that fail to decode now are rejects there, never moved
        before, after = getattr(data, part).ids, getattr(tuned, part).ids
        if not np.isin(after, before).all():
            raise MmfeatError(f"the tuned set's {part} split holds items the base set's {part} split did not: "
                              "the test metrics would not be held out")
        if len(after) < len(before):
            info.setdefault("missing_from_tuned_set", {})[part] = int(len(before) - len(after))
    return tuned

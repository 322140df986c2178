"""``image-top`` (``--head finetune`` on a cnn activation set): the pretrained network's top, rebuilt above
the stored block with its pretrained weights, plus a new classifier, trained together on the activations
(pretrain -> fine-tune without running the lower network again; the recipe is tops.py's)."""
from __future__ import annotations

import torch

from ..errors import MmfeatError
from .config import FinetuneParams
from .registry import HeadKind, TrainedHead, TrainJob, register_head
from .tops import predict_tensors, sentence, train_top


def _top(model: str, weights: str | None, activations: str, n_classes: int, dropout: float):
    """(the top above ``activations`` of ``model``, the tuned layers' names, the surgery adapter)."""
    from ..extractors.image.models import load_backbone
    from ..extractors.image.surgery import surgery

    adapter = surgery(load_backbone(model, weights), model)
    block = adapter.block_index(activations)
    return adapter.top_above(block, n_classes, dropout), adapter.tuned_names(block), adapter, block


@register_head
class ImageTop(HeadKind):
    name = "image-top"
    family = "finetune"
    params_type = FinetuneParams
    standardized = False

    def accepts(self, sets) -> bool:
        return len(sets) == 1 and sets[0].tensor_shape is not None

    def needs(self) -> str:
        return "cnn activations (--set activations=_blocks.K)"

    def check(self, sets, cfg) -> None:
        config = sets[0].manifest.get("config", {})
        if sets[0].manifest.get("extractor") != "cnn" or not config.get("activations"):
            raise MmfeatError("head=finetune trains on activations: extract with --extractor cnn --set activations=_blocks.K")
        if self.params.tune_blocks is not None:
            raise MmfeatError("tune_blocks is for the network tuned on the images (a pooled cnn set); on stored "
                              "activations or token states, the layers above the stored one are tuned: store a lower one")

    def train(self, job: TrainJob) -> TrainedHead:
        fs = job.sets[0]
        config, shape = fs.manifest["config"], fs.tensor_shape
        torch.manual_seed(job.cfg.seed)
        model, tuned, _, _ = _top(config["model"], config.get("weights"), config["activations"],
                                  len(job.data.classes), self.params.dropout)
        trained, recipe = train_top(job, model, lambda x: torch.from_numpy(x.reshape(-1, *shape)), flip=True)
        trained.dim = fs.dim
        trained.report = {"finetune": {"tuned": tuned, "model": config["model"], "shape": list(shape),
                                       "activations": config["activations"], **recipe}}
        return trained

    def build(self, card: dict) -> torch.nn.Module:
        info = card["data"]["finetune"]
        return _top(info["model"], None, info["activations"], len(card["classes"]),
                    float(card["config"].get("dropout", 0.0)))[0]

    def budgeted(self) -> bool:
        return False  # the architecture is the published network's, not sized by the card

    def check_card(self, card: dict) -> list[str]:
        info = (card.get("data") or {}).get("finetune")
        if not (isinstance(info, dict) and isinstance(info.get("activations"), str)
                and isinstance(info.get("model"), str) and isinstance(info.get("shape"), list)):
            return ["a finetune head's card must name its model, activations and shape (data.finetune)"]
        return []

    def owns(self, card: dict) -> bool:
        info = (card.get("data") or {}).get("finetune") if isinstance(card.get("data"), dict) else None
        return card.get("head") == "finetune" and isinstance(info, dict) and info.get("mode") != "network" \
            and info.get("frames_layer") is None

    def predict(self, model, x, card: dict, batch: int = 256):
        return predict_tensors(model, x, card["data"]["finetune"]["shape"], float(card.get("temperature", 1.0)))

    def training_sentence(self, card: dict) -> str:
        info = card["data"]["finetune"]
        return sentence(card, f"The layers above {info['activations']} of {info['model']}")

    def export(self, run: str, card: dict, model, out: str) -> dict:
        """The backbone with the tuned layers in place, a tensors-only state_dict for ``--set weights=OUT``."""
        import os

        from ..store import files

        info = card["data"]["finetune"]
        _, _, adapter, block = _top(info["model"], None, info["activations"], len(card["classes"]), 0.0)
        state = adapter.merge_top(model.state_dict(), block)
        with files.staged_output(files.LOCAL, os.path.abspath(out), ".pth") as tmp:
            torch.save(state, tmp)
        tuned = sum(1 for name in model.state_dict() if not name.startswith("fc."))
        return {"path": os.path.abspath(out), "model": info["model"], "tuned_tensors": tuned, "tuned": info["tuned"]}

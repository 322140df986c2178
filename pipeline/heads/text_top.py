"""``text-top`` (``--head finetune`` on a bert set of a layer's token states, ``frames=true,
frames_layer=K``): the encoder layers above K with their pretrained weights, mean-pooled over the valid
tokens (as the extractor pools) and a new classifier, trained on the stored states (tops.py's recipe,
without flips). A long text's states are its windows' states one after the other, so the tuned layers
attend across windows there, where the extractor attended within each."""
from __future__ import annotations

import torch

from ..errors import MmfeatError
from .config import FinetuneParams
from .registry import HeadKind, TrainedHead, TrainJob, register_head
from .tops import predict_tensors, sentence, train_top


def _layer(sets) -> int | None:
    return sets[0].manifest.get("config", {}).get("frames_layer") if len(sets) == 1 else None


@register_head
class TextTop(HeadKind):
    name = "text-top"
    family = "finetune"
    params_type = FinetuneParams
    standardized = False

    def accepts(self, sets) -> bool:
        return _layer(sets) is not None and sets[0].manifest.get("extractor") == "bert"

    def needs(self) -> str:
        return "bert token states of a layer (--set frames=true --set frames_layer=K)"

    def input_column(self, sets) -> str:
        return "frames"

    def check(self, sets, cfg) -> None:
        if self.params.tune_blocks is not None:
            raise MmfeatError("tune_blocks is for the network tuned on the images (a pooled cnn set); on stored "
                              "activations or token states, the layers above the stored one are tuned: store a lower one")

    def train(self, job: TrainJob) -> TrainedHead:
        from ..extractors.text.encoder_top import encoder_top

        config = job.sets[0].manifest["config"]
        torch.manual_seed(job.cfg.seed)
        model, tuned = encoder_top(config["model"], config["frames_layer"], len(job.data.classes), self.params.dropout)
        trained, recipe = train_top(job, model, torch.from_numpy, flip=False)
        trained.dim = int(job.data.train.x.shape[-1])  # the padded width, mask included
        trained.report = {"finetune": {"tuned": tuned, "model": config["model"], "shape": [],
                                       "activations": f"encoder.layer.{config['frames_layer']}",
                                       "frames_layer": config["frames_layer"], **recipe}}
        return trained

    def build(self, card: dict) -> torch.nn.Module:
        from ..extractors.text.encoder_top import encoder_top

        info = card["data"]["finetune"]
        return encoder_top(info["model"], int(info["frames_layer"]), len(card["classes"]),
                           float(card["config"].get("dropout", 0.0)))[0]

    def budgeted(self) -> bool:
        return False

    def check_card(self, card: dict) -> list[str]:
        info = (card.get("data") or {}).get("finetune")
        if not (isinstance(info, dict) and isinstance(info.get("model"), str) and isinstance(info.get("frames_layer"), int)):
            return ["a text finetune head's card must name its model and frames_layer (data.finetune)"]
        return []

    def owns(self, card: dict) -> bool:
        info = (card.get("data") or {}).get("finetune") if isinstance(card.get("data"), dict) else None
        return card.get("head") == "finetune" and isinstance(info, dict) and info.get("frames_layer") is not None

    def predict(self, model, x, card: dict, batch: int = 256):
        return predict_tensors(model, x, [], float(card.get("temperature", 1.0)))

    def training_sentence(self, card: dict) -> str:
        info = card["data"]["finetune"]
        return sentence(card, f"The layers above {info['activations']} of {info['model']}")

    def export(self, run: str, card: dict, model, out: str) -> dict:
        """A transformers model folder with the tuned layers: ``extract --extractor bert --set model=OUT``."""
        import os

        from ..extractors.text.encoder_top import save_tuned_encoder

        info = card["data"]["finetune"]
        tuned = save_tuned_encoder(model.state_dict(), info["model"], int(info["frames_layer"]), out)
        return {"path": os.path.abspath(out), "model": info["model"], "tuned_tensors": tuned, "tuned": info["tuned"],
                "extract_with": f"--extractor bert --set model={os.path.abspath(out)}"}

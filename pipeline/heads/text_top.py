"""The text encoder's top, rebuilt above stored token states: the ``finetune`` head on a ``bert`` set
extracted with ``frames=true, frames_layer=K``.

The encoder layers above K keep their pretrained weights; their output is mean-pooled over the valid
tokens (as the extractor pools) and a new classifier is put on it; both train on the stored states with
the recipe of the image top (finetune.py: LP-FT, lr/30 and lr/10, early stopping with the probe as
epoch 0). BERT-family encoders (MiniLM among them) only: their layers take the states and a mask alone
(MPNet's need its relative position bias). A long text's states are its windows' states one after the
other, so the tuned layers attend across windows there, where the extractor attended within each.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from ..errors import MmfeatError


class EncoderTop(nn.Module):
    """Encoder layers ``start``.. of a BERT-family model, a masked mean, then a new Linear. Input: padded
    states (batch, tokens, dim + 1), the valid-token mask in the last channel (sequence.padded)."""

    def __init__(self, encoder: nn.Module, start: int, n_classes: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(encoder.encoder.layer[start:])
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(encoder.config.hidden_size, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.pooled(x)))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        mask = x[..., -1]
        h = x[..., :-1]
        additive = (1.0 - mask[:, None, None, :]) * torch.finfo(h.dtype).min  # padding gets no attention
        for layer in self.layers:
            out = layer(h, attention_mask=additive)
            h = out[0] if isinstance(out, tuple) else out
        m = mask[..., None]
        return (h * m).sum(1) / m.sum(1).clamp(min=1)

    def pretrained_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if not name.startswith("fc.")]


def _encoder(model: str):
    from transformers import AutoModel

    from ..extractors.text.models import resolve_model_dir

    directory = resolve_model_dir(model)
    encoder = AutoModel.from_pretrained(directory, attn_implementation="eager")
    if encoder.config.model_type != "bert":
        raise MmfeatError(f"head=finetune tunes BERT-family encoder layers from token states; {model} is "
                          f"{encoder.config.model_type!r} (train a sequence head on its states instead)")
    return encoder, directory


def text_top_for(provenance: dict, n_classes: int, dropout: float) -> tuple[EncoderTop, list[str]]:
    """The pretrained layers above a bert set's stored token states, and the names of the tuned layers."""
    config = provenance.get("config", {})
    layer = config.get("frames_layer")
    if provenance.get("extractor") != "bert" or not config.get("frames") or layer is None:
        raise MmfeatError("head=finetune on texts trains the encoder layers above stored token states: extract "
                          "with --extractor bert --set frames=true --set frames_layer=K (K below the last layer)")
    encoder, _ = _encoder(config["model"])
    total = encoder.config.num_hidden_layers
    if layer >= total - 1:
        raise MmfeatError(f"frames_layer={layer} is the last of {total} layers: nothing above it to tune")
    encoder.requires_grad_(True)
    top = EncoderTop(encoder, layer + 1, n_classes, dropout)
    return top, [f"encoder.layer.{i}" for i in range(layer + 1, total)]


def export_encoder(model: nn.Module, info: dict, out: str) -> dict:
    """The encoder with the tuned layers in place, as a transformers model directory (its tokenizer and
    sentence-transformers files copied): ``extract --extractor bert --set model=OUT``."""
    import shutil

    encoder, directory = _encoder(info["model"])
    start = info["frames_layer"] + 1
    state = encoder.state_dict()
    tuned = 0
    for name, tensor in model.state_dict().items():
        head, _, rest = name.partition(".")
        if head != "layers":
            continue  # the new classifier is not part of the encoder
        index, _, rest = rest.partition(".")
        key = f"encoder.layer.{start + int(index)}.{rest}"
        if key not in state or state[key].shape != tensor.shape:
            raise MmfeatError(f"{name} does not fit {info['model']}'s {key}")
        state[key] = tensor.clone()
        tuned += 1
    encoder.load_state_dict(state)
    staging = out.rstrip("/") + ".tmp"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(directory, staging, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "*.h5", "*.msgpack",
                                                                       "*.onnx", "onnx", "openvino"))
    encoder.save_pretrained(staging)
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.replace(staging, out)
    return {"path": os.path.abspath(out), "model": info["model"], "tuned_tensors": tuned, "tuned": info["tuned"]}

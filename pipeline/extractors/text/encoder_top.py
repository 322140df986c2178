"""A text encoder's top, rebuilt above stored token states (``bert`` with ``frames=true, frames_layer=K``):
what fine-tuning asks of a transformers encoder. BERT-family encoders (MiniLM among them) only: their
layers take the states and a mask alone (MPNet's need its relative position bias)."""
from __future__ import annotations

import torch
from torch import nn

from ...errors import MmfeatError
from ...store.files import replaced_local_folder


class EncoderTop(nn.Module):
    """Encoder layers ``start``.. of a BERT-family model, a masked mean (as the extractor pools), then a new
    Linear. Input: padded states (batch, tokens, dim + 1), the valid-token mask in the last channel."""

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


def load_encoder(model: str):
    """(the pretrained encoder, its local folder); a non-BERT family is refused in one line."""
    from transformers import AutoModel

    from .models import resolve_model_dir, quiet_transformers

    directory = resolve_model_dir(model)
    with quiet_transformers():
        encoder = AutoModel.from_pretrained(directory, attn_implementation="eager")
    if encoder.config.model_type != "bert":
        raise MmfeatError(f"head=finetune tunes BERT-family encoder layers from token states; {model} is "
                          f"{encoder.config.model_type!r} (train a sequence head on its states instead)")
    return encoder, directory


def encoder_top(model: str, layer: int, n_classes: int, dropout: float) -> tuple[EncoderTop, list[str]]:
    """The pretrained layers above stored layer ``layer``, a new classifier, and the tuned layers' names."""
    encoder, _ = load_encoder(model)
    total = encoder.config.num_hidden_layers
    if layer >= total - 1:
        raise MmfeatError(f"frames_layer={layer} is the last of {total} layers: nothing above it to tune")
    encoder.requires_grad_(True)
    return EncoderTop(encoder, layer + 1, n_classes, dropout), [f"encoder.layer.{i}" for i in range(layer + 1, total)]


def save_tuned_encoder(top_state: dict, model: str, layer: int, out: str) -> int:
    """The encoder with a tuned top's layers in place, as a transformers model folder (its tokenizer and
    sentence-transformers files copied) replacing ``out``; returns the number of tensors tuned."""
    import shutil

    encoder, directory = load_encoder(model)
    start, state, tuned = layer + 1, encoder.state_dict(), 0
    for name, tensor in top_state.items():
        head, _, rest = name.partition(".")
        if head != "layers":
            continue  # the new classifier is not part of the encoder
        index, _, rest = rest.partition(".")
        key = f"encoder.layer.{start + int(index)}.{rest}"
        if key not in state or state[key].shape != tensor.shape:
            raise MmfeatError(f"{name} does not fit {model}'s {key}")
        state[key] = tensor.clone()
        tuned += 1
    encoder.load_state_dict(state)
    with replaced_local_folder(out) as staging:
        shutil.rmtree(staging)
        shutil.copytree(directory, staging, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "*.h5",
                                                                          "*.msgpack", "*.onnx", "onnx", "openvino"))
        encoder.save_pretrained(staging)
    return tuned

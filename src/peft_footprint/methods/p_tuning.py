"""P-tuning (peft/tuners/p_tuning): virtual-token embeddings produced by a trainable prompt encoder (an MLP of
three Linear layers, or a bidirectional LSTM plus a two-layer MLP head); only the encoder's output
embeddings are saved."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from .base import ParamTable, Tensor, base_tensors
from .prompt_learning import PROMPT_DTYPE, PromptLearning


class PTuning(PromptLearning):
    name = "p_tuning"
    prepends_embeddings = True
    peft_type = "P_TUNING"
    label = "P-tuning"

    encoder_reparameterization_type: Literal["MLP", "LSTM"] = "MLP"
    encoder_hidden_size: int | None = Field(None, gt=0)
    encoder_num_layers: int = Field(2, gt=0)
    encoder_dropout: float = Field(0.0, ge=0, lt=1)

    @field_validator("encoder_reparameterization_type", mode="before")
    @classmethod
    def _upper(cls, v):
        return v.upper() if isinstance(v, str) else getattr(v, "value", v)

    def virtual_tokens(self) -> int:
        return self.total_virtual_tokens

    def build(self, layout, cfg, dtype):
        _, d, _ = self.resolved(cfg)
        h = self.encoder_hidden_size or d
        n = self.total_virtual_tokens
        t = [Tensor("prompt_encoder.embedding.weight", (n, d), PROMPT_DTYPE, 1, True, "prompt_encoder")]

        def linear(name, i, o):
            t.append(Tensor(f"{name}.weight", (o, i), PROMPT_DTYPE, 1, True, "prompt_encoder"))
            t.append(Tensor(f"{name}.bias", (o,), PROMPT_DTYPE, 1, True, "prompt_encoder"))

        if self.encoder_reparameterization_type == "MLP":
            linear("prompt_encoder.mlp_head.0", d, h)
            linear("prompt_encoder.mlp_head.2", h, h)
            linear("prompt_encoder.mlp_head.4", h, d)
        else:  # torch.nn.LSTM(d, h, num_layers, bidirectional=True): 4 gates per direction and layer
            # layer 0 reads d features, layers 1.. read 2h: those repeat (one Tensor with a count, "*" = layer index)
            groups = [("0", d, 1, None)]
            if self.encoder_num_layers > 1:
                groups.append(("*", 2 * h, self.encoder_num_layers - 1, range(1, self.encoder_num_layers)))
            for layer, inp, count, layers in groups:
                for suffix in ("", "_reverse"):
                    for name, shape in ((f"weight_ih_l{layer}{suffix}", (4 * h, inp)), (f"weight_hh_l{layer}{suffix}", (4 * h, h)),
                                        (f"bias_ih_l{layer}{suffix}", (4 * h,)), (f"bias_hh_l{layer}{suffix}", (4 * h,))):
                        t.append(Tensor(f"prompt_encoder.lstm_head.{name}", shape, PROMPT_DTYPE, count, True, "prompt_encoder",
                                        layers=layers))
            linear("prompt_encoder.mlp_head.0", 2 * h, 2 * h)
            linear("prompt_encoder.mlp_head.2", 2 * h, d)
        saved = [Tensor("prompt_embeddings", (n, d), PROMPT_DTYPE)]
        notes = []
        if self.encoder_reparameterization_type == "LSTM":
            notes.append("P-tuning's LSTM encoder: what the LSTM keeps for backward (its gates and states; cuDNN's reserve "
                         "space) is not in activations_bytes or peak_bytes. It runs on the virtual tokens once, whatever the "
                         "batch size or sequence length, and grows with encoder_hidden_size and num_virtual_tokens: measured on CPU, "
                         "27 MB for a 4096-wide encoder on 20 virtual tokens, 133 MB on 100 (docs/notes/activations.md)")
        return ParamTable(tensors=base_tensors(layout, dtype) + t, saved=saved, notes=notes)

"""Prefix tuning (peft/tuners/prefix_tuning): per layer, ``num_virtual_tokens`` trainable key and value
vectors handed to attention as a past key/value cache. On GQA models PEFT sizes them for the KV heads
(token_dim = head_dim x num_key_value_heads)."""

from __future__ import annotations

from pydantic import Field

from .base import ParamTable, Tensor, base_tensors
from .prompt_learning import PROMPT_DTYPE, PromptLearning


class PrefixTuning(PromptLearning):
    name = "prefix_tuning"
    peft_type = "PREFIX_TUNING"
    label = "Prefix tuning"

    encoder_hidden_size: int | None = Field(None, gt=0)
    prefix_projection: bool = False

    def prefix_tokens(self) -> int:
        return self.num_virtual_tokens

    def resolved(self, cfg):
        layers, token_dim, heads = super().resolved(cfg)
        if cfg["_has_kv_heads_field"]:  # PEFT's GQA rule (#1901): when the config has num_key_value_heads
            head_dim = cfg["head_dim"] if cfg["_head_dim_in_config"] else token_dim // heads
            token_dim, heads = head_dim * cfg["num_key_value_heads"], cfg["num_key_value_heads"]
        return layers, token_dim, heads

    def build(self, layout, cfg, dtype):
        layers, token_dim, _ = self.resolved(cfg)
        n = self.num_virtual_tokens
        out_dim = layers * 2 * token_dim
        if self.prefix_projection:
            ehs = self.encoder_hidden_size or token_dim
            enc = [
                Tensor("prompt_encoder.embedding.weight", (n, token_dim), PROMPT_DTYPE, 1, True, "prompt_encoder"),
                Tensor("prompt_encoder.transform.0.weight", (ehs, token_dim), PROMPT_DTYPE, 1, True, "prompt_encoder"),
                Tensor("prompt_encoder.transform.0.bias", (ehs,), PROMPT_DTYPE, 1, True, "prompt_encoder"),
                Tensor("prompt_encoder.transform.2.weight", (out_dim, ehs), PROMPT_DTYPE, 1, True, "prompt_encoder"),
                Tensor("prompt_encoder.transform.2.bias", (out_dim,), PROMPT_DTYPE, 1, True, "prompt_encoder"),
            ]
        else:
            enc = [Tensor("prompt_encoder.embedding.weight", (n, out_dim), PROMPT_DTYPE, 1, True, "prompt_encoder")]
        saved = [Tensor("prompt_embeddings", (n, out_dim), PROMPT_DTYPE)]
        return ParamTable(tensors=base_tensors(layout, dtype) + enc, saved=saved)

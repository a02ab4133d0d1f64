"""Prefix tuning (peft/tuners/prefix_tuning): per layer, ``num_virtual_tokens`` trainable key and value
vectors handed to attention as a past key/value cache. On GQA models PEFT sizes them for the KV heads
(token_dim = head_dim x num_key_value_heads)."""

from __future__ import annotations

from pydantic import Field

from ..errors import UnsupportedCombinationError
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
        if cfg["model_type"] in ("gemma2", "gemma3_text") and layers != 2:
            # peft 0.19.1 peft_model.py:817-819: past_key_values is a tuple of one (2, b, heads, n, d) tensor per layer
            raise UnsupportedCombinationError(
                f"prefix_tuning on {cfg['model_type']} with {layers} layers fails in PEFT 0.19.1: get_prompt fills the "
                "Gemma cache with past_key_values[0][layer_idx] and past_key_values[1][layer_idx] over a tuple of one "
                "(2, batch, heads, tokens, head_dim) tensor per layer, an IndexError unless there are exactly 2 layers "
                "(peft_model.py:819); it cannot be trained as is: use prompt_tuning, p_tuning or LoRA"
            )
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

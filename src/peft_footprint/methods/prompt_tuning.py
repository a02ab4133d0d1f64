"""Prompt tuning (peft/tuners/prompt_tuning): ``num_virtual_tokens`` trainable embeddings prepended to the
input, so every layer runs on a longer sequence."""

from __future__ import annotations

from typing import Literal

from .base import ParamTable, Tensor, base_tensors
from .prompt_learning import PROMPT_DTYPE, PromptLearning


class PromptTuning(PromptLearning):
    name = "prompt_tuning"
    prepends_embeddings = True
    peft_type = "PROMPT_TUNING"
    label = "Prompt tuning"

    prompt_tuning_init: Literal["RANDOM", "TEXT", "SAMPLE_VOCAB"] = "RANDOM"
    prompt_tuning_init_text: str | None = None
    tokenizer_name_or_path: str | None = None

    def virtual_tokens(self) -> int:
        return self.total_virtual_tokens

    def build(self, layout, cfg, dtype):
        _, token_dim, _ = self.resolved(cfg)
        emb = Tensor("prompt_encoder.embedding.weight", (self.total_virtual_tokens, token_dim), PROMPT_DTYPE, 1, True, "prompt_encoder")
        return ParamTable(tensors=base_tensors(layout, dtype) + [emb], saved=[Tensor("prompt_embeddings", emb.shape, PROMPT_DTYPE)])

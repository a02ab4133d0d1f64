"""Shared rules of PEFT's prompt-learning methods (peft/utils/other.py: _prepare_prompt_learning_config)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from ..errors import UnsupportedCombinationError
from .base import Method

PROMPT_DTYPE = "fp32"  # nn.Embedding / nn.Linear default dtype; PEFT does not cast the prompt encoder


class PromptLearning(Method):
    prepends_embeddings: ClassVar[bool] = False  # virtual tokens concatenated to the input embeddings

    num_virtual_tokens: int = Field(20, gt=0)
    token_dim: int | None = Field(None, gt=0)
    num_layers: int | None = Field(None, gt=0)
    num_attention_heads: int | None = Field(None, gt=0)
    num_transformer_submodules: int | None = Field(None, gt=0)
    inference_mode: bool = False

    def resolved(self, cfg: dict[str, Any]) -> tuple[int, int, int]:
        """(num_layers, token_dim, num_attention_heads) as PEFT fills them from the model config."""
        layers = self.num_layers or cfg["num_hidden_layers"]
        token_dim = self.token_dim or cfg["hidden_size"]
        embed_dim = cfg.get("word_embed_proj_dim") or cfg["hidden_size"]  # OPT may project its embeddings (validated there)
        if self.prepends_embeddings and token_dim != embed_dim:
            raise UnsupportedCombinationError(
                f"{self.name}: token_dim={token_dim} does not match the width of {cfg['model_type']}'s input embeddings "
                f"(word_embed_proj_dim={embed_dim}); PEFT would concatenate mismatched tensors. Set token_dim={embed_dim}"
            )
        heads = self.num_attention_heads or cfg["num_attention_heads"]
        return layers, token_dim, heads

    @property
    def total_virtual_tokens(self) -> int:
        return self.num_virtual_tokens * (self.num_transformer_submodules or 1)

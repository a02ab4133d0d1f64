"""PEFT's TrainableTokens (peft/tuners/trainable_tokens): selected rows of the input embedding train, the rest of
the model is frozen. PEFT's TrainableTokensLayer replaces the embedding (and, on a model with tied embeddings, the
lm_head, with a layer tied to the same delta); each forward merges the fp32 rows into a whole copy of the weight."""

from __future__ import annotations

from pydantic import Field, field_validator

from ..errors import UnsupportedCombinationError
from .base import Method, ParamTable, Tensor, base_tensors, check_token_rows, names_module, nonnegative_rows, targets_list, token_delta


class TrainableTokens(Method):
    name = "trainable_tokens"
    peft_type = "TRAINABLE_TOKENS"
    label = "Trainable tokens"
    mergeable = True  # merge() writes the rows into the embedding

    token_indices: list[int] = Field(min_length=1, description="the rows of the input embedding to train, e.g. "
                                     "{'name': 'trainable_tokens', 'token_indices': [32000, 32001]}")
    target_modules: list[str] | str | None = None  # None: the input embedding
    init_weights: bool = True
    merge: bool = Field(False, alias="merged", description="serve with the rows written into the embedding")

    _targets = field_validator("target_modules", mode="before")(classmethod(lambda cls, v: targets_list(v)))

    _rows = field_validator("token_indices")(classmethod(lambda cls, v: nonnegative_rows(v)))

    @property
    def merged(self) -> bool:
        return self.merge

    def token_rows(self, layout, cfg) -> int:
        field = f"{self.name}.token_indices"
        targets = self.target_modules
        if targets is not None:
            emb, head = layout.input_embedding, layout.output_embedding
            names = [targets] if isinstance(targets, str) else list(targets)  # (a regex: only as the exact name)
            other = [k for k in names if not names_module(emb, k)]
            if other and cfg.get("tie_word_embeddings", False) and all(names_module(head, k) for k in other):
                raise UnsupportedCombinationError(
                    f"{self.name}.target_modules={targets!r}: with tied embeddings PEFT wraps lm_head itself, and naming it "
                    "too makes its forward fail ('TrainableTokensLayer wraps an unknown layer type'); name the "
                    f"embedding alone ({emb.rsplit('.', 1)[-1]!r}) or leave target_modules out")
            if other or not names:
                raise UnsupportedCombinationError(
                    f"{self.name}.target_modules={targets!r}: trainable tokens are estimated on the input embedding "
                    f"({emb.rsplit('.', 1)[-1]!r}, the default, with a tied lm_head following it); other modules are not modelled")
        return check_token_rows(layout, cfg, field, self.token_indices, None)

    def build(self, layout, cfg, dtype):
        n = self.token_rows(layout, cfg)
        delta = token_delta(layout, n, layout.input_embedding)
        saved = [delta]
        if cfg.get("tie_word_embeddings", False):  # the tied lm_head's layer holds the same delta: saved under its name too
            saved.append(Tensor(f"{layout.output_embedding}.trainable_tokens_delta", delta.shape, delta.dtype, 1, False, "adapter"))
        return ParamTable(tensors=base_tensors(layout, dtype) + [delta], saved=saved)


__all__ = ["TrainableTokens"]

"""Full fine-tuning: every parameter trains; the checkpoint is the whole model."""

from __future__ import annotations

from .base import Method, ParamTable, base_tensors


class Full(Method):
    name = "full"
    label = "Full fine-tuning"
    mergeable = True  # serving needs only the fine-tuned model itself

    @property
    def merged(self) -> bool:
        return True

    def build(self, layout, cfg, dtype):
        tensors = base_tensors(layout, dtype, trainable=True)
        return ParamTable(tensors=tensors, saved=list(tensors))

"""IA3 (peft/tuners/ia3): one learned vector per target, scaling the output of attention targets
(shape (out, 1)) or the input of feed-forward targets (shape (1, in)); fp32 on a bf16/fp16 base."""

from __future__ import annotations

import re

from pydantic import field_validator, model_validator

from ..errors import InvalidConfigError, UnsupportedCombinationError
from .base import (Method, ParamTable, Tensor, base_tensors, check_regex, resolve_targets,
                   targets_list)
from .defaults import default_targets
from .lora import modules_to_save_copies


class IA3(Method):
    name = "ia3"
    peft_type = "IA3"
    label = "IA3"
    mergeable = True

    target_modules: list[str] | str | None = None
    feedforward_modules: list[str] | str | None = None
    exclude_modules: list[str] | str | None = None
    layers_to_transform: list[int] | int | None = None
    modules_to_save: list[str] | None = None
    init_ia3_weights: bool = True
    fan_in_fan_out: bool = False
    merge: bool = False

    _targets = field_validator("target_modules", "feedforward_modules", "exclude_modules", mode="before")(
        classmethod(lambda cls, v: targets_list(v))
    )

    @model_validator(mode="after")
    def _no_layer_indexes(self):
        if self.layers_to_transform is not None:
            raise UnsupportedCombinationError(
                f"ia3.layers_to_transform={self.layers_to_transform!r}: PEFT's IA3Config has no layers_to_transform "
                "(peft 0.19.1 refuses the argument); pick layers with target_modules instead, as full module names or "
                r"a regex such as '.*\.layers\.(0|1)\..*(k_proj|v_proj|down_proj)'")
        return self

    @model_validator(mode="after")
    def _subset(self):
        t, f = self.target_modules, self.feedforward_modules
        if isinstance(t, list) and isinstance(f, list) and not set(f) <= set(t):
            raise InvalidConfigError(
                "feedforward_modules", f, f"must be a subset of target_modules={t} (PEFT's IA3Config rule)"
            )
        return self

    @property
    def merged(self) -> bool:
        return self.merge

    def build(self, layout, cfg, dtype):
        mt = cfg["model_type"]
        targets = self.target_modules if self.target_modules is not None else default_targets("ia3", mt, "target_modules")
        ff = self.feedforward_modules
        if ff is None:
            ff = default_targets("ia3", mt, "feedforward_modules") if self.target_modules is None else []
        if isinstance(ff, str):
            check_regex("feedforward_modules", ff)
        self.saved_modules(layout, cfg)  # (what PEFT would refuse in modules_to_save, said first)
        matches = resolve_targets(layout, targets, model_type=mt, exclude_modules=self.exclude_modules,
                                  layers_to_transform=self.layers_to_transform, allow_embedding=False,
                                  modules_to_save=self.modules_to_save)
        vectors = []
        for t in matches:
            key = t.path.replace("*", "0")
            is_ff = re.fullmatch(ff, key) is not None if isinstance(ff, str) else any(key.endswith(k) for k in ff)
            shape = (1, t.module.in_features) if is_ff else (t.module.out_features, 1)
            vectors.append(Tensor(f"{t.path}.ia3_l", shape, "fp32", t.count, True, "adapter", layers=t.layers))
        saved = list(vectors)
        base = base_tensors(layout, dtype)
        if self.modules_to_save:
            base += modules_to_save_copies(layout, cfg, self.modules_to_save, dtype, saved)
        return ParamTable(tensors=base + vectors, saved=saved)

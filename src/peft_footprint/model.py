"""ModelSpec: a decoder-only model read from a Hugging Face config (dict, path, folder or preset name)."""

from __future__ import annotations

import json
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from . import presets
from .architectures import ARCHITECTURES, Architecture, Layout
from .errors import InvalidConfigError, PeftFootprintError, UnknownNameError, UnsupportedCombinationError

__all__ = ["ModelSpec", "list_models", "load_model"]


@lru_cache(maxsize=1)
def _presets() -> dict[str, dict[str, Any]]:
    return {k: {f: v for f, v in cfg.items() if not f.startswith("_")} for k, cfg in presets.load("models.yaml").items()}


def list_models() -> list[str]:
    """Names of the bundled model presets (Hugging Face repo ids)."""
    return sorted(_presets())


class ModelSpec:
    """A model architecture as transformers would build it from ``config``.

    ``config`` uses Hugging Face ``config.json`` field names (and each family's own spellings such as
    ``n_embd``); fields left out take the defaults of transformers' config class for that ``model_type``.
    """

    def __init__(self, config: dict[str, Any], name: str | None = None):
        if not isinstance(config, dict):
            raise InvalidConfigError("model", type(config).__name__, "expected a config dict, a path, a preset name or a ModelSpec")
        model_type = config.get("model_type")
        if model_type is None:
            raise InvalidConfigError("model_type", None, f"the config needs a model_type; supported: {', '.join(ARCHITECTURES.names())}")
        if model_type not in ARCHITECTURES.names() and isinstance(config.get("text_config"), dict):
            inner = config["text_config"].get("model_type")
            if inner in ARCHITECTURES.names():
                # a multimodal wrapper (Gemma 3, LLaVA, Mistral 3...): its language model is supported, the rest is not
                raise UnsupportedCombinationError(
                    f"model_type {model_type!r} is a multimodal model (a vision tower beside a {inner!r} language "
                    f"model); only the decoder is modelled. Pass config['text_config'] (model_type {inner!r}) to "
                    "estimate the language model alone: the vision tower's weights, activations and image tokens "
                    "are then left out.")
        self.arch: type[Architecture] = ARCHITECTURES.get(model_type)
        self.name = name
        self.raw = dict(config)
        self.cfg = self.arch.normalize(config)

    # ---- construction ---------------------------------------------------------------------------
    @classmethod
    def from_any(cls, model: Any) -> ModelSpec:
        if isinstance(model, ModelSpec):
            return model
        if isinstance(model, dict):
            return _cached_from_json(json.dumps(model, sort_keys=True, default=str))
        if isinstance(model, (str, Path)):
            text = str(model)
            if text in _presets():
                return _cached_preset(text)
            try:
                path = Path(text).expanduser()
                if path.is_dir():
                    path = path / "config.json"
                is_file = path.is_file()
            except (OSError, RuntimeError, ValueError) as exc:  # name too long, unknown ~user, NUL byte
                raise InvalidConfigError("model", text, f"not a bundled preset, and not a readable path ({exc})") from None
            if is_file:
                try:
                    data = json.loads(path.read_text())
                except (OSError, json.JSONDecodeError) as exc:
                    raise InvalidConfigError("model", text, f"could not read JSON config: {exc}") from None
                return cls(data, name=str(model))
            if text.endswith(".json") or text.startswith(("/", ".", "~")):
                raise InvalidConfigError("model", text, "no such file, nor a folder with a config.json")
            raise UnknownNameError("model (a bundled preset or a config.json path)", text, _presets())
        to_dict = getattr(model, "to_dict", None)  # a transformers PretrainedConfig, by duck typing
        if callable(to_dict):
            data = to_dict()
            if not isinstance(data, dict):
                raise InvalidConfigError("model", type(model).__name__, f"its to_dict() gave {type(data).__name__}, not a config dict")
            return cls.from_any(data)
        raise InvalidConfigError("model", type(model).__name__, "expected a config dict, a config.json path, a preset name or a ModelSpec")

    # ---- shape ----------------------------------------------------------------------------------
    @cached_property
    def layout(self) -> Layout:
        return self.arch.layout(self.cfg)

    @property
    def model_type(self) -> str:
        return self.arch.model_type

    def __getattr__(self, item: str) -> Any:  # config fields read as attributes: spec.hidden_size
        cfg = self.__dict__.get("cfg")
        if cfg is not None and item in cfg:
            return cfg[item]
        raise AttributeError(item)

    @cached_property
    def layer_types(self) -> list[str]:
        return self.arch.layer_types(self.cfg)

    @cached_property
    def num_params(self) -> int:
        return self.layout.total_numel

    def __repr__(self) -> str:
        label = self.name or self.model_type
        return f"ModelSpec({label!r}, {self.num_params / 1e9:.3g}B params, {self.cfg['num_hidden_layers']} layers)"


@lru_cache(maxsize=4096)
def _cached_from_json(text: str) -> ModelSpec:
    return ModelSpec(json.loads(text))


@lru_cache(maxsize=None)
def _cached_preset(name: str) -> ModelSpec:
    return ModelSpec(_presets()[name], name=name)


def load_model(model: Any) -> ModelSpec:
    try:
        return ModelSpec.from_any(model)
    except PeftFootprintError:
        raise
    except (TypeError, KeyError, AttributeError, ValueError, OverflowError, RecursionError) as exc:  # never a traceback from deep inside
        raise InvalidConfigError("model", model if isinstance(model, str) else type(model).__name__, str(exc)) from None

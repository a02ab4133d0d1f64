"""Registry of fine-tuning methods, one file each, with PEFT's (and AdapterHub's) field names."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ..errors import InvalidConfigError, PeftFootprintError, UnknownNameError, UnsupportedCombinationError, did_you_mean
from ..registry import Registry
from .adapter import Adapter
from .base import Method, ParamTable, Tensor
from .full import Full
from .ia3 import IA3
from .lora import LoRA
from .p_tuning import PTuning
from .prefix_tuning import PrefixTuning
from .prompt_tuning import PromptTuning
from .qlora import QLoRA
from .trainable_tokens import TrainableTokens


def _norm(name: str) -> str:
    return name.lower().replace("-", "_").replace(" ", "_")


METHODS: Registry[type[Method]] = Registry("method", normalize=_norm)
METHODS.register("full", Full, aliases=("full_finetuning", "full_fine_tuning", "fft", "finetune"))
METHODS.register("lora", LoRA)
METHODS.register("qlora", QLoRA)
METHODS.register("adapter", Adapter, aliases=("bottleneck", "bottleneck_adapter", "adapters", "bn"))
METHODS.register("prefix_tuning", PrefixTuning, aliases=("prefix", "prefixtuning"))
METHODS.register("prompt_tuning", PromptTuning, aliases=("prompt", "prompttuning"))
METHODS.register("p_tuning", PTuning, aliases=("ptuning", "prompt_encoder"))
METHODS.register("ia3", IA3)
METHODS.register("trainable_tokens", TrainableTokens, aliases=("tokens", "trainabletokens"))

# a PEFT adapter_config.json names its peft_type; "LORA" is LoRA (QLoRA only inherits the field)
_BY_PEFT_TYPE = {cls.__dict__["peft_type"]: cls for _, cls in METHODS.items() if cls.__dict__.get("peft_type")}


# PEFT config fields that change what is built or trained, which the estimate does not model: a PEFT config that
# sets one is refused (the rest of a config's fields -- task_type, revision, inference_mode, init options -- change
# no memory and are skipped)
_UNMODELLED = {
    "LORA": {"layer_replication": "duplicates decoder layers", "target_parameters": "adapts nn.Parameters (MoE experts)",
             "use_qalora": "pools lora_A's input (QALoRA)",
             "alora_invocation_tokens": "activates the adapter after invocation tokens (aLoRA)", "use_bdlora": "BD-LoRA",
             "arrow_config": "Arrow routing", "ensure_weight_tying": "ties adapters of tied embeddings",
             "megatron_config": "Megatron parallel layers"},
    **{t: {"modules_to_save": "trains copies of modules beside the prompt"} for t in ("PREFIX_TUNING", "PROMPT_TUNING", "P_TUNING")},
}


def _construct(cls: type[Method], fields: dict[str, Any], *, lenient: bool) -> Method:
    known = set(cls.model_fields) | {f.alias for f in cls.model_fields.values() if f.alias}
    if lenient:  # a PEFT config / adapter_config.json carries many fields we need not read
        for k, what in _UNMODELLED.get(cls.__dict__.get("peft_type") or "", {}).items():
            v = fields.get(k)
            if v not in (None, False, [], {}, ()):
                raise UnsupportedCombinationError(
                    f"method.{k}={v!r}: PEFT's {k} {what}, which this estimate does not model; drop it to estimate "
                    "the rest")
        fields = {k: v for k, v in fields.items() if k in known}
    else:
        unknown = [k for k in fields if k not in known]
        if unknown:
            k = unknown[0]
            raise InvalidConfigError(
                f"method.{k}", fields[k], f"{cls.name} has no field {k!r}.{did_you_mean(k, known)} Fields: {', '.join(sorted(known))}"
            )
    try:
        return cls(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, PeftFootprintError):
            raise cause from None
        loc = ".".join(str(p) for p in err["loc"]) or "method"
        if err["type"] == "missing":  # a required field: say what it is
            info = cls.model_fields.get(str(err["loc"][0])) if err["loc"] else None
            what = f": {info.description}" if info is not None and info.description else ""
            raise InvalidConfigError(f"{cls.name}.{loc}", None, f"{cls.name} needs it{what}") from None
        raise InvalidConfigError(f"{cls.name}.{loc}", err.get("input"), err["msg"]) from None


def load_method(method: Any) -> Method:
    """A method from a name, a dict ``{"name": ..., **fields}``, a spec object, or a PEFT config
    object / ``adapter_config.json`` dict (read by duck typing, without importing peft)."""
    if isinstance(method, Method):
        return method
    if isinstance(method, str):  # (a method with a required field, trainable_tokens' token_indices, says so)
        return _construct(METHODS.get(method), {}, lenient=False)
    if isinstance(method, dict):
        fields = dict(method)
        if "name" in fields:
            cls = METHODS.get(fields.pop("name"))
            return _construct(cls, fields, lenient=False)
        if "method" in fields:
            cls = METHODS.get(fields.pop("method"))
            return _construct(cls, fields, lenient=False)
        if "peft_type" in fields:
            ptype = str(getattr(fields["peft_type"], "value", fields["peft_type"])).upper()
            if ptype not in _BY_PEFT_TYPE:
                raise UnknownNameError("peft_type", fields["peft_type"], _BY_PEFT_TYPE)
            return _construct(_BY_PEFT_TYPE[ptype], fields, lenient=True)
        raise InvalidConfigError("method", method, 'a method dict needs "name" (e.g. {"name": "lora", "r": 16}) or PEFT\'s "peft_type"')
    to_dict = getattr(method, "to_dict", None)
    if getattr(method, "peft_type", None) is not None and callable(to_dict):
        data = to_dict()
        if not isinstance(data, dict):
            raise InvalidConfigError("method", type(method).__name__, f"its to_dict() gave {type(data).__name__}, not a PEFT config dict")
        data = {**data, "peft_type": getattr(method.peft_type, "value", method.peft_type)}
        return load_method(data)
    raise InvalidConfigError("method", type(method).__name__, f"expected a method name ({', '.join(METHODS.names())}), a dict, or a PEFT config")


__all__ = ["METHODS", "Method", "ParamTable", "Tensor", "load_method", "PeftFootprintError"]

"""Command line: ``peft-footprint {estimate,compare,fit,list-models,list-methods,list-hardware,...}``.

Examples::

    peft-footprint estimate meta-llama/Llama-3.1-8B --method lora -m r=16 --batch-size 4 --seq-len 1024
    peft-footprint estimate meta-llama/Llama-3.1-8B --method-config adapter_config.json --json
    peft-footprint compare meta-llama/Llama-3.1-8B --seq-len 1024 --hardware H100
    peft-footprint fit meta-llama/Llama-3.1-8B --method qlora --hardware RTX-4090 --max-batch-size
    peft-footprint fit --config scenario.yaml --recommend

``--config scenario.yaml`` reads a scenario (keys: ``model``, ``method`` or ``methods``, ``method_config``,
``training``, ``inference``, ``hardware``; relative paths are taken from the scenario's folder); flags given on
the command line override it. ``--json`` prints JSON (the library's ``to_dict()``, integers are bytes unless
named otherwise) on every subcommand.

Exit codes: 0 success; 2 bad input (the message on stderr names the field, the value and what is allowed);
1 anything else (an internal error: set ``PEFT_FOOTPRINT_DEBUG=1`` for the traceback); with ``fit
--exit-code``, 3 when the run does not fit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from .architectures import ARCHITECTURES
from .errors import InvalidConfigError, PeftFootprintError
from .methods import METHODS
from .model import list_models
from .training import OPTIMIZERS

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT, EXIT_DOES_NOT_FIT = 0, 1, 2, 3
SCENARIO_KEYS = ("model", "method", "methods", "method_config", "training", "inference", "hardware")


class _BadInput(PeftFootprintError):
    pass


def _parse_kv(items: list[str], flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise _BadInput(f"{flag} expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(value)  # 16 -> int, true -> bool, [q_proj,v_proj] -> list
        except yaml.YAMLError as exc:
            raise _BadInput(f"{flag} {item!r}: value is not valid YAML ({exc.__class__.__name__})") from None
    return out


def _read_data(path: str | Path, what: str) -> Any:
    p = Path(path).expanduser()
    try:
        text = p.read_text()
    except OSError as exc:
        raise _BadInput(f"{what} {str(path)!r}: cannot read it ({exc.strerror or exc})") from None
    try:
        return json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise _BadInput(f"{what} {str(path)!r} is not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {exc}") from None


def load_scenario(path: str | Path) -> dict[str, Any]:
    """A YAML (or JSON) scenario file: ``model``, ``method`` / ``methods``, ``method_config``, ``training``,
    ``inference``, ``hardware``. Relative paths in ``model`` / ``method_config`` are resolved against the file's
    folder when they exist there."""
    data = _read_data(path, "--config")
    if not isinstance(data, dict):
        raise _BadInput(f"--config {str(path)!r}: expected a mapping with keys {', '.join(SCENARIO_KEYS)}, got {type(data).__name__}")
    from .errors import did_you_mean

    for key in data:
        if key not in SCENARIO_KEYS:
            raise InvalidConfigError(f"scenario.{key}", data[key], f"unknown key.{did_you_mean(key, SCENARIO_KEYS)} Keys: {', '.join(SCENARIO_KEYS)}")
    here = Path(path).expanduser().parent
    for key in ("model", "method_config"):
        value = data.get(key)
        if isinstance(value, str) and not Path(value).is_absolute() and (here / value).exists():
            data[key] = str(here / value)
    for key in ("training", "inference"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise InvalidConfigError(f"scenario.{key}", data[key], "expected a mapping of fields")
    return data


# ---- arguments -------------------------------------------------------------------------------------------------

def _add_common(p: argparse.ArgumentParser, *, single_method: bool = True) -> None:
    p.add_argument("model", nargs="?", help="preset name (see list-models), config.json path or folder")
    p.add_argument("--config", metavar="SCENARIO.yaml", help="scenario file: model, method, training, inference, hardware")
    if single_method:
        p.add_argument("--method", help=f"one of: {', '.join(METHODS.names())} (default lora)")
    else:
        p.add_argument("--method", action="append", default=None,
                       help=f"a method to compare (repeatable; default: the standard set); one of: {', '.join(METHODS.names())}")
    p.add_argument("--method-arg", "-m", action="append", default=[], metavar="KEY=VALUE",
                   help="a PEFT field of the method, e.g. r=16 or target_modules=all-linear" + ("" if single_method else " (applies to every --method)"))
    p.add_argument("--method-config", metavar="adapter_config.json", help="a PEFT adapter_config.json (or AdapterHub-style JSON)")
    g = p.add_argument_group("training")
    g.add_argument("--batch-size", type=int)
    g.add_argument("--seq-len", type=int)
    g.add_argument("--dtype", help="bf16 (default), fp16, fp32")
    g.add_argument("--mixed-precision", help="bf16 / fp16 autocast on fp32 weights")
    g.add_argument("--optimizer", help=f"one of: {', '.join(OPTIMIZERS.names())} (default adamw)")
    g.add_argument("--gradient-checkpointing", action="store_true", default=None)
    g.add_argument("--attn-implementation", help="sdpa (default), eager, flash_attention_2")
    g.add_argument("--training-arg", "-t", action="append", default=[], metavar="KEY=VALUE", help="any TrainingSpec field")
    g = p.add_argument_group("inference")
    g.add_argument("--num-tasks", type=int, help="task-specific adaptations served from one base")
    g.add_argument("--prompt-len", type=int)
    g.add_argument("--new-tokens", type=int)
    g.add_argument("--inference-arg", "-i", action="append", default=[], metavar="KEY=VALUE", help="any InferenceSpec field")
    p.add_argument("--hardware", help="a GPU preset (see list-hardware), e.g. H100, A100-80GB, L40S, RTX-4090")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="peft-footprint", description=__doc__.splitlines()[0],
                                epilog="exit codes: 0 ok, 2 bad input, 1 other error, 3 'fit --exit-code' when it does not fit")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("estimate", help="memory, storage and compute for one model and method")
    _add_common(e)
    c = sub.add_parser("compare", help="one row per method: memory, storage, time")
    _add_common(c, single_method=False)
    f = sub.add_parser("fit", help="does it fit on a GPU? largest batch / sequence; --recommend lists what fits")
    _add_common(f)
    f.add_argument("--max-batch-size", action="store_true", help="also search the largest batch size that fits")
    f.add_argument("--max-seq-len", action="store_true", help="also search the largest sequence length that fits")
    f.add_argument("--recommend", action="store_true", help="list the methods and settings that fit, least memory first")
    f.add_argument("--exit-code", action="store_true", help="exit 3 when the run does not fit")
    f.add_argument("--progress", action="store_true", help="show progress on stderr")
    k = sub.add_parser("cache", help="where recorded structures are kept on disk, how many, how large; --clear empties it")
    k.add_argument("--clear", action="store_true", help="remove every kept recording (all versions)")
    k.add_argument("--json", action="store_true")
    for name, helptext in (("list-models", "bundled model presets"), ("list-methods", "fine-tuning methods"),
                           ("list-hardware", "GPU presets"), ("list-architectures", "supported model_type values"),
                           ("list-optimizers", "optimizers")):
        q = sub.add_parser(name, help=helptext)
        q.add_argument("--json", action="store_true")
    return p


def _method_from_args(args, scenario: dict[str, Any], kv: dict[str, Any]) -> Any:
    config_path = args.method_config or scenario.get("method_config")
    if config_path:
        data = _read_data(config_path, "--method-config")
        if not isinstance(data, dict):
            raise _BadInput(f"--method-config {config_path!r}: expected a JSON object (a PEFT adapter_config.json)")
        if args.method and not any(k in data for k in ("name", "method", "peft_type")):
            data = {**data, "name": args.method}  # e.g. an AdapterHub config without PEFT's peft_type
        return {**data, **kv}
    method = args.method if args.method else scenario.get("method", "lora")
    if isinstance(method, dict):
        return {**method, **kv}
    if kv:
        return {"name": method, **kv}
    return method


def _inputs(args) -> dict[str, Any]:
    """Model, method(s), training, inference and hardware from the scenario file and the flags (flags win)."""
    scenario = load_scenario(args.config) if args.config else {}
    model = args.model if args.model is not None else scenario.get("model")
    if model is None:
        raise _BadInput("no model: give a preset name / config.json path, or a --config scenario with 'model'")
    training = dict(scenario.get("training") or {})
    for key in ("batch_size", "seq_len", "dtype", "mixed_precision", "optimizer", "gradient_checkpointing", "attn_implementation"):
        value = getattr(args, key)
        if value is not None:
            training[key] = value
    training.update(_parse_kv(args.training_arg, "--training-arg"))
    inference = dict(scenario.get("inference") or {})
    for key in ("num_tasks", "prompt_len", "new_tokens"):
        value = getattr(args, key)
        if value is not None:
            inference[key] = value
    inference.update(_parse_kv(args.inference_arg, "--inference-arg"))
    kv = _parse_kv(args.method_arg, "--method-arg")
    from .hardware import load_hardware

    hardware = args.hardware or scenario.get("hardware")
    out = {"model": model, "training": training or None, "inference": inference or None,
           "hardware": load_hardware(hardware) if hardware is not None else None}  # validated here, whatever estimate() reads
    if args.command == "compare":
        methods = args.method or scenario.get("methods")
        if methods is None and scenario.get("method") is not None:
            methods = [scenario["method"]]
        if methods is not None:
            methods = [({"name": m, **kv} if isinstance(m, str) else {**m, **kv}) if kv else m for m in methods]
        config_path = args.method_config or scenario.get("method_config")
        if config_path:
            data = _read_data(config_path, "--method-config")
            methods = list(methods or [])
            methods.append((f"{Path(config_path).name}", data))
        out["methods"] = methods
    else:
        out["method"] = _method_from_args(args, scenario, kv)
    return out


# ---- commands --------------------------------------------------------------------------------------------------

def _print(obj: Any, as_json: bool) -> None:
    print(json.dumps(obj, indent=2) if as_json and not isinstance(obj, str) else obj)


def _list(command: str, as_json: bool) -> None:
    if command == "list-hardware":
        from .hardware import _load, list_hardware

        reg = _load()
        items = [reg.get(n) for n in list_hardware()]
        if as_json:
            _print([h.model_dump() for h in items], True)
        else:
            from .units import fmt_bytes

            width = max(len(h.name) for h in items)
            for h in items:
                bf16 = h.flops("bf16") / 1e12
                print(f"{h.name:<{width}}  {fmt_bytes(h.usable_memory_bytes):>11} usable  "
                      f"{h.memory_bandwidth_bytes_per_s / 1e12:5.2f} TB/s  {bf16:7.1f} TFLOP/s bf16  ({h.memory_nominal})")
        return
    if command == "list-methods":
        rows = [(name, cls.label or name) for name, cls in METHODS.items()]
        if as_json:
            _print([{"name": n, "label": label} for n, label in rows], True)
        else:
            print("\n".join(f"{n:<14} {label}" for n, label in rows))
        return
    listing = {"list-models": list_models, "list-architectures": ARCHITECTURES.names, "list-optimizers": OPTIMIZERS.names}[command]()
    print(json.dumps(listing) if as_json else "\n".join(listing))


def _fit(args, inp: dict[str, Any]) -> int:
    from .planning import fit_report, max_batch_size, max_seq_len, recommend

    if not inp["hardware"]:
        raise _BadInput("fit needs --hardware (see list-hardware) or 'hardware' in the --config scenario")
    report = fit_report(inp["model"], inp["method"], inp["training"], inp["hardware"], inp["inference"])
    out: dict[str, Any] = report.to_dict()
    lines = [str(report)]
    if args.max_batch_size:
        out["max_batch_size"] = max_batch_size(inp["model"], inp["method"], inp["training"], inp["hardware"], inp["inference"], progress=args.progress)
        lines.append(f"largest batch size that fits at seq_len {_seq(inp)}: {out['max_batch_size']}")
    if args.max_seq_len:
        out["max_seq_len"] = max_seq_len(inp["model"], inp["method"], inp["training"], inp["hardware"], inp["inference"], progress=args.progress)
        lines.append(f"largest seq_len that fits at batch size {_batch(inp)}: {out['max_seq_len']}")
    if args.recommend:
        rec = recommend(inp["model"], inp["hardware"], inp["training"], progress=args.progress)
        out["recommend"] = rec.to_dict()
        lines += ["", str(rec)]
    _print(out if args.json else "\n".join(lines), args.json)
    return EXIT_DOES_NOT_FIT if args.exit_code and not report.fits else EXIT_OK


def _seq(inp) -> int:
    return (inp["training"] or {}).get("seq_len", 512)


def _batch(inp) -> int:
    return (inp["training"] or {}).get("batch_size", 1)


def _cache(args) -> int:
    from . import cache

    if args.clear:
        cache.clear()
    info = cache.info()
    if args.json:
        print(json.dumps(info, indent=2))
    elif info["directory"] is None:
        print("the disk cache is off (PEFT_FOOTPRINT_CACHE=off, or its directory cannot be written)")
    else:
        from .units import fmt_bytes

        print(f"{info['directory']}: {info['files']} files, {fmt_bytes(info['bytes'])} "
              f"(this version of the code; {info['versions']} version directories kept)")
    return EXIT_OK


def run(args) -> int:
    if args.command.startswith("list-"):
        _list(args.command, args.json)
        return EXIT_OK
    if args.command == "cache":
        return _cache(args)
    inp = _inputs(args)
    if args.command == "estimate":
        from .api import estimate

        est = estimate(inp["model"], inp["method"], inp["training"], inp["inference"], inp["hardware"])
        print(est.to_json(indent=2) if args.json else est)
        return EXIT_OK
    if args.command == "compare":
        from .compare import compare

        comp = compare(inp["model"], inp["methods"], inp["training"], inp["inference"], inp["hardware"])
        print(comp.to_json(indent=2) if args.json else comp)
        return EXIT_OK
    return _fit(args, inp)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # argparse itself exits 2 with a usage line on bad flags
    try:
        return run(args)
    except PeftFootprintError as exc:  # every bad-input error of the library (a ValueError subclass)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # `peft-footprint ... | head`
        return EXIT_OK
    except Exception as exc:  # an internal error: one line, the traceback on request
        if os.environ.get("PEFT_FOOTPRINT_DEBUG"):
            raise
        print(f"error (internal, please report; PEFT_FOOTPRINT_DEBUG=1 shows the traceback): {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())

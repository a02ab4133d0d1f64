"""Command line: ``peft-footprint estimate MODEL [--method lora] [--method-arg r=16] [--json]``.

Exit codes: 0 success, 2 bad input (the message names the field, the value and what is allowed)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from .api import estimate
from .architectures import ARCHITECTURES
from .errors import PeftFootprintError
from .methods import METHODS
from .model import list_models
from .training import OPTIMIZERS


def _parse_kv(items: list[str], flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise PeftFootprintError(f"{flag} expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)  # 16 -> int, true -> bool, [q_proj,v_proj] -> list
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="peft-footprint", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("estimate", help="memory, storage and compute for one model and method")
    e.add_argument("model", help="preset name (see list-models), config.json path or folder")
    e.add_argument("--method", default="lora", help=f"one of: {', '.join(METHODS.names())}")
    e.add_argument("--method-arg", "-m", action="append", default=[], metavar="KEY=VALUE", help="a PEFT field, e.g. r=16")
    e.add_argument("--dtype", default="bf16")
    e.add_argument("--optimizer", default="adamw", help=f"one of: {', '.join(OPTIMIZERS.names())}")
    e.add_argument("--batch-size", type=int, default=1)
    e.add_argument("--seq-len", type=int, default=512)
    e.add_argument("--gradient-checkpointing", action="store_true")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    for name, helptext in (("list-models", "bundled model presets"), ("list-methods", "fine-tuning methods"),
                           ("list-architectures", "supported model_type values"), ("list-optimizers", "optimizers")):
        q = sub.add_parser(name, help=helptext)
        q.add_argument("--json", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "estimate":
            method: Any = {"name": args.method, **_parse_kv(args.method_arg, "--method-arg")}
            training = dict(dtype=args.dtype, optimizer=args.optimizer, batch_size=args.batch_size, seq_len=args.seq_len,
                            gradient_checkpointing=args.gradient_checkpointing)
            est = estimate(args.model, method, training)
            print(est.to_json(indent=2) if args.json else est)
            return 0
        listing = {"list-models": list_models, "list-methods": METHODS.names, "list-architectures": ARCHITECTURES.names,
                   "list-optimizers": OPTIMIZERS.names}[args.command]()
        print(json.dumps(listing) if args.json else "\n".join(listing))
        return 0
    except PeftFootprintError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

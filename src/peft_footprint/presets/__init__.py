"""The bundled presets: ``models.yaml`` (model configs) and ``hardware.yaml`` (accelerators)."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from .. import cache


def load(name: str) -> dict[str, Any]:
    """The bundled preset file ``name``, parsed once per machine (kept on disk, see cache.py: parsing costs about
    15 ms at the first call of every process)."""
    return cache.data(name, lambda: parse(name))


def parse(name: str) -> dict[str, Any]:
    text = resources.files(__name__).joinpath(name).read_text()
    # libyaml's parser where PyYAML has it (5x faster; the same safe constructors)
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}

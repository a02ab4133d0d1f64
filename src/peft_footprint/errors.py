"""The library's own exceptions.

Every error raised for bad input is a subclass of :class:`ValueError` (pydantic's
``ValidationError`` is one too), so scripts can catch ``ValueError`` and never see a
``KeyError``/``TypeError`` from inside the library.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["PeftFootprintWarning", "PeftFootprintError", "UnknownNameError", "InvalidConfigError", "UnsupportedCombinationError", "did_you_mean"]


class PeftFootprintError(ValueError):
    """Base class of every error the library raises on bad input."""


class PeftFootprintWarning(UserWarning):
    """Input that is allowed but probably not what was meant (a sequence past the model's positions, merging
    into a 4-bit base)."""


class UnknownNameError(PeftFootprintError):
    """A name (model type, method, preset, optimizer, dtype, ...) that is not registered."""

    def __init__(self, kind: str, value: object, allowed: Iterable[str]):
        self.kind, self.value, self.allowed = kind, value, sorted(set(allowed))
        hint = did_you_mean(str(value), self.allowed)
        shown = ", ".join(self.allowed) if len(self.allowed) <= 40 else ", ".join(self.allowed[:40]) + ", ..."
        super().__init__(f"Unknown {kind} {value!r}.{hint} Available: {shown}")


class InvalidConfigError(PeftFootprintError):
    """A field with a value outside what is allowed."""

    def __init__(self, field: str, value: object, expected: str):
        self.field, self.value = field, value
        super().__init__(f"Invalid {field}={value!r}: {expected}")


class UnsupportedCombinationError(PeftFootprintError):
    """Options that transformers, PEFT or AdapterHub refuse to combine (or, where the message says so, that this
    estimate does not model)."""


def did_you_mean(value: object, choices: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the nearest choice, or an empty string."""
    low = {str(c).lower(): c for c in choices}
    text = str(value).lower()
    match = difflib.get_close_matches(text, list(low), n=1, cutoff=0.6)
    if not match and "/" not in text:  # a hub id without its organization: "gpt2" for "openai-community/gpt2"
        tails: dict[str, str] = {}
        for c in low:
            if "/" in c:
                tails.setdefault(c.rsplit("/", 1)[1], c)
        match = [tails[m] for m in difflib.get_close_matches(text, list(tails), n=1, cutoff=0.6)]
    return f" Did you mean {low[match[0]]!r}?" if match else ""

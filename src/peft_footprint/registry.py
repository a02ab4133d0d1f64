"""One registry per kind (architectures, methods, optimizers, hardware): CLI choices, docs and the
test matrix are generated from these, never listed twice."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, *, normalize: Callable[[str], str] = str.lower):
        self.kind = kind
        self._normalize = normalize
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, item: T, *, aliases: tuple[str, ...] = ()) -> T:
        key = self._normalize(name)
        self._items[key] = item
        for alias in aliases:
            self._aliases[self._normalize(alias)] = key
        return item

    def get(self, name: object) -> T:
        if not isinstance(name, str):
            raise UnknownNameError(self.kind, name, self._items)
        key = self._normalize(name)
        key = self._aliases.get(key, key)
        if key not in self._items:
            raise UnknownNameError(self.kind, name, self._items)
        return self._items[key]

    def canonical(self, name: str) -> str:
        self.get(name)
        key = self._normalize(name)
        return self._aliases.get(key, key)

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = self._normalize(name)
        return self._aliases.get(key, key) in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def items(self):
        return self._items.items()

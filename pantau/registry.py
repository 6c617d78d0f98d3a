"""A plain name -> implementation registry: payload decoders and rule kinds register here.

The set is visible in one place (the module that imports every implementation by name),
and a name registered twice or looked up unknown fails loudly at start-up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> implementation; registering a name twice is a start-up error."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.what} {name!r} registered twice")
            self._items[name] = item
            return item

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items))
            raise KeyError(f"unknown {self.what} {name!r} (known: {known})") from None

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._items))

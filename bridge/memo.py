"""The one bounded memory: results worked out before, kept so that a library, which repeats its words and phrases
prompt after prompt, does not pay for them twice.

A :class:`Memo` holds at most ``size`` entries and forgets them all at once when it is full (simple, and a library's
common words come straight back). A key longer than ``longest`` characters (a pasted blob) is never kept, so memory
stays bounded whatever the input. A memo only saves time: every caller gets the same result with or without it, and
no code asks whether something was remembered (the tests compare translations with and without memories).

What is kept, and how much: the plain phrases the phrase stage left alone and the artist rewrites (per plan), the
literals inside each word (the weak-concept prefilter), normalized phrases, the tokens of each word (tokens.py) and
the counts and tokens of each comma-separated phrase (chunks.py); each memo holds 256 to 65,536 entries. A process
that has translated 200,000 distinct prompts holds about 100 MB more than at start and grows ever more slowly after,
so a long-running host (the ComfyUI node, the A1111 extension) stays bounded.

>>> twice = memoized(size=2)(lambda text: text * 2)
>>> twice("ab"), twice("ab"), len(twice.memo)
('abab', 'abab', 1)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

__all__ = ["LONGEST_KEY", "Memo", "memoized"]

LONGEST_KEY = 400  # characters: a longer text (a pasted blob) is worked out each time, not remembered

V = TypeVar("V")
_MISSING: Any = object()


class Memo(Generic[V]):
    """At most ``size`` remembered values by text key (or by a tuple whose first item is the text); keys longer than
    ``longest`` characters are not remembered."""

    __slots__ = ("_values", "longest", "size")

    def __init__(self, size: int, longest: int = LONGEST_KEY):
        if size < 1:
            raise ValueError(f"a memo holds at least one entry, got size={size}")
        self.size, self.longest = size, longest
        self._values: dict[Any, V] = {}

    def get(self, key: Any, default: Any = None) -> V | Any:
        return self._values.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def put(self, key: Any, value: V) -> None:
        if len(key if isinstance(key, str) else key[0]) > self.longest:
            return
        if len(self._values) >= self.size:
            self._values.clear()
        self._values[key] = value

    def clear(self) -> None:
        self._values.clear()


def memoized(size: int, longest: int = LONGEST_KEY) -> Callable[[Callable[..., V]], Callable[..., V]]:
    """A decorator: the function's results kept in a :class:`Memo`, by its positional arguments (the first is the
    text whose length counts). ``fn.cache_clear()`` forgets them, as after ``functools.lru_cache``; ``fn.memo`` is
    the :class:`Memo`."""

    def wrap(fn: Callable[..., V]) -> Callable[..., V]:
        memo: Memo[V] = Memo(size, longest)
        values, put = memo._values, memo.put  # (read directly: this wrapper runs on every call of the hot path)

        @functools.wraps(fn)
        def call(*args: Any) -> V:
            key = args[0] if len(args) == 1 else args
            value = values.get(key, _MISSING)  # (not try/except: a first pass misses often, and a raise costs more)
            if value is _MISSING:
                value = fn(*args)
                put(key, value)
            return value

        call.cache_clear = memo.clear  # type: ignore[attr-defined]
        call.memo = memo  # type: ignore[attr-defined]  # (for tests: what is kept)
        return call

    return wrap

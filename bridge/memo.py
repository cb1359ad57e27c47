"""The one bounded memory: results worked out before, kept so that a library, which repeats its words and phrases
prompt after prompt, does not pay for them twice.

A :class:`Memo` holds at most ``size`` entries and forgets them all at once when it is full (simple, and a library's
common words come straight back). A key longer than ``longest`` characters (a pasted blob) is never kept, so memory
stays bounded whatever the input. A memo only saves time: every caller gets the same result with or without it, and
no code asks whether something was remembered (the tests compare translations with and without memories).

What is kept, and how much: the plain phrases the phrase stage left alone and the artist rewrites (per plan), the
literals inside each word (the weak-concept prefilter), the tokens of each word (tokens.py), the counts and tokens of
each comma-separated phrase and the parts and fit of each prompt (chunks.py); each memo holds 256 to 65,536 entries.
A process that has translated 200,000 distinct prompts holds about 100 MB more than at start and grows ever more
slowly after, so a long-running host (the ComfyUI node, the A1111 extension) stays bounded.

>>> twice = memoized(size=2)(lambda text: text * 2)
>>> twice("ab"), twice("ab"), len(twice.memo)
('abab', 'abab', 1)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["LONGEST_KEY", "Memo", "memoized"]

LONGEST_KEY = 400  # characters: a longer text (a pasted blob) is worked out each time, not remembered

V = TypeVar("V")
_MISSING: Any = object()


class Memo(dict[Any, V]):
    """At most ``size`` remembered values by text key (or by a tuple whose first item is the text); keys longer than
    ``longest`` characters are not remembered. A dict (read it as one: ``get``, ``in`` and ``len`` cost what a
    dict's do, and hot paths ask a memo for every word); write with :meth:`put`, which keeps the bounds."""

    __slots__ = ("longest", "size")

    def __init__(self, size: int, longest: int = LONGEST_KEY):
        if size < 1:
            raise ValueError(f"a memo holds at least one entry, got size={size}")
        super().__init__()
        self.size, self.longest = size, longest

    def put(self, key: Any, value: V) -> None:
        if len(key if isinstance(key, str) else key[0]) > self.longest:
            return
        if len(self) >= self.size:
            self.clear()
        self[key] = value


def memoized(size: int, longest: int = LONGEST_KEY) -> Callable[[Callable[..., V]], Callable[..., V]]:
    """A decorator: the function's results kept in a :class:`Memo`, by its positional arguments (the first is the
    text whose length counts). ``fn.cache_clear()`` forgets them, as after ``functools.lru_cache``; ``fn.memo`` is
    the :class:`Memo`."""

    def wrap(fn: Callable[..., V]) -> Callable[..., V]:
        memo: Memo[V] = Memo(size, longest)

        @functools.wraps(fn)
        def call(*args: Any) -> V:
            key = args[0] if len(args) == 1 else args
            value = memo.get(key, _MISSING)  # (not try/except: a first pass misses often, and a raise costs more)
            if value is _MISSING:
                value = fn(*args)
                if len(args[0]) <= longest:  # Memo.put, written out: a first pass misses often
                    if len(memo) >= size:
                        memo.clear()
                    memo[key] = value
            return value

        call.cache_clear = memo.clear  # type: ignore[attr-defined]
        call.memo = memo  # type: ignore[attr-defined]  # (for tests: what is kept)
        return call

    return wrap

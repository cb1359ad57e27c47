"""Artist phrases: find SD1 artist names in a phrase and rewrite them per the knowledge file's action.

"by greg rutkowski and alphonse mucha" → "by alphonse mucha, <rutkowski's style>, <mucha's style>": names SD2 still
knows are kept (``keep``), names it lost are replaced by a description of the style (``replace``), names in between
are kept and described (``keep_and_describe``). A phrase that is not about artists ("by the sea") is left alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from bridge.rules.knowledge import Artist
from bridge.rules.phrases import LONGEST_REMEMBERED, Item, Phrase, normalize
from bridge.syntax import Text

__all__ = ["ArtistEdit", "ArtistIndex"]

_BY = re.compile(r"(?:^|\s)(?P<by>(?:(?:art|artwork|painting|illustration|drawing|concept art)\s+)?by|"
                 r"in the style of|style of|inspired by)\s+", re.IGNORECASE)
_JOIN = re.compile(r"\s+(?:and|&|x)\s+|\s*&\s*", re.IGNORECASE)
MAX_UNKNOWN_NAME_WORDS = 4  # "by the sea and the mountains" is not a list of names


@dataclass(frozen=True)
class ArtistEdit:
    """One artist rewritten inside a phrase (for the change log)."""

    artist: Artist
    written: str  # the name as the prompt wrote it

    @property
    def after(self) -> str:
        if self.artist.action == "replace":
            return self.artist.description
        return f"{self.written}, {self.artist.description}"

    @property
    def reason(self) -> str:
        if self.artist.action == "replace":
            return "SD2's new text encoder barely knows this artist's name, so the style is described instead"
        return "SD2 knows this name only weakly, so the name is kept and the style spelled out"


class ArtistIndex:
    """All enabled artists by name and alias, lower-case."""

    def __init__(self, artists: list[Artist]):
        self.by_name: dict[str, Artist] = {}
        for artist in artists:
            self.by_name[artist.name] = artist
            for alias in artist.aliases:
                self.by_name.setdefault(alias, artist)
        # The first word of every name: a phrase with none of them names no artist, and is rejected cheaply.
        self.first_words = {name.split()[0] for name in self.by_name if name.split()}
        # rewrites already worked out, by text: libraries name the same artists the same way over and over
        self._rewritten: dict[str, tuple[str, tuple[ArtistEdit, ...]]] = {}

    def __bool__(self) -> bool:
        return bool(self.by_name)

    def rewrite(self, phrase: Phrase, record: Callable[[ArtistEdit], None]) -> list[Item] | None:
        """New core items for an artist phrase, or None when the phrase has no artist to change."""
        core = phrase.core
        if len(core) == 1 and type(core[0]) is str:  # plain text, the common case: no tree to look into
            new_text = None if "\\" in core[0] else self.rewrite_text(core[0], record)
            return None if new_text is None else [new_text]
        group = phrase.innermost
        if group is not None:
            if not all(isinstance(c, Text) for c in group.children):
                return None
            text = "".join(c.text for c in group.children)
        elif all(isinstance(i, str) for i in phrase.core):
            text = "".join(phrase.core)  # type: ignore[arg-type]
        else:
            return None
        if "\\" in text:
            return None
        new_text = self.rewrite_text(text, record)
        if new_text is None:
            return None
        if group is not None:
            group.children = [Text(new_text)]
            return list(phrase.core)
        return [new_text]

    MAX_REMEMBERED = 1 << 14

    def rewrite_text(self, text: str, record: Callable[[ArtistEdit], None]) -> str | None:
        """``text`` with its artists rewritten (each edit passed to ``record``), or None when it has none to change."""
        done = self._rewritten.get(text)
        if done is not None:
            for edit in done[1]:
                record(edit)
            return done[0]
        if self.first_words.isdisjoint(text.lower().replace(",", " ").replace("&", " ").split()):
            return None  # no word (between spaces, commas and ampersands) starts a known name
        edits: list[ArtistEdit] = []
        new_text = self._rewrite(text, edits.append)
        if new_text is not None and len(text) <= LONGEST_REMEMBERED:
            if len(self._rewritten) >= self.MAX_REMEMBERED:
                self._rewritten.clear()
            self._rewritten[text] = (new_text, tuple(edits))
        for edit in edits:
            record(edit)
        return new_text

    def _rewrite(self, text: str, record: Callable[[ArtistEdit], None]) -> str | None:
        head, by, names_text = "", "", text
        matches = list(_BY.finditer(text))
        if matches:
            m = matches[-1]
            head, by, names_text = text[: m.start()].rstrip(), m.group("by"), text[m.end():]
        names = [n.strip() for n in _JOIN.split(names_text) if n.strip()]
        found = [self.by_name.get(normalize(n)) for n in names]
        if not any(found):
            return None
        if not by and not all(found):
            return None  # without "by", only a phrase made of known names is an artist phrase
        if any(a is None and len(n.split()) > MAX_UNKNOWN_NAME_WORDS for n, a in zip(names, found)):
            return None
        if all(a is None or a.action == "keep" for a in found):
            return None
        kept = [n for n, a in zip(names, found) if a is None or a.action != "replace"]
        described = []
        for n, a in zip(names, found):
            if a is not None and a.action != "keep":
                described.append(a.description)
                record(ArtistEdit(a, n))
        pieces = [head] if head else []
        if kept:
            pieces.append((by + " " if by else "") + " and ".join(kept))
        pieces.extend(described)
        return ", ".join(pieces)

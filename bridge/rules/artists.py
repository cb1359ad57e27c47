"""Artist phrases: find SD1 artist names the way prompters write them, and merge what they stood for into one style.

Names are found after a marker ("by X", "art by X", "in the style of X", "in style of X", "inspired by X"), in lists
("by X, Y and Z": the later phrases hold only names), in a phrase made only of names ("X and Y"), and before "style"
("X style").
A marker may sit in the middle of run-on text: "borderlands by X and Y radiating a glowing aura" keeps
"borderlands" and "radiating a glowing aura". Names the bridge replaces are also taken out of run-on text where
no marker leads to them ("cinematic beeple", "tower'beeple"), with the connector beside them, and out of an unknown
name they follow with only a space between ("by tran nguyen ilya kuvshinov" keeps "by tran nguyen"). Names are
compared without case, accents, hyphens or underscores ("Cédric Peyravernay", "greg_rutkowski").

What happens to a name is the knowledge file's ``action``: ``keep`` (SD2 still knows it), ``replace`` (the name goes,
its style is described) or ``keep_and_describe``. The descriptions of all the artists of a prompt are merged by
:func:`compose_style` into one short phrase placed where the first artist was: one medium at most and none when the
prompt names its own, nothing the prompt already says, subject words only for the subjects the prompt shows, within
a token budget. A phrase that is not about artists ("by the sea") is left alone.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import NamedTuple

from bridge.memo import Memo
from bridge.rules.knowledge import Artist
from bridge.rules.matching import END_MARKS, PhraseSet, Said, Words, fold_accents, normalize

__all__ = ["OWN_FACETS", "ArtistEdit", "ArtistIndex", "Rewrite", "Style", "compose_style", "name_key"]

_MARKER = re.compile(r"(?<!\S)(?:(?:in (?:the )?style of|style of|inspired by|by)\s+)+", re.IGNORECASE)
_ONE_MARKER = re.compile(r"(?:in (?:the )?style of|style of|inspired by|by)$", re.IGNORECASE)
_WORD = re.compile(r"[^\s,&]+")
_PUNCTUATION = re.compile(r"[^\w\s]|_")
# the first word of what may be a name: after a space, a comma, a bracket or a quote ("tower'beeple")
_NAME_START = re.compile(r"(?<![^\s,&(\['\"\u201c\u201d\u2018\u2019])[^\s,&+|()\[\]\-_.!?;:'\"\u201c\u201d\u2018\u2019]+")
_CONNECTOR = re.compile(r"\s*,\s*|\s+(?:and|&|x)\s+|\s*[&+]\s*", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
# Words before a marker that only announce the artist ("art by X"): they go with the marker when nothing else is
# before it. A medium ("oil painting by X", "concept art by X") is the user's head noun and stays.
_ANNOUNCING = frozenset({"art", "artwork", "artworks", "work", "works", "made", "done", "created", "drawn", "painted",
                         "illustrated", "in the style of", "style", "and", "&", "with", ""})
_LEADING_CONNECTOR = re.compile(r"(?:and|&|_+)\s+", re.IGNORECASE)
_STYLE_SUFFIX = re.compile(r"\s*(?:-|\s)(?:art\s+)?style$", re.IGNORECASE)
# What a removed name can leave at either end of a phrase: "josan gonzales and", "and natalie shau", "artwork of"
_LOOSE_ENDS = re.compile(r"^(?:(?:and|&|x|\+)\s+)+|(?:(?:^|\s+)(?:and|&|x|\+|by|of|with|in (?:the )?style of|style of|inspired by))+$",
                         re.IGNORECASE)
_DOUBLED = re.compile(r"(?<!\S)(and|&)(?:\s+(?:and|&))+(?!\S)", re.IGNORECASE)  # "X and and Y" once Z is gone
_NAME_WORDS = re.compile(r"[^\s,&+|()\[\]\-_.!?;:'\"\u201c\u201d\u2018\u2019]+")  # "h.r. giger" is looked for as "h"
MAX_UNKNOWN_NAME_WORDS = 4  # "by the sea and the mountains" is not a list of names
# A run of 64 or more spaces reads as one space for the artist patterns: each is then linear in the text (a pattern
# with leading spaces is tried from every space of a run), and what a name takes from the text before it is found
# within _NEAR characters. No name, known or not, runs on longer than that either: the end of one is looked for within
# _NEAR characters, so a phrase of thousands of "by x y" is read in linear time.
_LONG_SPACE = re.compile(r"\s{64,}")
_NEAR = 200


def name_key(name: str) -> str:
    """How names are compared: lower case, accents off, hyphens and underscores as spaces ("william - adolphe
    bouguereau" = "william-adolphe bouguereau" = "william adolphe bouguereau"; "greg_rutkowski" = "greg rutkowski";
    "Cédric Peyravernay" = "cedric peyravernay")."""
    return normalize(fold_accents(name.replace("-", " ").replace("_", " ")))


class ArtistEdit(NamedTuple):
    """One artist rewritten inside a phrase (for the change log)."""

    artist: Artist
    written: str  # the name as the prompt wrote it

    @property
    def after(self) -> str:
        return "" if self.artist.action == "replace" else self.written

    @property
    def reason(self) -> str:
        if self.artist.action == "replace":
            return ("SD2's new text encoder barely knows this artist's name, so it goes and the style is described in "
                    "the prompt's one style phrase")
        return "SD2 knows this name only weakly, so the name is kept and the style described in the prompt's style phrase"


class Rewrite(NamedTuple):
    """What the artists of one phrase text come to: the new text ("" when nothing is left of it), or None when it
    stays as written; every artist named (keep ones too) and the edits made."""

    text: str | None
    named: tuple[Artist, ...]
    edits: tuple[ArtistEdit, ...]


_NOTHING = Rewrite(None, (), ())


class ArtistIndex:
    """All enabled artists by name and alias, lower-case."""

    def __init__(self, artists: list[Artist]):
        self.by_name: dict[str, Artist] = {}  # by name_key
        for artist in artists:
            self.by_name[name_key(artist.name)] = artist
            for alias in artist.aliases:
                self.by_name.setdefault(name_key(alias), artist)
        # The first word of every name: a phrase with none of them names no artist, and is rejected cheaply.
        self.first_words = {_NAME_WORDS.findall(name)[0] for name in self.by_name if _NAME_WORDS.search(name)}
        self.longest = max((len(name.split()) for name in self.by_name), default=0)
        # rewrites already worked out, by text: libraries name the same artists the same way over and over
        self._rewritten: Memo[Rewrite] = Memo(1 << 14)

    def __bool__(self) -> bool:
        return bool(self.by_name)

    def rewrite_text(self, text: str) -> Rewrite:
        """``text`` (one phrase, plain) with its artists rewritten."""
        done = self._rewritten.get(text)
        if done is None:
            if not self._may_name(text):
                return _NOTHING
            done = self._rewrite(text)
            self._rewritten.put(text, done)
        return done

    def _may_name(self, text: str) -> bool:
        """Whether a word of ``text`` starts a known name (words cut at spaces, then at punctuation if there is any):
        most phrases name no artist, and are rejected here."""
        lowered = fold_accents(text.lower())
        return not self.first_words.isdisjoint(lowered.split()) or (
            _PUNCTUATION.search(lowered) is not None and not self.first_words.isdisjoint(_NAME_WORDS.findall(lowered)))

    def strip_replaced(self, text: str) -> tuple[str, tuple[ArtistEdit, ...]] | None:
        """``text``, a run of plain text in a phrase that also holds brackets or tags ("and X and Y" in "by (Z) and
        X and Y"), without the names the bridge replaces: each goes with the connector before it, or the one after
        it when there is none before. None when it has none. (Rare: its patterns are compiled on first use.)"""
        if not self._may_name(text):
            return None
        text = _LONG_SPACE.sub(" ", text)
        spans = self._anywhere(text, outside=[])
        if not spans:
            return None
        for span in reversed(spans):
            # what stands before the name: looked for in the characters just before it (runs of spaces are short now)
            window = max(0, span.start - _NEAR)
            before = re.search(r"(?i)(?:\s*,|\s+(?:and|&|x|\+)|\s*[&+])\s*$", text[window:span.start])
            after = _CONNECTOR.match(text, span.end)
            if before is not None:  # "X and Y" -> "X"
                start, end = window + before.start(), span.end
            elif after is not None:  # "by Y and X" -> "by X"
                start, end = span.start, after.end()
            else:  # "tattoos by Y" -> "tattoos": a marker with nothing after it goes too
                marker = re.search(r"(?i)\s*(?<!\S)(?:(?:art\s+)?by|in (?:the )?style of|style of|inspired by)\s+$",
                                   text[window:span.start])
                start, end = (window + marker.start() if marker else span.start), span.end
            text = text[:start] + text[end:]
        return text, tuple(ArtistEdit(a, written) for span in spans for written, a in span.names if a is not None)

    def _may_start(self, word: str) -> bool:
        """Whether ``word`` (one of _NAME_WORDS) is the first word of a known name."""
        return fold_accents(word.lower()) in self.first_words

    def _name_at(self, text: str, start: int) -> tuple[Artist, int] | None:
        """The longest known name that starts at ``start`` and ends at a word's end, and where it ends."""
        first = _NAME_WORDS.match(text, start)
        if first is None or not self._may_start(first.group()):
            return None  # most words start no name: decided before the words after it are cut
        words = list(itertools.islice(_WORD.finditer(text, start), self.longest))
        if not words or words[0].start() != start:
            return None
        for n in range(len(words), 0, -1):
            end = words[n - 1].end()
            written = text[start:end]
            artist = self.by_name.get(name_key(written)) or (
                self.by_name.get(name_key(written.rstrip(END_MARKS))) if written[-1] in END_MARKS else None)
            if artist is not None:
                return artist, end
        return None

    def _names(self, text: str, start: int, *, whole: bool) -> tuple[list[tuple[str, Artist | None]], int]:
        """The list of names written from ``start`` ("X", "X and Y", "X, Y & Z"), and where it ends. An unknown
        name counts only where a known one follows it in the list, or it ends the text and is short; with
        ``whole``, the list must run to the end of the text or the result is empty."""
        lists: dict[int, bool] = {}  # where a list of names starts (_starts_list), for this text
        names: list[tuple[str, Artist | None]] = []
        at = end = start
        while True:
            leading = _LEADING_CONNECTOR.match(text, at)  # "in the style of and X", "X and and Y"
            if leading:
                at = leading.end()
            found = self._name_at(text, at)
            if found is not None:
                artist, stop = found
                names.append((text[at:stop], artist))
                end = stop
            else:
                unknown = _unknown_name(text, at)
                if unknown is None:
                    break
                written, stop, connector = unknown
                inside = self._known_inside(text, at, stop)
                if inside is not None:  # "tran nguyen ilya kuvshinov": two names with only a space between
                    names.append((text[at:inside].rstrip(), None))
                    end = at = inside
                    continue
                later = connector is not None and self._starts_list(text, connector.end(), lists)
                if not (later or (stop == len(text) and len(written.split()) <= MAX_UNKNOWN_NAME_WORDS)):
                    break
                names.append((written, None))
                end = stop
            connector = _CONNECTOR.match(text, end)
            if connector is None:
                # names one after the other with only a space between ("by brian froud jessica rossier"): both known
                space = _SPACE.match(text, end)
                if found is None or space is None or self._name_at(text, space.end()) is None:
                    break
                connector = space
            if connector.end() == len(text):
                break
            at = connector.end()
        if whole and text[end:].strip():
            return [], start
        return names, end

    def _known_inside(self, text: str, start: int, stop: int) -> int | None:
        """Where a name the bridge replaces starts inside the words ``text[start:stop]`` that are no known name
        themselves, after at least two words ("john kirby artgerm", "jim lee character portrait artgerm"), or None. A
        surname alone does not count ("jean baptiste monge" is one name, not "jean baptiste" and "monge"), and a name
        the bridge keeps is left where it is, as :meth:`_anywhere` leaves it ("digital cinematic pixar")."""
        for word in _NAME_START.finditer(text, start, stop):
            if not self._may_start(word.group()) or len(text[start:word.start()].split()) < 2:
                continue
            found = self._name_at(text, word.start())
            if found is None or found[1] > stop or found[0].action != "replace":
                continue
            key = name_key(text[word.start():found[1]].rstrip(END_MARKS))
            if " " in key or key == name_key(found[0].name):
                return word.start()
        return None

    def _starts_list(self, text: str, start: int, lists: dict[int, bool]) -> bool:
        """Whether :meth:`_names` finds a name at ``start``: a known one, or an unknown one a list goes on from (the
        next name, after a connector, starts a list) or that ends the text and is short. Asked once per position of
        ``lists`` and by a loop, not by recursion: an unknown name asked again for every name after it took
        exponential time ("by X and a and b and ... and Y")."""
        chain: list[int] = []  # positions whose answer is the answer at the next one
        at = start
        while at not in lists:
            leading = _LEADING_CONNECTOR.match(text, at)
            name_start = leading.end() if leading else at
            if self._name_at(text, name_start) is not None:
                lists[at] = True
                break
            unknown = _unknown_name(text, name_start)
            if unknown is None:
                lists[at] = False
                break
            written, _, connector = unknown
            if connector is None:  # the last name of the text: it counts when it is short
                lists[at] = len(written.split()) <= MAX_UNKNOWN_NAME_WORDS
                break
            chain.append(at)
            at = connector.end()
        for position in chain:
            lists[position] = lists[at]
        return lists[at]

    def _rewrite(self, text: str) -> Rewrite:
        text = _LONG_SPACE.sub(" ", text)  # (a rewritten phrase is written with single spaces anyway)
        body = text.rstrip(END_MARKS)
        end_marks = text[len(body):]
        spans = self._marked(body) or self._listed(body)
        spans = sorted(spans + self._anywhere(body, outside=spans), key=lambda span: span.start)
        if not spans:
            return _NOTHING
        named = tuple(a for span in spans for _, a in span.names if a is not None)
        if all(a is None or a.action == "keep" for span in spans for _, a in span.names):
            return Rewrite(None, named, ())
        pieces: list[str] = []
        last = 0
        for span in spans:
            head = body[last:span.start].strip()
            kept = [(join, written) for join, (written, a) in zip(_joins(body, span), span.names, strict=True)
                    if a is None or a.action != "replace"]
            if kept:
                names = kept[0][1] + "".join(join + written for join, written in kept[1:])
                pieces += [head, (span.marker + " " if span.marker else "") + names + span.suffix]
            else:  # nothing of the span is left, nor of a head that only led up to it ("art by", "and by")
                pieces.append("" if normalize(head) in _ANNOUNCING else head)
            last = span.end
        pieces.append(body[last:].strip())
        new = _LOOSE_ENDS.sub("", _DOUBLED.sub(r"\1", " ".join(piece for piece in pieces if piece)))
        edits = tuple(ArtistEdit(a, written) for span in spans for written, a in span.names
                      if a is not None and a.action != "keep")
        return Rewrite(new + end_marks if new else end_marks.strip(" .;:!?"), named, edits)

    def _marked(self, body: str) -> list[_Span]:
        """Names after markers: "by X and Y", "art by X by Y", "in the style of X"."""
        spans: list[_Span] = []
        for m in _MARKER.finditer(body):
            if spans and m.start() < spans[-1].end:
                continue
            names, end = self._names(body, m.end(), whole=False)
            if any(a is not None for _, a in names):
                marker = _ONE_MARKER.search(m.group(0).rstrip()).group(0)  # "by by X" is written "by X"
                spans.append(_Span(m.start(), end, marker, names))
        return spans

    def _listed(self, body: str) -> list[_Span]:
        """A phrase made only of known names: "X and Y", "and Z" ending a list, "X style"."""
        found = _STYLE_SUFFIX.search(body)
        suffix = found.group(0) if found else ""
        names, _ = self._names(body[: len(body) - len(suffix)], 0, whole=True)  # it skips a leading "and"
        if not names or not all(a is not None for _, a in names):
            return []
        return [_Span(0, len(body), "", names, suffix)]

    def _anywhere(self, body: str, outside: list[_Span]) -> list[_Span]:
        """The names the bridge replaces, wherever they stand in run-on text ("cinematic beeple", "kilian eng vibrant
        colors") outside the spans already found: a name SD2 does not know is no help anywhere."""
        spans: list[_Span] = []
        ahead = 0  # the first of ``outside`` (in order) that does not end before this word
        for word in _NAME_START.finditer(body):
            while ahead < len(outside) and outside[ahead].end <= word.start():
                ahead += 1
            if (spans and word.start() < spans[-1].end) or (ahead < len(outside) and outside[ahead].start
                                                              <= word.start()):
                continue
            if not self._may_start(word.group()):
                continue  # most words start no name: decided before the words after it are cut
            found = self._name_at(body, word.start())
            if found is not None and found[0].action == "replace":
                spans.append(_Span(word.start(), found[1], "", [(body[word.start():found[1]], found[0])]))
        return spans


def _unknown_name(text: str, at: int) -> tuple[str, int, re.Match | None] | None:
    """The words from ``at`` up to the next connector, where they end and that connector (None at the end of the
    text), when they may be a name the index does not know; None when they are empty or a marker ("by by X", "X and
    by Y") or run on past _NEAR characters (the end is looked for that far only: a phrase of thousands of markers is
    read in linear time)."""
    connector = _CONNECTOR.search(text, at, at + _NEAR)
    if connector is None and len(text) - at > _NEAR:
        return None
    stop = connector.start() if connector else len(text)
    written = text[at:stop].strip()
    if not written or _MARKER.search(written) or _ONE_MARKER.search(written):
        return None
    return written, stop, connector


def _joins(body: str, span: _Span) -> list[str]:
    """What the user wrote before each name of ``span`` after the first ("", " and ", ", ", " " between "disney
    pixar"), so the names kept stay joined as written; " and " where it cannot be read back."""
    joins, at, previous = [], span.start, None
    for written, _ in span.names:
        found = body.find(written, at)
        join = body[previous:found] if previous is not None and found >= 0 else ""
        if previous is not None and (found < 0 or not (_CONNECTOR.fullmatch(join) or _SPACE.fullmatch(join))):
            join = " and "
        joins.append(join)
        if found >= 0:
            previous = at = found + len(written)
    return joins


class _Span(NamedTuple):
    """Where names stand in a phrase: from ``start`` (the marker, if any) to ``end``."""

    start: int
    end: int
    marker: str  # as written, "" when there is none
    names: list[tuple[str, Artist | None]]
    suffix: str = ""  # " style" after the names


class Style:
    """The one style phrase a prompt's artists come to: the items chosen, and what was left out and why."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.left_out: list[tuple[str, str]] = []  # (item, why)

    @property
    def text(self) -> str:
        return ", ".join(self.items)


# facet -> (the knowledge parameter that lists the words with which a prompt chooses it itself, why it is left out)
OWN_FACETS = {
    "palette": ("own_palette", "the prompt names its own colours ({!r})"),
    "medium": ("own_look", "the prompt asks for a {} look"),
    "light": ("own_light", "the prompt sets its own light ({!r})"),
    "people": ("own_figure", "the prompt says how its people look ({!r})"),
}


def compose_style(artists: Iterable[Artist], prompt_words: Words, *, media: PhraseSet, families: dict[str, str],
                  subjects: dict[str, PhraseSet], budget: int, count: Callable[[str], int],
                  own: dict[str, PhraseSet] | None = None, genres: tuple[tuple[str, PhraseSet], ...] = ()) -> Style:
    """Merge the facets of ``artists`` (in the order the prompt named them) into one style phrase.

    Candidates come in this priority: the first artist's medium, each artist's first style, one light, one palette,
    one subject feature whose subject the prompt shows, then the remaining styles. A candidate is left out when the
    prompt already says it (:class:`Said`), when it names a medium and the prompt or the phrase already has one, when
    it
    repeats a chosen item or its head word ("ethereal fantasy" after "epic fantasy"), or when it would take the
    phrase past ``budget`` CLIP tokens (``count``). An
    artist whose medium is of another family than every medium the prompt names (a painter in a photo prompt) gives
    no style, only light and palette: brushwork does not belong in a photograph. ``families`` maps what ``media``
    finds to its family. The user's own choices win: ``own`` maps a facet to the words with which a prompt chooses it
    itself (:data:`OWN_FACETS`), and a prompt with one of them gets no candidate of that facet: no palette beside
    "saturated colors", no medium beside "photorealistic", no light beside "golden hour", no people features beside
    "gaunt".
    A style in a genre of ``genres`` ("epic fantasy") is left out of a prompt that is in other genres but not in that
    one ("a spaceship"): it would bring in a world the user did not ask for.
    """
    artists = list({a.name: a for a in artists}.values())
    prompt_media = media.find(prompt_words)
    prompt_families = {families[m] for m in prompt_media}
    style = Style()
    said, chosen, heads = Said(prompt_words), Said(), set()
    length = 0  # CLIP tokens of the items chosen, with the commas between them
    asked: dict[PhraseSet, str | None] = {}  # what the prompt's own words and genres are, asked once needed

    def search(words: PhraseSet) -> str | None:
        if words not in asked:
            asked[words] = words.search(prompt_words)
        return asked[words]

    def prompt_genres() -> set[str]:
        return {genre for genre, words in genres if search(words)}
    candidates: list[tuple[str, str]] = []  # (item, facet)
    candidates += [(a.medium, "medium") for a in artists if a.medium][:1]
    styled = []
    for artist in artists:
        medium = media.found_as(artist.medium) if artist.medium else None
        if prompt_families and medium is not None and families[medium] not in prompt_families:
            style.left_out += [(s, f"the prompt asks for {prompt_media[0]!r}, not {artist.medium!r}")
                               for s in artist.style]
        else:
            styled.append(artist)
    candidates += [(a.style[0], "style") for a in styled if a.style]
    candidates += [(a.light, "light") for a in artists if a.light]
    candidates += [(a.palette, "palette") for a in artists if a.palette]
    shown: dict[str, bool] = {}  # kind of subject -> whether the prompt shows one
    for artist in artists:
        for phrase, kind in artist.subject_features:
            if kind not in shown:
                shows = subjects.get(kind)
                shown[kind] = shows is not None and shows.search(prompt_words) is not None
            if shown[kind]:
                candidates.append((phrase, "people" if kind == "people" else "subject"))
    candidates += [(s, "style") for a in styled for s in a.style[1:]]

    has_medium = bool(prompt_media)
    facets_taken: set[str] = set()
    for item, facet in candidates:
        cost = bool(style.items) + count(item)  # counts add up at ", " (bridge/chunks.py)
        if length + cost > budget:  # checked first: the cheapest test, and most candidates of a long list fail it
            style.left_out.append((item, f"over the style budget of {budget} tokens"))
            continue
        words = PhraseSet.fixed_words(item)
        why = None
        if said.says(words):
            why = "the prompt already says it"
        elif chosen.says(words) or words[-1:] in heads:
            why = "the style phrase already says it"
        elif facet in ("light", "palette") and facet in facets_taken:
            why = f"one {facet} is enough"
        elif facet in ("people", "subject") and facets_taken & {"people", "subject"}:
            why = "one subject feature is enough"
        elif own and facet in own and (said_own := search(own[facet])):
            why = OWN_FACETS[facet][1].format(said_own)
        elif facet == "style" and (apart := _genres_of(genres, words)) and (ours := prompt_genres()) and not apart & ours:
            why = f"the prompt is {' and '.join(sorted(ours))}, not {' and '.join(sorted(apart))}"
        else:
            names_medium = _names_medium(media, words)
            if names_medium and has_medium:
                why = (f"the prompt names its own medium ({prompt_media[0]!r})" if prompt_media
                       else "the style phrase already has a medium")
        if why is not None:
            style.left_out.append((item, why))
            continue
        length += cost
        style.items.append(item)
        chosen.add(words)
        heads.add(words[-1:])
        facets_taken.add(facet)
        has_medium = has_medium or names_medium
    return style


@lru_cache(maxsize=1 << 12)  # the same facets, with the plan's same genres, prompt after prompt
def _genres_of(genres: tuple[tuple[str, PhraseSet], ...], words: tuple[str, ...]) -> frozenset[str]:
    return frozenset(genre for genre, found in genres if found.search(list(words)) is not None)


@lru_cache(maxsize=1 << 12)  # the same facets, with the plan's same media, prompt after prompt
def _names_medium(media: PhraseSet, words: tuple[str, ...]) -> bool:
    return media.search(list(words)) is not None

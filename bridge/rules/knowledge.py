"""Knowledge files: the data the rules engine applies (one file per model pair, plus shared files it includes).

A knowledge file is TOML::

    [meta]
    id = "sd1_to_sd2"
    include = ["knowledge/sd1_magic_words.toml"]   # paths relative to this file; their rules are merged in order

    [[rule]]
    id = "size"                  # unique; --disable-rule takes it (or a pattern such as "artist.*")
    kind = "size"                # the engine handler; "phrase" when omitted
    fact = "F-SIZE"              # the id of the fact in NOTES.md it rests on
    reason = "..."               # why, in one sentence, shown by --explain
    # ...handler parameters

    [[artist]]                   # compiled into one "artist.<slug>" rule per artist (kind "artist")
    name = "greg rutkowski"
    action = "replace"           # keep | replace | keep_and_describe
    medium = "digital painting"  # the facets of the style; at most one medium, listed under [media]
    style = ["epic fantasy", "painterly brushwork"]   # movement, genre, technique; most telling first
    light = "dramatic lighting"
    palette = "earthy palette"
    subject_features = [{ phrase = "flowing hair", subject = "people" }]   # only added for that kind of subject
    # (an older file's free-text `description` still loads: its comma-separated items become `style`)

    [media]                      # the words that name a medium, by family: a prompt that names one gets no other
    photo = ["photo", "photograph", ...]

    [subjects]                   # the words that show a kind of subject, for `subject_features`
    people = ["woman", "man", ...]

    [genres]                     # the words that place a prompt (or a style) in a genre
    "science fiction" = ["sci fi", "cyberpunk", ...]

    [[negative]]                 # default negative prompts per kind of image (kind "negative")
    kind = "photo"
    detect = ["photo", ...]
    prompt = "..."

    [asked_as]                   # a default negative phrase is left out when the prompt asks for it in other words
    "b&w" = ["black and white", "monochrome", ...]

Every table is checked against this shape as the file loads: a top-level key, a ``[[rule]]`` parameter of its kind
(``RULE_PARAMS``), an ``[[artist]]`` or ``[[negative]]`` key that is not listed here, or a value of another type
(a string where a table or a list belongs, a list of numbers where phrases belong) is one :class:`KnowledgeError`
that names the file, the entry and the key, and says what was expected. ``meta.include`` lists file names relative
to the including file; a file that includes itself, directly or through others, is an error (an include cycle), and
so are includes nested more than 16 deep (``MAX_INCLUDE_DEPTH``); the same file included twice from different
files is merged twice. A size rule's ``multiple`` and bucket sides are at most 8,192 pixels (``MAX_SIZE``), an
emphasis rule's ``keep_outside`` is two finite weights, low first, and weak-concept ``patterns`` must compile: checked
as a user's file loads, while the shipped files' patterns are checked by the tests and compiled on first use (compiling
them all was a tenth of a one-prompt run's start-up). A file that cannot be read at all (missing, a folder, no
permission, not UTF-8) is a :class:`KnowledgeFileError`.

A user knowledge file has the same layout; its rules, artists, negatives and ``asked_as``, ``media``, ``subjects`` and
``genres`` entries replace the shipped ones with the same id / name / kind / phrase / family, and new ones are added.

When a prompt names several artists, the engine merges their facets into one style phrase (bridge/rules/artists.py):
one medium at most and none when the prompt names its own, no phrase the prompt already has, one subject feature at
most and only for a subject the prompt shows, within a token budget (the ``artists`` rule's ``style_budget``). The
``artists`` rule's word lists give way to the user's own choices: ``own_palette`` (no artist palette), ``own_look``
(no medium), ``own_light`` (no artist light) and ``own_figure`` (no people features). A style that names a genre
(``[genres]``: "epic fantasy") stays out of a prompt that is in other genres and not in its own (a spaceship).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.datafiles import read_toml

__all__ = ["RULES_DIR", "RULE_PARAMS", "Artist", "ArtistParams", "EmphasisParams", "KnowledgeBase", "KnowledgeError",
           "KnowledgeFileError", "NegativeDefault", "NetworksParams", "PhraseParams", "Rule", "SizeParams", "WeakConceptParams", "slug"]

RULES_DIR = Path(__file__).resolve().parent / "data"
_SHIPPED = os.path.realpath(RULES_DIR) + os.sep  # the package's own knowledge files: their patterns are tested
ARTIST_ACTIONS = ("keep", "replace", "keep_and_describe")
# What a knowledge file holds, each with its shape: any other top-level key is an error (a typo never goes unnoticed).
FILE_KEYS = {"meta": "id, include = [files], notes", "rule": "[[rule]] tables", "artist": "[[artist]] tables",
             "negative": "[[negative]] tables", "asked_as": "phrase = [other words, ...]",
             "media": "family = [words, ...]", "subjects": "kind = [words, ...]", "genres": "genre = [words, ...]"}
MAX_INCLUDE_DEPTH = 16  # files including files including files...: deeper is an error, not a RecursionError
MAX_SIZE = 8192  # pixels: the largest image side (and multiple) a size rule may name


class KnowledgeError(ValueError):
    """A knowledge file that cannot be read or is malformed (the message names the file and the entry)."""


class KnowledgeFileError(KnowledgeError):
    """A knowledge file that cannot be read at all: missing, a folder, unreadable, not UTF-8."""


def slug(name: str) -> str:
    """``"Greg Rutkowski"`` → ``"greg-rutkowski"`` (rule ids for artists)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# Each kind of rule takes its own parameters, typed, each default written once (here). A knowledge file gives them
# as keys of the [[rule]] table; a key the kind does not take is an error, so that a typo never goes unnoticed.
# (Read-only by convention, not frozen: a frozen dataclass costs the CLI's start-up about half a millisecond more.)


@dataclass(kw_only=True)
class PhraseParams:
    """A magic word or phrase: kept, dropped, or replaced by ``replacement``."""

    match: tuple[str, ...]
    action: str  # keep | drop | replace
    replacement: str = ""
    count: int = 0  # how often the corpus has it (tools/count_artists.py), for the record


@dataclass(kw_only=True)
class WeakConceptParams:
    """A warning for what the target is weak at, found by name (``names``) or pattern, not where ``unless`` is."""

    names: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()  # regular expressions matched against the lower-cased prompt
    unless: tuple[str, ...] = ()
    warning: str = ""  # the warning's text; the rule's reason when empty
    count: int = 0


@dataclass(kw_only=True)
class NetworksParams:
    """What the networks rule knows besides the tags themselves."""

    embeddings: tuple[str, ...] = ()  # textual-inversion names known to be SD1 embeddings


@dataclass(kw_only=True)
class ArtistParams:
    """How the artists' one style phrase is composed (bridge/rules/artists.py)."""

    style_budget: int = 10  # CLIP tokens: about three short facets, so several artists never bury the subject
    own_palette: tuple[str, ...] = ()  # words with which a prompt names its own colours: no artist palette then
    own_look: tuple[str, ...] = ()  # words with which a prompt asks for a realistic look: no artist medium then
    own_light: tuple[str, ...] = ()  # words with which a prompt sets its own light: no artist light then
    own_figure: tuple[str, ...] = ()  # words with which a prompt says how its people look: no people features then


@dataclass(kw_only=True)
class EmphasisParams:
    """Weights over ``cap`` come down to ``cap``; weights outside ``keep_outside`` (lower bound excluded) are kept as
    written, with a warning; everything else is left alone."""

    cap: float = 1.4
    keep_outside: tuple[float, float] = (0.0, 3.0)


@dataclass(kw_only=True)
class SizeParams:
    """How a recipe's size is brought to the target's: scaled to its native area, or to its nearest training bucket."""

    multiple: int = 64  # each side a multiple of this
    buckets: tuple[tuple[int, int], ...] = ()  # (width, height) sizes the target was trained at; none: any size


@dataclass(kw_only=True)
class NoParams:
    """The kinds that take no parameters."""


RULE_PARAMS: dict[str, type] = {
    "phrase": PhraseParams, "weak-concept": WeakConceptParams, "networks": NetworksParams, "artist": ArtistParams,
    "emphasis": EmphasisParams, "size": SizeParams, "negative": NoParams, "clip-skip": NoParams,
    "settings": NoParams, "tokens": NoParams,
}


@dataclass
class Rule:
    """One rule of a knowledge file: its id, kind, the fact it cites, why it exists, and its kind's parameters."""

    id: str
    kind: str
    fact: str | None
    reason: str
    params: Any = field(default_factory=NoParams)  # the kind's parameters class (RULE_PARAMS)


@dataclass
class Artist:
    """One artist and what its name stood for in SD1, in facets the engine can merge with other artists'."""

    name: str
    action: str
    medium: str = ""
    style: tuple[str, ...] = ()
    light: str = ""
    palette: str = ""
    subject_features: tuple[tuple[str, str], ...] = ()  # (phrase, kind of subject it needs)
    aliases: tuple[str, ...] = ()
    fact: str = "F-ARTISTS"
    count: int = 0

    @property
    def rule_id(self) -> str:
        return "artist." + slug(self.name)

    @property
    def description(self) -> str:
        """Every facet, comma-separated (what data building's describe-artists variants add)."""
        return ", ".join(self.facets())

    def facets(self) -> list[str]:
        return [p for p in (self.medium, *self.style, self.light, self.palette, *(f for f, _ in self.subject_features))
                if p]


@dataclass
class NegativeDefault:
    """A default negative prompt for one kind of image, chosen when the prompt holds one of its ``detect`` words."""

    kind: str
    detect: tuple[str, ...]
    prompt: str
    fact: str = "F-NEGATIVE"
    reason: str = ""


@dataclass
class KnowledgeBase:
    """Everything one model pair's rules need, merged from a file, its includes and an optional user file."""

    rules: dict[str, Rule] = field(default_factory=dict)
    artists: dict[str, Artist] = field(default_factory=dict)
    negatives: dict[str, NegativeDefault] = field(default_factory=dict)
    # a negative phrase (compared by its words, lower case) -> other words a prompt may ask for it in
    asked_as: dict[str, tuple[str, ...]] = field(default_factory=dict)
    media: dict[str, tuple[str, ...]] = field(default_factory=dict)  # family -> words that name a medium of it
    subjects: dict[str, tuple[str, ...]] = field(default_factory=dict)  # kind of subject -> words that show it
    genres: dict[str, tuple[str, ...]] = field(default_factory=dict)  # genre -> words that place a text in it
    meta: dict[str, Any] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: str | os.PathLike, user: str | os.PathLike | None = None) -> KnowledgeBase:
        kb = cls()
        kb._merge_file(Path(path), top=True)
        if user is not None:
            kb._merge_file(Path(user), top=True)
        for artist in kb.artists.values():
            unknown = {kind for _, kind in artist.subject_features} - kb.subjects.keys()
            if unknown:
                raise KnowledgeError(f"artist {artist.name!r}: subject {min(unknown)!r} is not a kind listed under "
                                     f"[subjects] ({', '.join(kb.subjects) or 'none listed'})")
        return kb

    def _merge_file(self, path: Path, top: bool = False, including: tuple[str, ...] = ()) -> None:
        """Merge one file: its includes first (in order, each before the next), then its own entries. ``including``:
        the files whose includes led here, outermost first (a file met again is a cycle)."""
        where = os.path.realpath(path)  # (never raises: a loop of links is reported by the read)
        if where in including:
            cycle = " -> ".join(Path(p).name for p in (*including[including.index(where):], where))
            raise KnowledgeError(f"{path}: include cycle ({cycle}); a file cannot include itself, directly or not")
        if len(including) >= MAX_INCLUDE_DEPTH:
            raise KnowledgeError(f"{path}: includes nested more than {MAX_INCLUDE_DEPTH} deep; include the files "
                                 "from one file instead")
        data = _read_toml(path)
        unknown = sorted(set(data) - set(FILE_KEYS))
        if unknown:
            raise KnowledgeError(f"{path}: unknown key {unknown[0]!r}; a knowledge file holds {', '.join(FILE_KEYS)}")
        meta = _table(data, "meta", path)
        if top:
            self.meta.update(meta)
        self.sources.append(str(path))
        includes = meta.get("include", [])
        if not isinstance(includes, list) or not all(isinstance(i, str) and i.strip() for i in includes):
            raise KnowledgeError(f"{path}: meta.include must be a list of file names (relative to this file), got "
                                 f"{_brief(includes)}")
        for include in includes:
            try:
                self._merge_file(path.parent / include, including=(*including, where))
            except KnowledgeFileError as exc:
                raise KnowledgeFileError(f"{exc} (included by {path})") from None
        for i, table in enumerate(_tables(data, "rule", path)):
            rule = _rule_from(table, f"{path}: rule #{i + 1}", compile_patterns=not where.startswith(_SHIPPED))
            self.rules[rule.id] = rule
        for i, table in enumerate(_tables(data, "artist", path)):
            artist = _artist_from(table, f"{path}: artist #{i + 1}")
            self.artists[artist.name] = artist
        for i, table in enumerate(_tables(data, "negative", path)):
            negative = _negative_from(table, f"{path}: negative #{i + 1}")
            self.negatives[negative.kind] = negative
        for phrase, others in _table(data, "asked_as", path).items():
            if not isinstance(others, list) or not all(isinstance(o, str) and o.strip() for o in others):
                raise KnowledgeError(f"{path}: asked_as.{phrase!r} must be a list of non-empty phrases, got "
                                     f"{_brief(others)}")
            self.asked_as[" ".join(phrase.lower().split())] = tuple(o.strip().lower() for o in others)
        for table in ("media", "subjects", "genres"):
            for name, words in _table(data, table, path).items():
                if not isinstance(words, list) or not all(isinstance(w, str) and w.strip() for w in words):
                    raise KnowledgeError(f"{path}: {table}.{name} must be a list of non-empty phrases, got "
                                         f"{_brief(words)}")
                getattr(self, table)[name] = tuple(" ".join(w.lower().split()) for w in words)

    def enabled(self, disable: tuple[str, ...] = ()) -> list[Rule]:
        """The rules in order, without those whose id matches a ``disable`` pattern."""
        return [r for r in self.rules.values() if not is_disabled(r.id, disable)]

    def rule_ids(self) -> list[str]:
        return [*self.rules, *(a.rule_id for a in self.artists.values()),
                *("negative." + k for k in self.negatives)]

    def check_disable(self, disable: tuple[str, ...]) -> None:
        """Every --disable-rule pattern must match some rule: a typo should not silently do nothing."""
        ids = self.rule_ids()
        for pattern in disable:
            if not any(fnmatch.fnmatchcase(i, pattern) for i in ids):
                close = [i for i in ids if i.split(".")[0] == pattern.split(".")[0]][:8] or ids[:8]
                raise KnowledgeError(f"unknown rule {pattern!r}; rule ids look like: {', '.join(close)}")


def is_disabled(rule_id: str, disable: tuple[str, ...]) -> bool:
    """Whether a ``--disable-rule`` pattern (an id or a shell pattern such as ``artist.*``) names this rule."""
    return any(fnmatch.fnmatchcase(rule_id, pattern) for pattern in disable)


def _read_toml(path: Path) -> dict:
    try:
        return read_toml(path)
    except FileNotFoundError:
        raise KnowledgeFileError(f"knowledge file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KnowledgeFileError(f"cannot read knowledge file {path}: {exc}") from None
    except ValueError as exc:  # tomllib.TOMLDecodeError (tomllib is imported only when a file is parsed)
        raise KnowledgeError(f"knowledge file {path} is not valid TOML: {exc}") from None


def _brief(value: Any) -> str:
    """``repr(value)`` for a message, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _table(data: dict, key: str, path: Path) -> dict:
    """``[key]``, a table of the file (empty when absent)."""
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise KnowledgeError(f"{path}: [{key}] must be a table ({FILE_KEYS[key]}), got {_brief(value)}")
    return value


def _tables(data: dict, key: str, path: Path) -> list[dict]:
    """``[[key]]``, a list of tables of the file (empty when absent)."""
    value = data.get(key, [])
    if isinstance(value, dict):
        raise KnowledgeError(f"{path}: '{key}' must be a list of [[{key}]] tables (write [[{key}]], not [{key}])")
    if not isinstance(value, list):
        raise KnowledgeError(f"{path}: '{key}' must be a list of [[{key}]] tables, got {_brief(value)}")
    for i, table in enumerate(value):
        if not isinstance(table, dict):
            raise KnowledgeError(f"{path}: {key} #{i + 1} must be a table ([[{key}]] with its keys), got "
                                 f"{_brief(table)}")
    return value


def _keys(table: dict, valid: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(table) - set(valid))
    if unknown:
        raise KnowledgeError(f"{where}: unknown key {unknown[0]!r} (valid keys: {', '.join(valid)})")


def _text(table: dict, key: str, where: str, default: str | None = "") -> str | None:
    """An optional string value."""
    value = table.get(key, default)
    if value is not default and not isinstance(value, str):
        raise KnowledgeError(f"{where}: '{key}' must be a string, got {_brief(value)}")
    return value


def _need(table: dict, key: str, where: str, kind: type = str) -> Any:
    value = table.get(key)
    if not isinstance(value, kind) or (kind is str and not value.strip()):
        raise KnowledgeError(f"{where}: '{key}' must be a non-empty {kind.__name__}, got {_brief(value)}")
    return value


def _rule_from(table: dict, where: str, *, compile_patterns: bool = True) -> Rule:
    rule_id = _need(table, "id", where)
    kind = table.get("kind", "phrase")
    where = f"{where} ({rule_id})"
    cls = RULE_PARAMS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise KnowledgeError(f"{where}: kind {_brief(kind)} is not one of {', '.join(RULE_PARAMS)}")
    fact, reason = _text(table, "fact", where, None), _text(table, "reason", where)
    given = {k: v for k, v in table.items() if k not in ("id", "kind", "fact", "reason")}
    params = cls(**{f.name: _param(given.pop(f.name, None), f.type, f"{where}: {f.name!r}")
                    for f in dataclasses.fields(cls) if f.name in given or _required(f)})
    if given:
        valid = ", ".join(f.name for f in dataclasses.fields(cls)) or "none"
        raise KnowledgeError(f"{where}: {kind!r} rules take no {min(given)!r} (their parameters: {valid})")
    if kind == "phrase":
        if params.action not in ("keep", "drop", "replace"):
            raise KnowledgeError(f"{where}: action must be keep, drop or replace, got {params.action!r}")
        if not params.match:
            raise KnowledgeError(f"{where}: 'match' must be a non-empty list of phrases")
        if params.action == "replace" and not params.replacement.strip():
            raise KnowledgeError(f"{where}: 'replacement' must be a non-empty str, got {params.replacement!r}")
    if kind == "emphasis" and not (math.isfinite(params.cap) and params.cap >= 1.0):
        raise KnowledgeError(f"{where}: 'cap' must be a weight of at least 1.0, got {params.cap!r}")
    if kind == "emphasis" and not (all(map(math.isfinite, params.keep_outside))
                                   and params.keep_outside[0] < params.keep_outside[1]):
        raise KnowledgeError(f"{where}: 'keep_outside' must be two finite weights, low then high, got "
                             f"{list(params.keep_outside)!r}")
    if kind == "size" and not 1 <= params.multiple <= MAX_SIZE:
        raise KnowledgeError(f"{where}: 'multiple' must be a whole number from 1 to {MAX_SIZE}, got {params.multiple}")
    if kind == "size" and any(side > MAX_SIZE for bucket in params.buckets for side in bucket):
        raise KnowledgeError(f"{where}: 'buckets' sides must be at most {MAX_SIZE} pixels")
    if kind == "artist" and params.style_budget < 0:
        raise KnowledgeError(f"{where}: 'style_budget' must be 0 or more CLIP tokens, got {params.style_budget}")
    if kind == "weak-concept" and compile_patterns:
        for pattern in params.patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise KnowledgeError(f"{where}: 'patterns' holds {_brief(pattern)}, not a regular expression: "
                                     f"{exc}") from None
    return Rule(rule_id, kind, fact, reason, params)


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _param(value: Any, kind: str, where: str) -> Any:
    """A parameter's value as its field's type says (the annotations are strings: ``from __future__``)."""
    if value is None:
        raise KnowledgeError(f"{where} is missing")
    if kind == "str":
        if isinstance(value, str):
            return value
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind == "tuple[str, ...]":
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
    elif kind == "tuple[float, float]":
        if isinstance(value, list) and len(value) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return (float(value[0]), float(value[1]))
    elif kind == "tuple[tuple[int, int], ...]":
        if isinstance(value, list) and all(isinstance(v, list) and len(v) == 2 and all(
                isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in v) for v in value):
            return tuple((v[0], v[1]) for v in value)
    else:
        raise TypeError(f"no reader for parameters of type {kind}")  # a new field type: add it here
    wanted = {"str": "a string", "int": "a whole number", "float": "a number",
              "tuple[str, ...]": "a list of strings", "tuple[float, float]": "a list of two numbers",
              "tuple[tuple[int, int], ...]": "a list of [width, height] pairs"}[kind]
    raise KnowledgeError(f"{where} must be {wanted}, got {value!r}")


ARTIST_KEYS = ("name", "action", "medium", "style", "light", "palette", "subject_features", "description",
               "aliases", "fact", "count")
NEGATIVE_KEYS = ("kind", "detect", "prompt", "fact", "reason")


def _artist_from(table: dict, where: str) -> Artist:
    name = _need(table, "name", where).strip().lower()
    action = table.get("action")
    if action not in ARTIST_ACTIONS:
        raise KnowledgeError(f"{where} ({name}): action must be one of {', '.join(ARTIST_ACTIONS)}, got "
                             f"{_brief(action)}")
    where = f"{where} ({name})"
    _keys(table, ARTIST_KEYS, where)
    medium, light, palette = (_phrase(table, key, where) for key in ("medium", "light", "palette"))
    style = _phrases(table, "style", where)
    description = _text(table, "description", where, None)
    if description is not None:  # the older free-text form: its items become the style
        style = (*style, *_phrases({"description": description.split(",")}, "description", where))
    features = table.get("subject_features", [])
    if not isinstance(features, list) or not all(
            isinstance(f, dict) and isinstance(f.get("phrase"), str) and f["phrase"].strip()
            and isinstance(f.get("subject"), str) and f["subject"].strip() for f in features):
        raise KnowledgeError(f"{where}: 'subject_features' must be a list of {{ phrase = \"...\", subject = \"people\" }}"
                             f" tables, got {features!r}")
    subject_features = tuple((" ".join(f["phrase"].split()), f["subject"].strip()) for f in features)
    count = table.get("count", 0)
    if not isinstance(count, int) or isinstance(count, bool):
        raise KnowledgeError(f"{where}: 'count' must be a whole number, got {_brief(count)}")
    artist = Artist(name, action, medium, style, light, palette, subject_features,
                    tuple(a.strip().lower() for a in _phrases(table, "aliases", where)),
                    _text(table, "fact", where, "F-ARTISTS"), count)
    if action != "keep" and not artist.facets():
        raise KnowledgeError(f"{where}: action {action!r} needs facets to describe the style with "
                             "(medium, style, light, palette or subject_features)")
    return artist


def _phrase(table: dict, key: str, where: str) -> str:
    value = table.get(key, "")
    if not isinstance(value, str):
        raise KnowledgeError(f"{where}: '{key}' must be a phrase (a string), got {_brief(value)}")
    return " ".join(value.split())


def _phrases(table: dict, key: str, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise KnowledgeError(f"{where}: '{key}' must be a list of phrases, got {_brief(value)}")
    return tuple(p for p in (" ".join(v.split()) for v in value) if p)


def _negative_from(table: dict, where: str) -> NegativeDefault:
    kind = _need(table, "kind", where)
    where = f"{where} ({kind})"
    _keys(table, NEGATIVE_KEYS, where)
    return NegativeDefault(kind, tuple(d.lower() for d in _phrases(table, "detect", where)),
                           _need(table, "prompt", where), _text(table, "fact", where, "F-NEGATIVE"),
                           _text(table, "reason", where))

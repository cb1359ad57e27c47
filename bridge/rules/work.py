"""What the rules engine works with: a :class:`Plan` (everything prepared from a knowledge base and one set of
options, reused for every prompt) and a :class:`Work` (one translation in progress), and the :class:`Stage` that
runs on it. The stages (bridge/rules/stages.py) read and change a Work; the engine (bridge/rules/engine.py) builds
the Plan and runs the stages in order.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

from bridge.memo import Memo
from bridge.models import ModelSpec
from bridge.recipe import Recipe
from bridge.rules.artists import ArtistIndex
from bridge.rules.knowledge import NegativeDefault, Rule
from bridge.rules.matching import LiteralFinder, PhraseSet, Prefiltered, Words, fold_accents, normalize, variant_key
from bridge.syntax import Node, Prompt, PromptSyntaxError, render_head
from bridge.translation import Change, TranslationOptions

__all__ = ["NegativeKind", "Plan", "Stage", "WeakConcept", "Work"]

# (The dataclasses here have no repr or eq: nothing prints or compares them, and generating those methods is start-up
# time for every one-prompt run.)
RECORDED_TEXT, RECORDED_TEXT_FACTOR = 10_000, 4  # characters of node text the changes of one translation hold
EXCERPT = 60  # characters of a group's text recorded past that
_VARIANT_MARKS = re.compile(r"[\d\-_.!?;:'\"\u201c\u201d\u2018\u2019]")


class Stage(NamedTuple):
    kinds: tuple[str, ...]
    run: Callable[[Work, list[Rule]], None]


@dataclass(repr=False, eq=False)
class NegativeKind:
    """One kind of default negative prompt (photo, painting, anime, default), prepared for matching."""

    spec: NegativeDefault
    detect: PhraseSet  # finds the kind's marker words in a prompt
    phrases: list[tuple[str, str]]  # (phrase, comparison key)
    finder: PhraseSet  # finds any of the phrases' keys in a prompt, or the other words asked_as gives for them
    asked_as: dict[str, set[str]]  # a phrase finder finds -> the keys it asks for

    @cached_property
    def joined(self) -> str:
        """All the phrases, comma-separated."""
        return ", ".join(p for p, _ in self.phrases)


@dataclass(repr=False, eq=False)
class WeakConcept:
    """One weak-concept rule, prepared: its names and unless-words as phrase sets, its patterns behind prefilters."""

    rule: Rule
    names: PhraseSet
    patterns: tuple[Prefiltered | re.Pattern, ...]
    unless: PhraseSet

    def __post_init__(self) -> None:
        # which patterns each required literal can let through; patterns with no literal prefilter always run
        self._always = [i for i, p in enumerate(self.patterns) if not isinstance(p, Prefiltered) or p.needs is None]
        self._by_literal: dict[str, list[int]] = {}
        for i, pattern in enumerate(self.patterns):
            if isinstance(pattern, Prefiltered) and pattern.needs is not None:
                for literal in pattern.needs:
                    self._by_literal.setdefault(literal, []).append(i)

    @property
    def unfiltered(self) -> bool:
        return bool(self._always)

    def search(self, text: str, present: set[str] | None = None) -> re.Match | None:
        """The leftmost match of any pattern (the first pattern listed, where two start at the same place): what one
        alternation of them all finds. Kept apart, each pattern is skipped unless its own literals are present
        (``present``: the literals :class:`LiteralFinder` found in ``text``, when the caller has them)."""
        if present is None:
            candidates = range(len(self.patterns))
        else:
            found = present & self._by_literal.keys()
            if not found and not self._always:
                return None  # the common case: none of the patterns can match
            candidates = sorted({*self._always, *(i for literal in found for i in self._by_literal[literal])})
        best = None
        for i in candidates:
            pattern = self.patterns[i]
            match = pattern.search(text, present) if isinstance(pattern, Prefiltered) else pattern.search(text)
            if match is not None and (best is None or match.start() < best.start()):
                best = match
        return best


@dataclass(kw_only=True, repr=False, eq=False)
class Plan:
    """Everything prepared from the knowledge base and one set of options."""

    stages: list[tuple[Stage, list[Rule]]]
    phrase_index: dict[str, Rule]
    artists: ArtistIndex
    embedding_names: tuple[str, ...]  # lower-case: a substring check before the (slower) embedding_pattern
    mapping: dict[str, str]
    negatives: list[NegativeKind]
    weak: list[WeakConcept]
    literals: LiteralFinder  # the weak-concept patterns' required literals
    weak_starts: frozenset[str]  # the first words of every weak-concept name: a prompt with none needs no name search
    negative_starts: frozenset[str]  # the same for the words that pick a kind of negative prompt
    weak_unfiltered: bool  # some weak-concept pattern has no literal prefilter: it is searched in every prompt
    media: PhraseSet  # the words that name a medium
    medium_family: dict[str, str]  # each of them (as media.find gives it) -> its family ("photo", "painting", ...)
    subjects: dict[str, PhraseSet]  # kind of subject -> the words that show it
    genres: tuple[tuple[str, PhraseSet], ...]  # (genre, the words that place a text in it)
    style_budget: int  # CLIP tokens the artists' style phrase may take
    artist_rule: Rule | None  # the rule the style phrase is recorded under
    own: dict[str, PhraseSet]  # style facet -> the words with which a prompt chooses it itself (artists.OWN_FACETS)
    # plain phrases the phrase stage leaves alone (True), remembered: libraries repeat their phrases
    unchanged_phrases: Memo[bool] = field(default_factory=lambda: Memo(1 << 16))

    @cached_property
    def embedding_pattern(self) -> re.Pattern | None:
        """The embedding names as whole words, compiled on first use: most prompts hold none of the names, which the
        substring check on ``embedding_names`` tells first."""
        if not self.embedding_names:
            return None
        alternatives = "|".join(re.escape(e) for e in sorted(self.embedding_names, key=len, reverse=True))
        return re.compile(r"(?<![\w.-])(" + alternatives + r")(?![\w-])", re.IGNORECASE)

    def names_embedding(self, text: str) -> bool:
        """Whether ``text`` holds one of the embedding names as a whole word: a substring check first (most texts hold
        none), the pattern only then."""
        lowered = text.lower()
        return bool(text) and any(map(lowered.__contains__, self.embedding_names)) and (
            self.embedding_pattern.search(text) is not None)

    def magic(self, phrase: str) -> Rule | None:
        """The magic-word rule a phrase is, if any: looked up as written (lower case), then by its variant key when
        it holds what the key changes (digits, hyphens, punctuation, quotes)."""
        rule = self.phrase_index.get(normalize(phrase))
        if rule is None and _VARIANT_MARKS.search(phrase) is not None:
            rule = self.phrase_index.get(variant_key(phrase))
        return rule


@dataclass(repr=False, eq=False)
class Work:
    """One translation in progress: the parsed prompts, the recipe being built, and what was done."""

    prompt: Prompt
    negative: Prompt
    recipe: Recipe
    source: ModelSpec
    target: ModelSpec
    options: TranslationOptions
    plan: Plan
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    artist_media: list[str] = field(default_factory=list)  # the media of the artists the prompt names
    _words: tuple[str, str, Words] | None = field(default=None, repr=False)
    _recorded: int = field(default=0, repr=False)  # characters of node text recorded (recorded_text)

    @cached_property
    def user_words(self) -> tuple[str, Words]:
        """The user's positive prompt as written (before any stage), matched like :meth:`prompt_words`: what the
        user asked for, without the words the bridge inserted."""
        if self.recipe.prompt == str(self.prompt):  # nothing changed (yet): the words are the prompt's own
            return self.prompt_words()
        folded = fold_accents(self.recipe.prompt).lower()
        return folded, PhraseSet.words(folded)

    @cached_property
    def user_chunks(self) -> int | None:
        """How many 75-token chunks A1111 encodes the user's prompt in (None when A1111 would reject it)."""
        from bridge.chunks import chunk_count

        try:
            return chunk_count(self.recipe.prompt)
        except PromptSyntaxError:
            return None

    def prompt_words(self) -> tuple[str, Words]:
        """The positive prompt as it is now, lower-cased with accents folded (how knowledge phrases and patterns are
        matched), and its words; worked out once for the stages that read them while the prompt stays the same."""
        text = str(self.prompt)
        if self._words is None or self._words[0] != text:
            folded = fold_accents(text).lower()
            self._words = (text, folded, PhraseSet.words(folded))
        return self._words[1], self._words[2]

    def recorded_text(self, nodes: list[Node]) -> str:
        """The text of ``nodes`` for a change's before or after: whole while this translation's records hold less
        than a few times the prompt's text (RECORDED_TEXT), an excerpt after that. A hostile prompt (100,000 nested
        groups, each a change) would otherwise record the rest of the prompt once per change: quadratic."""
        limit = RECORDED_TEXT + RECORDED_TEXT_FACTOR * len(self.recipe.prompt) - self._recorded
        text, whole = render_head(nodes, max(limit, EXCERPT))
        if whole and len(text) <= limit:
            self._recorded += len(text)
            return text
        self._recorded = RECORDED_TEXT + RECORDED_TEXT_FACTOR * len(self.recipe.prompt)  # excerpts from now on
        return text[:EXCERPT - 1] + "…"

    def record(self, rule: Rule | str, before: str, after: str, reason: str | None = None,
               fact: str | None = None) -> None:
        if isinstance(rule, str):
            self.changes.append(Change(rule, before, after, reason or "", fact))
        else:
            self.changes.append(Change(rule.id, before, after, reason or rule.reason, fact or rule.fact))

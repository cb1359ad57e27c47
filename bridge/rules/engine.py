"""The rules engine: applies one knowledge file to a recipe and explains every change.

The stages (bridge/rules/stages.py) run in a fixed order, each driven by the rules of its kind in the knowledge file;
a stage with no enabled rule does nothing. What depends only on the knowledge and the options (phrase indexes,
compiled patterns) is prepared once per set of options and reused for every prompt, so migrating a library is fast.

Untouched text is never rewritten: the prompt is parsed by :mod:`bridge.syntax` and rendered back from its tree.
"""

from __future__ import annotations

import os
import re
import re._constants as re_constants
import re._parser as re_parser
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from bridge.models import BridgeSpec, ModelSpec, detect_model, find_bridge, get_model
from bridge.recipe import Recipe
from bridge.rules import stages
from bridge.rules.artists import ArtistIndex
from bridge.rules.knowledge import RULES_DIR, KnowledgeBase, NegativeDefault, Rule, is_disabled
from bridge.rules.phrases import LONGEST_REMEMBERED, PhraseSet, Words, fold_accents, normalize, variant_key
from bridge.rules.stages import phrase_key
from bridge.syntax import Prompt, PromptSyntaxError, attention, parse
from bridge.translation import Change, Translation, TranslationOptions

__all__ = ["EmptyPromptError", "RulesTranslator", "Work"]


_VARIANT_MARKS = re.compile(r"[\d\-_.!?;:'\"\u201c\u201d\u2018\u2019]")


class EmptyPromptError(ValueError):
    """The prompt is empty or only whitespace."""


@dataclass(frozen=True)
class Stage:
    kinds: tuple[str, ...]
    run: Callable[[Work, list[Rule]], None]


STAGES = (
    Stage(("networks",), stages.networks),
    Stage(("phrase", "artist"), stages.phrases),
    Stage(("emphasis",), stages.emphasis),
    Stage(("weak-concept",), stages.weak),
    Stage(("negative",), stages.negative),
    Stage(("size",), stages.size),
    Stage(("clip-skip",), stages.clip_skip),
    Stage(("settings",), stages.settings),
    Stage(("tokens",), stages.tokens),
)


@dataclass
class _Negative:
    spec: NegativeDefault
    detect: PhraseSet  # finds the kind's marker words in a prompt
    phrases: list[tuple[str, str]]  # (phrase, comparison key)
    finder: PhraseSet  # finds any of the phrases' keys in a prompt, or the other words asked_as gives for them
    asked_as: dict[str, set[str]]  # a phrase finder finds -> the keys it asks for

    @cached_property
    def joined(self) -> str:
        """All the phrases, comma-separated."""
        return ", ".join(p for p, _ in self.phrases)


@dataclass
class _Weak:
    rule: Rule
    names: PhraseSet
    patterns: tuple[_Prefiltered | re.Pattern, ...]
    unless: PhraseSet

    def __post_init__(self) -> None:
        # which patterns each required literal can let through; patterns with no literal prefilter always run
        self._always = [i for i, p in enumerate(self.patterns) if not isinstance(p, _Prefiltered) or p.needs is None]
        self._by_literal: dict[str, list[int]] = {}
        for i, pattern in enumerate(self.patterns):
            if isinstance(pattern, _Prefiltered) and pattern.needs is not None:
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
            match = pattern.search(text, present) if isinstance(pattern, _Prefiltered) else pattern.search(text)
            if match is not None and (best is None or match.start() < best.start()):
                best = match
        return best


class Memo(set):
    """A set of texts whose result can be worked out again, forgotten all at once when it grows past ``limit``.
    A text longer than ``longest`` characters (a pasted blob) is not remembered."""

    def __init__(self, limit: int = 1 << 16, longest: int = LONGEST_REMEMBERED):
        super().__init__()
        self.limit = limit
        self.longest = longest

    def remember(self, item: str) -> None:
        if len(item) > self.longest:
            return
        if len(self) >= self.limit:
            self.clear()
        self.add(item)


@dataclass
class Plan:
    """Everything prepared from the knowledge base and one set of options."""

    stages: list[tuple[Stage, list[Rule]]]
    phrase_index: dict[str, Rule]
    artists: ArtistIndex
    embedding_pattern: re.Pattern | None
    embedding_names: tuple[str, ...]  # lower-case: a substring check before the (slower) pattern
    mapping: dict[str, str]
    negatives: list[_Negative]
    weak: list[_Weak]
    literals: LiteralFinder  # the weak-concept patterns' required literals
    weak_starts: frozenset[str]  # the first words of every weak-concept name: a prompt with none needs no name search
    negative_starts: frozenset[str]  # the same for the words that pick a kind of negative prompt
    weak_unfiltered: bool  # some weak-concept pattern has no literal prefilter: it is searched in every prompt
    media: PhraseSet  # the words that name a medium
    medium_family: dict[str, str]  # each of them (as media.find gives it) -> its family ("photo", "painting", ...)
    subjects: dict[str, PhraseSet]  # kind of subject -> the words that show it
    style_budget: int  # CLIP tokens the artists' style phrase may take
    own_palette: PhraseSet  # words with which a prompt names its own colours: no artist palette then
    own_look: PhraseSet  # words with which a prompt asks for a realistic look: no artist medium then
    unchanged_phrases: Memo = field(default_factory=Memo)  # plain phrases the phrase stage leaves alone

    def magic(self, phrase: str) -> Rule | None:
        """The magic-word rule a phrase is, if any: looked up as written (lower case), then by its variant key when
        it holds what the key changes (digits, hyphens, punctuation, quotes)."""
        rule = self.phrase_index.get(normalize(phrase))
        if rule is None and _VARIANT_MARKS.search(phrase) is not None:
            rule = self.phrase_index.get(variant_key(phrase))
        return rule


def build_plan(kb: KnowledgeBase, options: TranslationOptions) -> Plan:
    enabled = kb.enabled(options.disable)
    plan_stages = [(s, [r for r in enabled if r.kind in s.kinds]) for s in STAGES]
    plan_stages = [(s, rules) for s, rules in plan_stages if rules]
    kinds = {r.kind for r in enabled}

    phrase_index = {}  # each match phrase, lower case and by its variant key
    for rule in (r for r in enabled if r.kind == "phrase"):
        for match in rule.params["match"]:
            phrase_index.setdefault(variant_key(match), rule)
    phrase_index.update({normalize(m): r for r in enabled if r.kind == "phrase" for m in r.params["match"]
                         if normalize(m) not in phrase_index})
    artists = ArtistIndex([a for a in kb.artists.values() if "artist" in kinds
                           and not is_disabled(a.rule_id, options.disable)])

    names = {e.lower() for r in enabled if r.kind == "networks" for e in r.params.get("embeddings", [])}
    names |= {e.lower() for e in options.embeddings}
    embedding_pattern = None
    if names:
        alternatives = "|".join(re.escape(e) for e in sorted(names, key=len, reverse=True))
        embedding_pattern = re.compile(r"(?<![\w.-])(" + alternatives + r")(?![\w-])", re.IGNORECASE)

    negatives = []
    if "negative" in kinds:
        for spec in kb.negatives.values():
            if is_disabled("negative." + spec.kind, options.disable):
                continue
            phrases = [(p.strip(), phrase_key(p)) for p in spec.prompt.split(",") if p.strip()]
            wordings = [(words, key) for _, key in phrases for words in (key, *kb.asked_as.get(key, ()))]
            finder = PhraseSet(words for words, _ in wordings)
            asked_as: dict[str, set[str]] = {}
            for words, key in wordings:
                found_as = finder.found_as(words)
                if found_as is not None:
                    asked_as.setdefault(found_as, set()).add(key)
            negatives.append(_Negative(spec, PhraseSet(spec.detect), phrases, finder, asked_as))

    weak = []
    for rule in (r for r in enabled if r.kind == "weak-concept"):
        patterns = tuple(_case_blind(p) for p in rule.params.get("patterns", []) if p)
        weak.append(_Weak(rule, PhraseSet(rule.params.get("names", [])), patterns,
                          PhraseSet(rule.params.get("unless", []))))

    literals = LiteralFinder(literal for w in weak for p in w.patterns if isinstance(p, _Prefiltered) and p.needs
                             for literal in p.needs)
    mapping = {k.lower(): v for k, v in options.network_map.items()}
    weak_starts = frozenset(word for w in weak for word in w.names.lengths)
    negative_starts = frozenset(word for n in negatives for word in n.detect.lengths)
    weak_unfiltered = any(w.unfiltered for w in weak)
    media = PhraseSet(word for words in kb.media.values() for word in words)
    medium_family = {}
    for family, words in kb.media.items():
        for word in words:
            medium_family.setdefault(media.found_as(word), family)
    subjects = {kind: PhraseSet(words) for kind, words in kb.subjects.items()}
    artist_params = next((r.params for r in enabled if r.kind == "artist"), {})
    style_budget = options.style_budget
    if style_budget is None:
        style_budget = int(artist_params.get("style_budget", DEFAULT_STYLE_BUDGET))
    return Plan(plan_stages, phrase_index, artists, embedding_pattern, tuple(sorted(names)), mapping, negatives, weak,
                literals, weak_starts, negative_starts, weak_unfiltered, media, medium_family, subjects, style_budget,
                PhraseSet(artist_params.get("own_palette", [])), PhraseSet(artist_params.get("own_look", [])))


DEFAULT_STYLE_BUDGET = 10  # CLIP tokens: about three short facets, so several artists never bury the subject


_UNESCAPED_UPPER = re.compile(r"(?<!\\)[A-Z]")


def _case_blind(pattern: str) -> _Prefiltered | re.Pattern:
    """A pattern matched case-insensitively against lower-cased text (stages lower the text once). Without upper-case
    letters of its own (escapes such as ``\\S`` aside) it needs no IGNORECASE flag, which halves the search time,
    and the literal words it cannot match without are checked first (a substring test is far cheaper)."""
    if _UNESCAPED_UPPER.search(pattern) is not None:
        return re.compile(pattern, re.IGNORECASE)
    return _Prefiltered(re.compile(pattern))


class _Prefiltered:
    """A compiled pattern behind a necessary condition: one of the literals it requires occurs in the text."""

    def __init__(self, pattern: re.Pattern):
        self.pattern = pattern
        needs = _required_literals(re_parser.parse(pattern.pattern).data)
        if needs and "" not in needs:
            # "signboard" holds "sign": where "sign" is checked, the longer literal adds nothing
            self.needs: tuple[str, ...] | None = tuple(sorted(
                literal for literal in needs if not any(other != literal and other in literal for other in needs)))
        else:
            self.needs = None

    def search(self, text: str, present: set[str] | None = None) -> re.Match | None:
        """``present``, when given, holds every literal of ``self.needs`` that occurs in ``text``."""
        if self.needs is not None:
            if present is not None:
                if present.isdisjoint(self.needs):
                    return None
            elif not any(literal in text for literal in self.needs):
                return None
        return self.pattern.search(text)


_WORD_CHARS = re.compile(r"\w+")


class LiteralFinder:
    """Which of a fixed set of literals occur in a text, found word by word.

    A literal made of word characters occurs in a text exactly when it occurs inside one of the text's words (it
    cannot reach across a character that is not a word character), so the literals each distinct word holds are
    worked out once and remembered: over a prompt library, where the same words come back prompt after prompt, that is
    one dict lookup per word instead of a substring search per literal. Other literals are searched for directly.
    """

    MAX_WORDS = 1 << 16  # remembered words; the memory is cleared when full
    HEAD = 3

    def __init__(self, literals: Iterable[str]):
        literals = set(literals)
        self.in_words = tuple(sorted(x for x in literals if _WORD_CHARS.fullmatch(x)))
        self.other = tuple(sorted(literals.difference(self.in_words)))
        self._held: dict[str, frozenset[str]] = {}
        # A new word is searched by the first three characters of the literals: one lookup per place in the word.
        self._short = tuple(x for x in self.in_words if len(x) < self.HEAD)
        self._by_head: dict[str, list[str]] = {}
        for x in self.in_words:
            if len(x) >= self.HEAD:
                self._by_head.setdefault(x[: self.HEAD], []).append(x)

    def present(self, text: str, words: Iterable[str] | None = None) -> set[str]:
        """The literals that occur in ``text``; ``words`` may give its word-character runs (extra tokens, such as
        punctuation, do no harm) when the caller has already cut it."""
        found = {x for x in self.other if x in text}
        if not self.in_words:
            return found
        held = self._held
        if words is None:
            unique: AbstractSet[str] = set(_WORD_CHARS.findall(text))
        else:
            unique = words.set if isinstance(words, Words) else set(words)
        new = unique.difference(held)
        if new:
            if len(held) + len(new) > self.MAX_WORDS:
                held.clear()
                new = unique
            for word in new:
                if len(word) > LONGEST_REMEMBERED:
                    found |= self._inside(word)  # a pasted blob: not remembered
                    unique = unique - {word}
                else:
                    held[word] = self._inside(word)
        found.update(*filter(None, map(held.__getitem__, unique)))
        return found

    def _inside(self, word: str) -> frozenset[str]:
        inside = [x for x in self._short if x in word]
        by_head = self._by_head
        for i in range(len(word) - self.HEAD + 1):
            for x in by_head.get(word[i : i + self.HEAD], ()):
                if word.startswith(x, i):
                    inside.append(x)
        return frozenset(inside)


def _required_literals(items: list) -> set[str] | None:
    """Strings one of which every match of the parsed pattern ``items`` contains, or None when none is known.

    Runs of literal characters are required; so is a group, an alternation whose every branch requires something,
    or a repeat of at least one. Of the required sets, the one with the longest shortest string is the most
    selective."""
    candidates: list[set[str]] = []
    run = ""
    for op, arg in items:
        if op is re_constants.LITERAL:
            run += chr(arg)
            continue
        if run:
            candidates.append({run})
            run = ""
        if op is re_constants.SUBPATTERN:
            found = _required_literals(arg[-1])
        elif op is re_constants.BRANCH:
            branches = [_required_literals(branch) for branch in arg[1]]
            found = set().union(*branches) if all(b for b in branches) else None
        elif op in (re_constants.MAX_REPEAT, re_constants.MIN_REPEAT) and arg[0] >= 1:
            found = _required_literals(arg[2])
        else:
            found = None
        if found:
            candidates.append(found)
    if run:
        candidates.append({run})
    return max(candidates, key=lambda c: min(map(len, c)), default=None)


@dataclass
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
        from bridge.tokens import chunk_count

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

    def record(self, rule: Rule | str, before: str, after: str, reason: str | None = None,
               fact: str | None = None) -> None:
        if isinstance(rule, str):
            self.changes.append(Change(rule, before, after, reason or "", fact))
        else:
            self.changes.append(Change(rule.id, before, after, reason or rule.reason, fact or rule.fact))


class RulesTranslator:
    """The embedded default bridge: a knowledge file applied by this engine. Needs no weights and no torch."""

    name = "rules"

    def __init__(self, kb: KnowledgeBase, source: str, target: str):
        self.kb = kb
        self.source = get_model(source).key
        self.target = get_model(target).key
        self._plans: dict[tuple, Plan] = {}

    @classmethod
    def for_models(cls, source: str, target: str, knowledge: str | os.PathLike | None = None) -> RulesTranslator:
        """The shipped rules bridge from ``source`` to ``target`` (registry keys), optionally with a user file."""
        return cls.for_bridge(find_bridge(source, target), knowledge=knowledge)

    @classmethod
    def for_bridge(cls, spec: BridgeSpec, knowledge: str | os.PathLike | None = None) -> RulesTranslator:
        """A registered rules bridge; its knowledge file is looked up in bridge/rules/ unless the path is absolute."""
        if spec.kind != "rules":
            raise ValueError(f"the bridge {spec.source} -> {spec.target} is {spec.kind!r}, not a rules bridge")
        return cls(KnowledgeBase.load(RULES_DIR / spec.knowledge, user=knowledge), spec.source, spec.target)

    @classmethod
    def from_file(cls, path: str | os.PathLike, *, source: str, target: str,
                  knowledge: str | os.PathLike | None = None) -> RulesTranslator:
        return cls(KnowledgeBase.load(Path(path), user=knowledge), source, target)

    def plan(self, options: TranslationOptions) -> Plan:
        key = (options.networks, tuple(sorted(options.network_map.items())), options.embeddings, options.disable,
               options.style_budget)
        plan = self._plans.get(key)
        if plan is None:
            self.kb.check_disable(options.disable)
            plan = self._plans[key] = build_plan(self.kb, options)
        return plan

    def translate_batch(self, recipes: Iterable[Recipe], options: TranslationOptions | None = None
                        ) -> list[Translation]:
        return [self.translate(r, options) for r in recipes]

    def translate(self, recipe: Recipe | str, options: TranslationOptions | None = None) -> Translation:
        options = options or TranslationOptions()
        if isinstance(recipe, str):
            recipe = Recipe(prompt=recipe)
        if not recipe.prompt.strip():
            raise EmptyPromptError("empty prompt: give the SD1.x prompt to translate, e.g. 'a castle on a hill, 8k'")
        plan = self.plan(options)
        source = get_model(self.source)
        work = Work(parse(recipe.prompt), parse(recipe.negative_prompt), recipe, source, get_model(self.target),
                    options, plan)
        _note_source_model(work)
        _check_input(work)
        for stage, rules in plan.stages:
            stage.run(work, rules)
        work.recipe = work.recipe.replace(prompt=str(work.prompt), negative_prompt=str(work.negative))
        if not work.recipe.prompt.strip():
            work.warnings.append("every phrase of the prompt was removed (SD1 tags with no content for the target); "
                                 "add a description of the subject, or --disable-rule the rules listed")
        return Translation(work.recipe, work.source.key, self.target, work.changes, work.warnings, original=recipe,
                           notes=work.notes)


def _note_source_model(work: Work) -> None:
    """Infotext names the checkpoint it was made with: say which model that is, and warn when it is not SD1."""
    name, model_hash = work.recipe.model, work.recipe.model_hash
    if not name and not model_hash:
        return
    found = detect_model(name, model_hash)
    if found is None and name:
        try:
            found = get_model(name)  # a registry key or hub id, as a previous bridge writes it
        except ValueError:
            found = None
    shown = ", ".join(f"{k} {v}" for k, v in (("Model", name), ("Model hash", model_hash)) if v)
    if found is None:
        work.notes.append(f"source checkpoint {shown} is not a known base model; treated as an SD1.x fine-tune "
                          f"({work.source.key})")
    elif found.family == work.source.family:
        work.notes.append(f"source model detected from the infotext ({shown}): {found.key}")
        work.source = found
    else:
        work.warnings.append(f"the infotext says this was made with {found.key} ({shown}), not an SD1.x model; "
                             f"translated as {work.source.key} anyway: check --from")


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_WEIGHT = re.compile(r":\s*([+-]?[.\d]+)\s*\)")


def _check_input(work: Work) -> None:
    """Odd but valid prompts pass through; say what was not understood."""
    for label, prompt in (("prompt", work.prompt), ("negative prompt", work.negative)):
        text = str(prompt)
        controls = [] if text.isprintable() else sorted(set(_CONTROL.findall(text)))
        if controls:
            names = ", ".join(f"U+{ord(c):04X}" for c in controls[:5])
            work.warnings.append(f"{label} contains control characters ({names}); kept as written")
        if ":" in text and any(not _is_float(w) for w in _WEIGHT.findall(text)):
            try:
                attention(text)
            except PromptSyntaxError as exc:
                work.warnings.append(f"{label}: {exc}; A1111 rejects this prompt, so it is kept as written")
        for clause in prompt.clauses:
            if not clause.scheduled:
                work.warnings.append(
                    f"{label}: a '|' outside [a|b] alternation or a dangling backslash makes A1111 read prompt "
                    f"editing in {_short(str(clause))} as plain text; kept as written")


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _short(text: str, limit: int = 50) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")

"""The rules engine: applies one knowledge file to a recipe and explains every change.

The stages (bridge/rules/stages.py) run in a fixed order, each driven by the rules of its kind in the knowledge file;
a stage with no enabled rule does nothing. What depends only on the knowledge and the options (phrase indexes,
compiled patterns) is prepared once per set of options and reused for every prompt, so migrating a library is fast.

Untouched text is never rewritten: the prompt is parsed by :mod:`bridge.syntax` and rendered back from its tree.

A prompt or negative prompt longer than :data:`bridge.syntax.MAX_PROMPT_LENGTH` (100,000 characters) is passed
through unchanged, recipe and all, with a warning. Below it every stage takes time close to linear in the prompt's
length, whatever its shape (100,000 nested brackets, a 100,000-letter word, thousands of tags or BREAKs):
``benchmarks/prompt_scaling.py`` shows the figures.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bridge.models import BridgeSpec, detect_model, find_bridge, get_model
from bridge.recipe import Recipe
from bridge.rules import phrase_stage, stages
from bridge.rules.artists import OWN_FACETS, ArtistIndex
from bridge.rules.knowledge import RULES_DIR, ArtistParams, KnowledgeBase, is_disabled
from bridge.rules.matching import LiteralFinder, PhraseSet, Prefiltered, case_blind, normalize, variant_key
from bridge.rules.stages import phrase_key
from bridge.rules.work import NegativeKind, Plan, Stage, WeakConcept, Work
from bridge.syntax import MAX_PROMPT_LENGTH, PromptSyntaxError, attention, excerpt, parse
from bridge.translation import Change, Translation, TranslationOptions

__all__ = ["STAGES", "EmptyPromptError", "NetworksApplied", "RulesTranslator", "build_plan"]


class EmptyPromptError(ValueError):
    """The prompt is empty or only whitespace."""


STAGES = (
    Stage(("networks",), stages.networks),
    Stage(("phrase", "artist"), phrase_stage.phrases),
    Stage(("emphasis",), stages.emphasis),
    Stage(("weak-concept",), stages.weak),
    Stage(("negative",), stages.negative),
    Stage(("size",), stages.size),
    Stage(("clip-skip",), stages.clip_skip),
    Stage(("settings",), stages.settings),
    Stage(("tokens",), stages.tokens),
)


def build_plan(kb: KnowledgeBase, options: TranslationOptions) -> Plan:
    enabled = kb.enabled(options.disable)
    plan_stages = [(s, [r for r in enabled if r.kind in s.kinds]) for s in STAGES]
    plan_stages = [(s, rules) for s, rules in plan_stages if rules]
    kinds = {r.kind for r in enabled}

    phrase_index = {}  # each match phrase, lower case and by its variant key
    for rule in (r for r in enabled if r.kind == "phrase"):
        for match in rule.params.match:
            phrase_index.setdefault(variant_key(match), rule)
    phrase_index.update({normalize(m): r for r in enabled if r.kind == "phrase" for m in r.params.match
                         if normalize(m) not in phrase_index})
    artists = ArtistIndex([a for a in kb.artists.values() if "artist" in kinds
                           and not is_disabled(a.rule_id, options.disable)])

    names = {e.lower() for r in enabled if r.kind == "networks" for e in r.params.embeddings}
    names |= {e.lower() for e in options.embeddings}

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
            negatives.append(NegativeKind(spec, PhraseSet(spec.detect), phrases, finder, asked_as))

    weak = []
    for rule in (r for r in enabled if r.kind == "weak-concept"):
        patterns = tuple(case_blind(p) for p in rule.params.patterns if p)
        weak.append(WeakConcept(rule, PhraseSet(rule.params.names), patterns,
                          PhraseSet(rule.params.unless)))

    literals = LiteralFinder(literal for w in weak for p in w.patterns if isinstance(p, Prefiltered) and p.needs
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
    genres = tuple((genre, PhraseSet(words)) for genre, words in kb.genres.items())
    artist_rule = next((r for r in enabled if r.kind == "artist"), None)
    artist_params = artist_rule.params if artist_rule is not None else ArtistParams()
    style_budget = artist_params.style_budget if options.style_budget is None else options.style_budget
    return Plan(stages=plan_stages, phrase_index=phrase_index, artists=artists,
                embedding_names=tuple(sorted(names)), mapping=mapping, negatives=negatives, weak=weak,
                literals=literals, weak_starts=weak_starts, negative_starts=negative_starts,
                weak_unfiltered=weak_unfiltered, media=media, medium_family=medium_family, subjects=subjects,
                genres=genres,
                style_budget=style_budget, artist_rule=artist_rule,
                own={facet: PhraseSet(getattr(artist_params, param)) for facet, (param, _) in OWN_FACETS.items()})


@dataclass
class NetworksApplied:
    """One prompt after the networks stage alone (:meth:`RulesTranslator.apply_networks`)."""

    text: str
    warnings: list[str]
    changes: list[Change]
    embeddings: list[str]  # the embedding names left in ``text``: kept ones and those the network map gave


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

    def apply_networks(self, text: str, options: TranslationOptions | None = None, *,
                       negative: bool = False) -> NetworksApplied:
        """Only what :meth:`translate` does to LoRA/hypernetwork tags and embeddings in one prompt (``negative``: the
        negative prompt): removed, kept or mapped by ``options``, with the warnings and changes. The learned bridge
        applies this policy itself before it protects the syntax that is left."""
        options = options or TranslationOptions()
        plan = self.plan(options)
        rules = next((rules for stage, rules in plan.stages if stage.run is stages.networks), [])
        if not rules or ("<" not in text and not plan.names_embedding(text)):
            return NetworksApplied(text, [], [], [])
        parsed, empty = parse(text), parse("")
        work = Work(empty if negative else parsed, parsed if negative else empty, Recipe(prompt=text),
                    get_model(self.source), get_model(self.target), options, plan)
        stages.networks(work, rules)
        # Kept networks leave the text as written (the stage re-renders the phrases it visits, tidying spaces).
        result = str(work.negative if negative else work.prompt) if work.changes else text
        mapped = [c.after for c in work.changes if c.after and not c.after.startswith("<")]
        kept = [m.group(0) for m in plan.embedding_pattern.finditer(result)] if plan.names_embedding(result) else []
        return NetworksApplied(result, work.warnings, work.changes, kept + mapped)

    def translate_batch(self, recipes: Iterable[Recipe], options: TranslationOptions | None = None
                        ) -> list[Translation]:
        return [self.translate(r, options) for r in recipes]

    def translate(self, recipe: Recipe | str, options: TranslationOptions | None = None) -> Translation:
        options = options or TranslationOptions()
        if isinstance(recipe, str):
            recipe = Recipe(prompt=recipe)
        if not recipe.prompt.strip():
            raise EmptyPromptError("empty prompt: give the SD1.x prompt to translate, e.g. 'a castle on a hill, 8k'")
        too_long = [f"the {label} is {len(text):,} characters, over the {MAX_PROMPT_LENGTH:,} the rules bridge "
                    "translates; passed through unchanged" for label, text in
                    (("prompt", recipe.prompt), ("negative prompt", recipe.negative_prompt))
                    if len(text) > MAX_PROMPT_LENGTH]
        if too_long:  # a pasted blob, not a prompt: nothing is translated, in constant time
            return Translation(recipe, self.source, self.target, [], too_long, original=recipe)
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
    # the texts as written: the tree of each renders back to exactly its text (syntax.parse)
    for label, prompt, text in (("prompt", work.prompt, work.recipe.prompt),
                                ("negative prompt", work.negative, work.recipe.negative_prompt)):
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
                    f"editing in {excerpt(str(clause).strip(), 50)} as plain text; kept as written")


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True



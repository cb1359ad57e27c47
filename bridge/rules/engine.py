"""The rules engine: applies one knowledge file to a recipe and explains every change.

Stages run in a fixed order, each driven by the rules of its kind in the knowledge file (a stage with no enabled rule
does nothing):

1. ``networks``  SD1 LoRA / hypernetwork tags and textual-inversion embeddings: removed with a warning (default),
                 kept (``networks="keep"``), or mapped to the user's SD2 equivalents (``network_map``).
2. ``phrase`` and ``artist``  one pass over every comma/BREAK-separated phrase: magic words kept, dropped or
                 rephrased; artist names kept, replaced by a style description, or kept and described.
3. ``negative``  the default negative prompt for the kind of image, merged with the user's without duplicates.
4. ``size``      the target's native area at the same aspect ratio, in multiples of 64.
5. ``clip-skip`` the SD1 "clip skip 2" habit dropped (SD2 already uses the penultimate layer).
6. ``settings``  steps, CFG scale and sampler from the target model's defaults where the source recipe gave none.

Untouched text is never rewritten: the prompt is parsed by :mod:`bridge.syntax` and rendered back from its tree.
"""

from __future__ import annotations

import functools
import math
import os
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bridge.models import ModelSpec, find_bridge, get_model
from bridge.recipe import Recipe
from bridge.rules.knowledge import RULES_DIR, Artist, KnowledgeBase, Rule, is_disabled
from bridge.rules.phrases import DROP, KEEP, Item, Phrase, containers, edit_phrases, items_text, normalize
from bridge.syntax import NetworkTag, Prompt, PromptSyntaxError, Text, parse, render
from bridge.translation import Change, Translation, TranslationOptions

__all__ = ["EmptyPromptError", "RulesTranslator", "target_size"]


class EmptyPromptError(ValueError):
    """The prompt is empty or only whitespace."""


@dataclass
class _Work:
    """One translation in progress: the parsed prompts, the recipe being built, and what was done."""

    prompt: Prompt
    negative: Prompt
    recipe: Recipe
    source: ModelSpec
    target: ModelSpec
    options: TranslationOptions
    kb: KnowledgeBase
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def record(self, rule: Rule | str, before: str, after: str, reason: str | None = None,
               fact: str | None = None) -> None:
        if isinstance(rule, Rule):
            rule_id, reason, fact = rule.id, reason or rule.reason, fact or rule.fact
        else:
            rule_id = rule
        self.changes.append(Change(rule_id, before, after, reason or "", fact))


class RulesTranslator:
    """The embedded default bridge: a knowledge file applied by this engine. Needs no weights and no torch."""

    name = "rules"

    def __init__(self, kb: KnowledgeBase, source: str, target: str):
        self.kb = kb
        self.source = get_model(source).key
        self.target = get_model(target).key

    @classmethod
    def for_models(cls, source: str, target: str, knowledge: str | os.PathLike | None = None) -> RulesTranslator:
        """The shipped rules bridge from ``source`` to ``target`` (registry keys), optionally with a user file."""
        spec = find_bridge(source, target)
        if spec.kind != "rules":
            raise ValueError(f"the bridge {spec.source} -> {spec.target} is {spec.kind!r}, not a rules bridge")
        return cls(KnowledgeBase.load(RULES_DIR / spec.knowledge, user=knowledge), spec.source, spec.target)

    @classmethod
    def from_file(cls, path: str | os.PathLike, *, source: str, target: str,
                  knowledge: str | os.PathLike | None = None) -> RulesTranslator:
        return cls(KnowledgeBase.load(Path(path), user=knowledge), source, target)

    def translate_batch(self, recipes: Iterable[Recipe], options: TranslationOptions | None = None
                        ) -> list[Translation]:
        return [self.translate(r, options) for r in recipes]

    def translate(self, recipe: Recipe | str, options: TranslationOptions | None = None) -> Translation:
        options = options or TranslationOptions()
        if isinstance(recipe, str):
            recipe = Recipe(prompt=recipe)
        if not recipe.prompt.strip():
            raise EmptyPromptError("empty prompt: give the SD1.x prompt to translate, e.g. 'a castle on a hill, 8k'")
        self.kb.check_disable(options.disable)
        work = _Work(parse(recipe.prompt), parse(recipe.negative_prompt), recipe, get_model(self.source),
                     get_model(self.target), options, self.kb)
        _check_input(work)
        enabled = self.kb.enabled(options.disable)
        for stage in STAGES:
            rules = [r for r in enabled if r.kind in stage.kinds]
            if rules:
                stage.run(work, rules)
        work.recipe = work.recipe.replace(prompt=str(work.prompt), negative_prompt=str(work.negative))
        if not work.recipe.prompt.strip():
            work.warnings.append("every phrase of the prompt was removed (SD1 tags with no content for the target); "
                                 "add a description of the subject, or --disable-rule the rules listed")
        return Translation(work.recipe, self.source, self.target, work.changes, work.warnings, original=recipe)


# --------------------------------------------------------------------------------------------------------------------
# Input checks: odd but valid prompts pass through, with a warning saying what was not understood.

def _check_input(work: _Work) -> None:
    for label, prompt in (("prompt", work.prompt), ("negative prompt", work.negative)):
        text = str(prompt)
        controls = sorted({c for c in text if unicodedata.category(c) == "Cc" and c not in "\t\n\r"})
        if controls:
            names = ", ".join(f"U+{ord(c):04X}" for c in controls[:5])
            work.warnings.append(f"{label} contains control characters ({names}); kept as written")
        try:
            prompt.attention()
        except PromptSyntaxError as exc:
            work.warnings.append(f"{label}: {exc}; A1111 rejects this prompt, so it is kept as written")
        for clause in prompt.clauses:
            if not clause.scheduled:
                work.warnings.append(
                    f"{label}: a '|' outside [a|b] alternation or a dangling backslash makes A1111 read prompt "
                    f"editing in {_short(str(clause))} as plain text; kept as written")


def _short(text: str, limit: int = 50) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


# --------------------------------------------------------------------------------------------------------------------
# Stage 1: networks and embeddings


def _networks(work: _Work, rules: list[Rule]) -> None:
    rule = rules[-1]
    embeddings = {e.lower() for r in rules for e in r.params.get("embeddings", [])}
    embeddings |= {e.lower() for e in work.options.embeddings}
    mapping = {k.lower(): v for k, v in work.options.network_map.items()}
    target = work.target.key
    pattern = None
    if embeddings:
        names = "|".join(re.escape(e) for e in sorted(embeddings, key=len, reverse=True))
        pattern = re.compile(r"(?<![\w.-])(" + names + r")(?![\w-])", re.IGNORECASE)
    for label, prompt in (("prompt", work.prompt), ("negative prompt", work.negative)):
        for container in containers(prompt):
            _tags_in(container, work, rule, mapping, label, target)
        if pattern is not None:
            edit = functools.partial(_embedding_phrase, pattern=pattern, work=work, rule=rule, mapping=mapping,
                                     label=label, target=target)
            for container in containers(prompt):
                edit_phrases(container, edit)


def _tags_in(container: list, work: _Work, rule: Rule, mapping: dict[str, str], label: str, target: str) -> None:
    def edit(phrase: Phrase) -> list[Item] | None:
        if not any(isinstance(i, NetworkTag) for i in phrase.core):
            return KEEP
        out: list[Item] = []
        for item in phrase.core:
            if not isinstance(item, NetworkTag):
                out.append(item)
                continue
            new_name = mapping.get(f"{item.kind}:{item.name}".lower()) or mapping.get(item.name.lower())
            if new_name is not None:
                kind, _, name = new_name.rpartition(":")
                new = NetworkTag.make(kind or item.kind, name, *item.args)
                work.record(rule, item.text, new.text, f"mapped to your {target} equivalent by the network map")
                out.append(new)
            elif work.options.networks == "keep":
                work.warnings.append(f"kept {item.text} in the {label}: an SD1 {item.kind} does not load on "
                                     f"{target} (kept because networks=keep)")
                out.append(item)
            else:
                work.record(rule, item.text, "", rule.reason)
                work.warnings.append(f"removed {item.text} from the {label}: an SD1 {item.kind} does not load on "
                                     f"{target}; map it with --network-map or keep it with --keep-networks")
                _trim_before_removed(out)
        if not any(isinstance(i, str) and i.strip() or not isinstance(i, str) for i in out):
            return DROP
        return _tidy(out)

    edit_phrases(container, edit)


def _trim_before_removed(out: list[Item]) -> None:
    if out and isinstance(out[-1], str):
        out[-1] = out[-1].rstrip()


def _tidy(items: list[Item]) -> list[Item]:
    """Collapse the double spaces a removal leaves and trim the ends of the phrase core."""
    out = [re.sub(r" {2,}", " ", i) if isinstance(i, str) else i for i in items]
    if out and isinstance(out[0], str):
        out[0] = out[0].lstrip()
    if out and isinstance(out[-1], str):
        out[-1] = out[-1].rstrip()
    return [i for i in out if i != ""]


def _embedding_phrase(phrase: Phrase, pattern: re.Pattern, work: _Work, rule: Rule, mapping: dict[str, str],
                      label: str, target: str) -> list[Item] | None:
    group = phrase.emphasis
    items = group.children if group is not None else phrase.core
    texts = [i.text if isinstance(i, Text) else i for i in items]
    if not any(isinstance(t, str) and pattern.search(t) for t in texts):
        return KEEP
    changed: list[Item] = []
    for item in texts:
        if not isinstance(item, str):
            changed.append(item)
            continue

        def swap(m: re.Match) -> str:
            name = m.group(1)
            new = mapping.get(name.lower())
            if new is not None:
                work.record(rule, name, new, f"mapped to your {target} embedding by the network map")
                return new
            if work.options.networks == "keep":
                work.warnings.append(f"kept embedding {name!r} in the {label}: SD1 textual inversions do not load on "
                                     f"{target} (kept because networks=keep)")
                return name
            work.record(rule, name, "", rule.reason)
            work.warnings.append(f"removed embedding {name!r} from the {label}: SD1 textual inversions do not load "
                                 f"on {target}; map it with --network-map or keep it with --keep-networks")
            return ""

        changed.append(pattern.sub(swap, item))
    changed = _tidy(changed)
    if not any(isinstance(i, str) and i.strip() or not isinstance(i, str) for i in changed):
        return DROP
    if group is not None:
        group.children = [Text(i) if isinstance(i, str) else i for i in changed]
        return [group]
    return changed


# --------------------------------------------------------------------------------------------------------------------
# Stage 2: magic words and artists, in one pass over the phrases


def _phrases(work: _Work, rules: list[Rule]) -> None:
    index: dict[str, Rule] = {}
    for rule in (r for r in rules if r.kind == "phrase"):
        for match in rule.params["match"]:
            index[normalize(match)] = rule
    use_artists = any(r.kind == "artist" for r in rules)
    artists = _ArtistIndex([a for a in work.kb.artists.values()
                            if use_artists and not is_disabled(a.rule_id, work.options.disable)])

    def edit(phrase: Phrase) -> list[Item] | None:
        plain = phrase.plain
        if plain is None:
            return KEEP
        rule = index.get(plain)
        if rule is not None:
            action = rule.params["action"]
            if action == "drop":
                work.record(rule, phrase.text, "")
                return DROP
            if action == "replace":
                new = phrase.replaced(rule.params["replacement"])
                work.record(rule, phrase.text, items_text(new))
                return new
            return KEEP
        rewritten = artists.rewrite(phrase, work)
        return KEEP if rewritten is None else rewritten

    touched = {id(container) for container in containers(work.prompt) if edit_phrases(container, edit)}
    _prune_emptied_groups(work.prompt, touched)


def _prune_emptied_groups(prompt: Prompt, touched: set[int]) -> None:
    """A group whose every phrase was dropped ("(8k, 4k)") goes too, with its comma; groups that were empty in the
    user's prompt stay."""
    def edit(phrase: Phrase) -> list[Item] | None:
        group = phrase.emphasis
        if group is not None and id(group.children) in touched and not render(group.children).strip():
            return DROP
        return KEEP

    for container in containers(prompt):
        edit_phrases(container, edit)


_BY = re.compile(r"(?:^|\s)(?P<by>(?:(?:art|artwork|painting|illustration|drawing|concept art)\s+)?by|"
                 r"in the style of|style of|inspired by)\s+", re.IGNORECASE)
_JOIN = re.compile(r"\s+(?:and|&|x)\s+|\s*&\s*", re.IGNORECASE)


class _ArtistIndex:
    """Finds artist names in a phrase ("by greg rutkowski and alphonse mucha", "artgerm") and rewrites them."""

    def __init__(self, artists: list[Artist]):
        self.by_name: dict[str, Artist] = {}
        for artist in artists:
            self.by_name[artist.name] = artist
            for alias in artist.aliases:
                self.by_name.setdefault(alias, artist)

    def rewrite(self, phrase: Phrase, work: _Work) -> list[Item] | None:
        if not self.by_name:
            return None
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
        new_text = self._rewrite_text(text, work)
        if new_text is None:
            return None
        if group is not None:
            group.children = [Text(new_text)]
            return list(phrase.core)
        return [new_text]

    def _rewrite_text(self, text: str, work: _Work) -> str | None:
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
        if any(a is None and len(n.split()) > 4 for n, a in zip(names, found)):
            return None  # "by the sea and the mountains": not names
        if all(a is None or a.action == "keep" for a in found):
            return None
        kept = [n for n, a in zip(names, found) if a is None or a.action != "replace"]
        described: list[str] = []
        for n, a in zip(names, found):
            if a is None or a.action == "keep":
                continue
            described.append(a.description)
            if a.action == "replace":
                reason = ("SD2's new text encoder barely knows this artist's name, so the style is described "
                          "instead")
            else:
                reason = "SD2 knows this name only weakly, so the name is kept and the style spelled out"
            work.record(a.rule_id, n, a.description if a.action == "replace" else f"{n}, {a.description}",
                        reason, a.fact)
        pieces = [head] if head else []
        if kept:
            pieces.append((by + " " if by else "") + " and ".join(kept))
        pieces.extend(described)
        return ", ".join(pieces)


# --------------------------------------------------------------------------------------------------------------------
# Stage 3: negative prompt


def _negative(work: _Work, rules: list[Rule]) -> None:
    rule = rules[-1]
    defaults = [n for n in work.kb.negatives.values() if not is_disabled("negative." + n.kind, work.options.disable)]
    if not defaults:
        return
    text = normalize(str(work.prompt))
    chosen = next((n for n in defaults if n.detect and any(_has_phrase(text, d) for d in n.detect)), None)
    if chosen is None:
        chosen = work.kb.negatives.get("default")
        if chosen is None or chosen not in defaults:
            return
    before = str(work.negative)
    present = {_phrase_key(p) for p in _top_phrases(before)}
    # A default phrase the prompt itself asks for ("b&w" in the negative of a black-and-white photo) is left out.
    added = [p.strip() for p in chosen.prompt.split(",")
             if p.strip() and _phrase_key(p) not in present and not _has_phrase(text, _phrase_key(p))]
    if not added:
        return
    after = before.rstrip().rstrip(",") + (", " if before.strip() else "") + ", ".join(added)
    work.negative = parse(after)
    work.record("negative." + chosen.kind, before, after,
                (chosen.reason or rule.reason) + f" (default negative for a {chosen.kind} image)", chosen.fact)


def _has_phrase(text: str, phrase: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)", text) is not None


def _top_phrases(text: str) -> list[str]:
    return [p for p in text.split(",") if p.strip()]


def _phrase_key(phrase: str) -> str:
    """Compare negative phrases by their words: ``(worst quality:1.4)`` and ``worst quality`` are the same."""
    words = re.sub(r":\s*[-+]?[\d.]+\s*\)", ")", phrase)
    return normalize(re.sub(r"[()\[\]]", "", words))


# --------------------------------------------------------------------------------------------------------------------
# Stages 4-6: size, clip skip, settings


def target_size(width: int, height: int, native: int, multiple: int = 64) -> tuple[int, int]:
    """Same aspect ratio, the target's native area, each side a multiple of ``multiple``.

    >>> target_size(512, 768, 768)
    (640, 960)
    >>> target_size(512, 512, 768)
    (768, 768)
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"size must be positive, got {width}x{height}")
    scale = math.sqrt(native * native / (width * height))
    return (max(multiple, round(width * scale / multiple) * multiple),
            max(multiple, round(height * scale / multiple) * multiple))


def _size(work: _Work, rules: list[Rule]) -> None:
    rule = rules[-1]
    native_src = work.source.native_size
    width = work.recipe.width or native_src
    height = work.recipe.height or native_src
    new = target_size(width, height, work.target.native_size, int(rule.params.get("multiple", 64)))
    if new != (work.recipe.width, work.recipe.height):
        work.record(rule, f"{width}x{height}", f"{new[0]}x{new[1]}",
                    rule.reason + f" ({work.target.key}: {work.target.native_size}x{work.target.native_size})")
        work.recipe = work.recipe.replace(width=new[0], height=new[1])


def _clip_skip(work: _Work, rules: list[Rule]) -> None:
    rule = rules[-1]
    if work.recipe.clip_skip is not None and work.recipe.clip_skip != 1:
        work.record(rule, f"Clip skip: {work.recipe.clip_skip}", "Clip skip: 1 (default)")
        work.recipe = work.recipe.replace(clip_skip=None)


def _settings(work: _Work, rules: list[Rule]) -> None:
    target = work.target
    recipe = work.recipe
    extra = {k: v for k, v in recipe.extra.items() if k not in ("Model hash", "Lora hashes", "TI hashes")}
    work.recipe = recipe.replace(
        steps=recipe.steps or target.default_steps,
        cfg_scale=recipe.cfg_scale or target.default_cfg_scale,
        sampler=recipe.sampler or target.default_sampler,
        model=target.key,
        extra=extra,
    )


@dataclass(frozen=True)
class Stage:
    kinds: tuple[str, ...]
    run: Callable[[_Work, list[Rule]], None]


STAGES = (
    Stage(("networks",), _networks),
    Stage(("phrase", "artist"), _phrases),
    Stage(("negative",), _negative),
    Stage(("size",), _size),
    Stage(("clip-skip",), _clip_skip),
    Stage(("settings",), _settings),
)

"""The rules engine's stages, in the order they run. Each takes the translation in progress and its enabled rules.

networks   SD1 LoRA/hypernetwork tags and embeddings: removed with a warning, kept, or mapped (F-NETWORKS)
phrase     magic words kept/dropped/rephrased and artist names rewritten, in one pass over the phrases
emphasis   weights over the rule's cap brought down to it; nested brackets over it become one weight (F-EMPHASIS)
weak       warnings for what SD2 is weak at (celebrities, text in images, ...); never rewrites
negative   the default negative for the kind of image, merged with the user's without duplicates (F-NEGATIVE)
size       the target's native area at the same aspect ratio; hires-fix fields kept consistent (F-SIZE)
clip-skip  the SD1 clip-skip-2 habit dropped (F-CLIPSKIP)
settings   steps, CFG and sampler from the target's defaults where the recipe gave none; the model named
tokens     warnings where A1111 must split a run of text at the 75-token limit (F-TOKENS)
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bridge.rules.matching import PhraseSet, Words
from bridge.rules.phrases import DROP, KEEP, Chains, Item, Phrase, containers, edit_phrases, has_content, tidy
from bridge.syntax import (
    Emphasis,
    NetworkTag,
    Prompt,
    PromptSyntaxError,
    Text,
    format_weight,
    parse,
    render_head,
    walk_text,
)

if TYPE_CHECKING:
    from bridge.rules.knowledge import Rule
    from bridge.rules.work import NegativeKind, Work

__all__ = ["target_size"]


def _prompts(work: Work) -> tuple[tuple[str, Prompt], ...]:
    return (("prompt", work.prompt), ("negative prompt", work.negative))


# --------------------------------------------------------------------------------------------------------------------
# networks


# How the warnings about SD1 networks end: the command line's flags. A front end with its own controls (the ComfyUI
# node, the A1111 extension) puts its own words in place of this text.
NETWORK_HINT = "map it with --network-map or keep it with --keep-networks"


def networks(work: Work, rules: list[Rule]) -> None:
    rule = rules[-1]
    for label, prompt in _prompts(work):
        text = str(prompt)
        if "<" in text:
            for container in containers(prompt):
                edit_phrases(container, lambda p, label=label: _tags(p, work, rule, label))
        if work.plan.names_embedding(text):
            chains = Chains()
            for container in containers(prompt):
                edit_phrases(container, lambda p, label=label: _embeddings(p, work, rule, label), chains=chains)


def _tags(phrase: Phrase, work: Work, rule: Rule, label: str) -> list[Item] | None:
    if not any(isinstance(i, NetworkTag) for i in phrase.core):
        return KEEP
    target, mapping = work.target.key, work.plan.mapping
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
            work.warnings.append(f"kept {item.text} in the {label}: an SD1 {item.kind} does not load on {target} "
                                 "(kept because networks=keep)")
            out.append(item)
        else:
            work.record(rule, item.text, "")
            work.warnings.append(f"removed {item.text} from the {label}: an SD1 {item.kind} does not load on "
                                 f"{target}; " + NETWORK_HINT)
            if out and isinstance(out[-1], str):
                out[-1] = out[-1].rstrip()
    return tidy(out) if has_content(out) else DROP


def _embeddings(phrase: Phrase, work: Work, rule: Rule, label: str) -> list[Item] | None:
    pattern = work.plan.embedding_pattern
    group = phrase.innermost
    items = group.children if group is not None else phrase.core
    texts = [i.text if isinstance(i, Text) else i for i in items]
    if not any(isinstance(t, str) and pattern.search(t) for t in texts):
        return KEEP
    target, mapping = work.target.key, work.plan.mapping

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
        work.record(rule, name, "")
        work.warnings.append(f"removed embedding {name!r} from the {label}: SD1 textual inversions do not load on "
                             f"{target}; " + NETWORK_HINT)
        return ""

    changed = tidy([pattern.sub(swap, t) if isinstance(t, str) else t for t in texts])
    if not has_content(changed):
        return DROP
    if group is not None:
        group.children = [Text(i) if isinstance(i, str) else i for i in changed]
        return list(phrase.core)
    return changed


# --------------------------------------------------------------------------------------------------------------------
# emphasis


def emphasis(work: Work, rules: list[Rule]) -> None:
    """Weights above the rule's cap come down to the cap; everything else is left as written.

    A cap, not a factor: the rule's output is its own fixed point, so a prompt translated twice (a pasted infotext,
    a library migrated again) keeps its weights (a factor shrank them on every pass: 1.5 -> 1.4 -> 1.32)."""
    rule = rules[-1]
    cap = rule.params.cap
    low, high = rule.params.keep_outside
    for label, prompt in _prompts(work):
        if not prompt.features() & {"emphasis"}:
            continue
        seen: set[int] = set()
        colons = _Colons(prompt)
        changed = False
        for container in containers(prompt):
            replacements = []
            for i, node in enumerate(container):
                if isinstance(node, Emphasis) and id(node) not in seen:
                    new = _capped(node, cap, low, high, seen, work, label, colons)
                    if new is not None:
                        work.record(rule, work.recorded_text([node]), work.recorded_text(new))
                        replacements.append((i, new))
            for i, new in reversed(replacements):
                container[i:i + 1] = new
                changed = True
        if changed:
            _merge_text(prompt)


def _capped(node: Emphasis, cap: float, low: float, high: float, seen: set[int], work: Work,
            label: str, colons: _Colons) -> list | None:
    """The replacement for a chain of nested groups whose weight is over ``cap`` (``(((x)))`` with cap 1.3 →
    ``(x:1.3)``), or None to leave it."""
    chain = [node]
    while (only := _only_group(chain[-1])) is not None:
        chain.append(only)
    seen.update(id(g) for g in chain)
    if any(not g.close or (g.open == "[" and g.close != "]") for g in chain):
        return None  # unclosed: A1111 applies it to the rest of the prompt; leave the user's text alone
    if colons.inside(chain[-1]):
        return None  # a colon inside could turn into a weight once the brackets change
    inner = _strip_spaces(chain[-1].children)
    try:
        weight = math.prod(g.multiplier for g in chain)
    except PromptSyntaxError:
        return None
    if not (math.isfinite(weight) and low < weight <= high):
        work.warnings.append(f"{label}: weight {weight:g} on {render_head(inner, 40)[0]!r} is outside ({low:g}, "
                             f"{high:g}]; kept as written")
        return None
    if round(weight, 2) <= cap:
        return None
    return [Emphasis(list(inner), "(", f":{format_weight(cap)})")]


class _Colons:
    """Which groups hold a ``:`` in their children's text, worked out in one walk over the prompt on first use (a
    render of each group would be quadratic in the nesting)."""

    def __init__(self, prompt: Prompt):
        self.prompt = prompt
        self.found: set[int] | None = None

    def inside(self, group: Emphasis) -> bool:
        if self.found is None:
            self.found = set()
            open_groups: list[list] = []  # [node, whether its children's text so far holds a colon]
            for clause in self.prompt.clauses:
                for node, text, edge in walk_text(clause.children):
                    if edge == 1:
                        open_groups.append([node, False])
                    elif edge == 0:
                        if open_groups and ":" in text:
                            open_groups[-1][1] = True
                    else:
                        inner, colon = open_groups.pop()
                        if colon:
                            self.found.add(id(inner))
                        if open_groups and (colon or ":" in text):
                            open_groups[-1][1] = True
        return id(group) in self.found


def _only_group(group: Emphasis) -> Emphasis | None:
    """The one group inside ``group`` when nothing but spaces is beside it: ``((x))`` and ``( ( x ) )`` alike."""
    inside = [child for child in group.children if not (isinstance(child, Text) and not child.text.strip())]
    return inside[0] if len(inside) == 1 and isinstance(inside[0], Emphasis) else None


def _strip_spaces(nodes: list) -> list:
    """``nodes`` without the spaces at either end (``( x )`` → ``x``)."""
    nodes = list(nodes)
    if nodes and isinstance(nodes[0], Text):
        nodes[0] = Text(nodes[0].text.lstrip())
    if nodes and isinstance(nodes[-1], Text):
        nodes[-1] = Text(nodes[-1].text.rstrip())
    return [n for n in nodes if not (isinstance(n, Text) and not n.text)]


def _merge_text(prompt: Prompt) -> None:
    for container in containers(prompt):
        merged: list = []
        texts: list[str] = []  # a run of text nodes, joined once
        for node in container:
            if isinstance(node, Text):
                texts.append(node.text)
                continue
            if texts:
                merged.append(Text("".join(texts)))
                texts = []
            merged.append(node)
        if texts:
            merged.append(Text("".join(texts)))
        container[:] = merged


# --------------------------------------------------------------------------------------------------------------------
# weak concepts


def weak(work: Work, rules: list[Rule]) -> None:
    # "Beyoncé" is found as "beyonce"; only the positive prompt is read; patterns see lower-cased text
    text, words = work.prompt_words()
    present = work.plan.literals.present(text, words)
    names = not work.plan.weak_starts.isdisjoint(words.set)
    if not names and not present and not work.plan.weak_unfiltered:
        return  # nothing any weak concept looks for is in the prompt
    for weak_concept in work.plan.weak:
        found = weak_concept.names.search(words) if names else None
        if found is None:
            match = weak_concept.search(text, present)
            found = match.group(0).strip() if match else None
        if found is None or weak_concept.unless.search(words):
            continue
        rule = weak_concept.rule
        warning = rule.params.warning or rule.reason
        work.warnings.append(f"{warning} (found {found!r}; rule {rule.id})")


# --------------------------------------------------------------------------------------------------------------------
# negative prompt


def negative(work: Work, rules: list[Rule]) -> None:
    """The default negative for the kind of image the user asked for: chosen from the user's own words and the media
    of the artists they named, never from words the bridge inserted."""
    rule = rules[-1]
    _, words = work.user_words
    chosen = _negative_kind(work, words)
    if chosen is None and work.artist_media:
        # Only when the user's words say nothing: the media of the artists they named, as written and as their
        # family ("poster art" is an illustration)
        family = work.plan.medium_family
        media = [f"{m}, {family.get(work.plan.media.found_as(m) or '', '')}" for m in work.artist_media]
        chosen = _negative_kind(work, PhraseSet.words(", ".join(media)))
    if chosen is None:
        chosen = next((n for n in work.plan.negatives if n.spec.kind == "default"), None)
        if chosen is None:
            return
    spec = chosen.spec
    before = str(work.negative)
    present = {phrase_key(p) for p in before.split(",") if p.strip()} if before.strip() else set()
    # A default phrase the prompt asks for ("3d render" for a 3d render, "b&w" for a black and white photo, "text" for
    # a sign) is left out, whether the user wrote it or the bridge did: the two would cancel out.
    asked: dict[str, str] = {}  # phrase key -> the wording that asks for it
    final = work.prompt_words()[1]
    for found in (*chosen.finder.find(words), *(chosen.finder.find(final) if final is not words else ())):
        for key in chosen.asked_as[found]:
            asked.setdefault(key, found)
    if not present and not asked:
        added = chosen.joined  # the common case: an SD1 prompt without a negative
    else:
        for phrase, key in chosen.phrases:
            if key in asked and key not in present:
                work.record("negative." + spec.kind, phrase, "",
                            f"left out of the default negative: the prompt asks for it ({asked[key]!r})", spec.fact)
        added = ", ".join(p for p, key in chosen.phrases if key not in present and key not in asked)
    if not added:
        return
    after = _merged_negative(before, added)
    if after is None:
        return
    work.negative = parse(after)
    work.record("negative." + spec.kind, before, after,
                (spec.reason or rule.reason) + f" (default negative for a {spec.kind} image)", spec.fact)


def _negative_kind(work: Work, words: Words) -> NegativeKind | None:
    """The first kind of default negative whose words ``words`` holds, if any."""
    if work.plan.negative_starts.isdisjoint(words.set):
        return None
    return next((n for n in work.plan.negatives if n.detect.search(words)), None)


def _merged_negative(before: str, added: str) -> str | None:
    """The user's negative with the default phrases added after it, as many as fit in the 75-token chunks the user's
    negative already takes: the bridge never makes A1111 split a negative prompt. None when none fits."""
    head = before.rstrip().rstrip(",") + (", " if before.strip() else "")
    after = head + added
    if not before.strip():
        return after
    from bridge.chunks import chunk_count

    try:
        limit = max(1, chunk_count(before))
        phrases = added.split(", ")
        while phrases and chunk_count(after) > limit:
            phrases.pop()
            after = head + ", ".join(phrases)
    except PromptSyntaxError:
        return after
    return after if phrases else None


def phrase_key(phrase: str) -> str:
    """Compare negative phrases by their words: ``(worst quality:1.4)`` and ``worst quality`` are the same."""
    words = re.sub(r":\s*[-+]?[\d.]+\s*\)", ")", phrase)
    return re.sub(r"\s+", " ", re.sub(r"[()\[\]]", "", words)).strip().lower()


# --------------------------------------------------------------------------------------------------------------------
# size and hires fix


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


def nearest_bucket(width: int, height: int, buckets: Sequence[Sequence[int]]) -> tuple[int, int]:
    """The training bucket whose aspect ratio is closest to ``width``/``height`` (compared as log ratios).

    >>> nearest_bucket(512, 768, [[1024, 1024], [896, 1152], [832, 1216]])
    (832, 1216)
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"size must be positive, got {width}x{height}")
    ratio = math.log(width / height)
    w, h = min(buckets, key=lambda b: abs(math.log(b[0] / b[1]) - ratio))
    return int(w), int(h)


def size(work: Work, rules: list[Rule]) -> None:
    rule = rules[-1]
    native_src = work.source.native_size
    width = work.recipe.width or native_src
    height = work.recipe.height or native_src
    buckets = rule.params.buckets
    if buckets:
        new = nearest_bucket(width, height, buckets)
        where = f"{work.target.key}: the training bucket nearest {width}x{height}"
    else:
        new = target_size(width, height, work.target.native_size, rule.params.multiple)
        where = f"{work.target.key}: {work.target.native_size}x{work.target.native_size}"
    if new != (work.recipe.width, work.recipe.height):
        work.record(rule, f"{width}x{height}", f"{new[0]}x{new[1]}", f"{rule.reason} ({where})")
        work.recipe = work.recipe.replace(width=new[0], height=new[1])
    _hires(work, rule, (width, height), new)


_HIRES_RESIZE = re.compile(r"\s*(\d+)\s*x\s*(\d+)\s*")


def _hires(work: Work, rule: Rule, old: tuple[int, int], new: tuple[int, int]) -> None:
    """Keep A1111's hires-fix fields consistent: the final size the SD1 recipe asked for stays the final size."""
    extra = work.recipe.extra
    upscale, resize = extra.get("Hires upscale"), extra.get("Hires resize")
    if upscale is None and resize is None:
        return
    final: tuple[int, int] | None = None
    m = _HIRES_RESIZE.fullmatch(resize or "")
    if m and int(m.group(1)) and int(m.group(2)):
        final = (int(m.group(1)), int(m.group(2)))
    elif upscale is not None:
        try:
            factor = float(upscale)
        except ValueError:
            work.warnings.append(f"Hires upscale {upscale!r} is not a number; hires-fix fields kept as written")
            return
        final = (round(old[0] * factor), round(old[1] * factor))
    if final is None:
        return
    reason = f"keeps the final size the recipe asked for ({final[0]}x{final[1]}) at the new base size"
    if final[0] <= new[0] and final[1] <= new[1]:
        dropped = {k: v for k, v in extra.items() if k.startswith("Hires ") or k == "Denoising strength"}
        kept = {k: v for k, v in extra.items() if k not in dropped}
        work.record("size.hires", ", ".join(f"{k}: {v}" for k, v in dropped.items()), "",
                    f"the new base size {new[0]}x{new[1]} already reaches the final size {final[0]}x{final[1]}; "
                    "the hires-fix pass is not needed", rule.fact)
        work.recipe = work.recipe.replace(extra=kept)
        return
    if upscale is not None and not m:
        factor = round(max(final[0] / new[0], final[1] / new[1]), 2)
        if format_weight(factor) != upscale:
            work.record("size.hires", f"Hires upscale: {upscale}", f"Hires upscale: {format_weight(factor)}", reason,
                        rule.fact)
            work.recipe = work.recipe.replace(extra={**extra, "Hires upscale": format_weight(factor)})


# --------------------------------------------------------------------------------------------------------------------
# clip skip, settings, tokens


def clip_skip(work: Work, rules: list[Rule]) -> None:
    rule = rules[-1]
    if work.recipe.clip_skip is not None and work.recipe.clip_skip != 1:
        work.record(rule, f"Clip skip: {work.recipe.clip_skip}", "Clip skip: 1 (default)")
        work.recipe = work.recipe.replace(clip_skip=None)


def settings(work: Work, rules: list[Rule]) -> None:
    target, recipe = work.target, work.recipe
    stale = ("Model hash", "Lora hashes", "TI hashes", "Hashes")  # they name the SD1 checkpoint and networks
    work.recipe = recipe.replace(
        steps=recipe.steps or target.default_steps,
        cfg_scale=recipe.cfg_scale or target.default_cfg_scale,
        sampler=recipe.sampler or target.default_sampler,
        model=target.key,
        extra={k: v for k, v in recipe.extra.items() if k not in stale},
    )


def tokens(work: Work, rules: list[Rule]) -> None:
    from bridge.chunks import overflows

    for label, prompt in _prompts(work):
        try:
            work.warnings.extend(f"{label}: {warning}" for warning in overflows(str(prompt)))
        except PromptSyntaxError:
            pass  # already reported by the input checks

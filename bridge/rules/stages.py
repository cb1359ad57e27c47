"""The rules engine's stages, in the order they run. Each takes the translation in progress and its enabled rules.

networks   SD1 LoRA/hypernetwork tags and embeddings: removed with a warning, kept, or mapped (F-NETWORKS)
phrase     magic words kept/dropped/rephrased and artist names rewritten, in one pass over the phrases
emphasis   nested brackets flattened to one explicit weight, weights moved toward 1.0 (F-EMPHASIS)
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
from collections import Counter
from functools import lru_cache
from typing import TYPE_CHECKING

from bridge.rules.artists import compose_style
from bridge.rules.phrases import (
    DROP,
    END_MARKS,
    KEEP,
    Item,
    Phrase,
    PhraseSet,
    Said,
    Words,
    containers,
    edit_phrases,
    fold_accents,
    normalize,
)
from bridge.syntax import Emphasis, NetworkTag, Prompt, PromptSyntaxError, Text, escape, format_weight, parse, render

if TYPE_CHECKING:
    from bridge.rules.engine import Work, _Negative
    from bridge.rules.knowledge import Artist, Rule

__all__ = ["target_size"]


def _has_content(items: list[Item]) -> bool:
    return any(not isinstance(i, str) or i.strip() for i in items)


def _tidy(items: list[Item]) -> list[Item]:
    """Collapse the double spaces a removal leaves and trim the ends of the phrase core."""
    out = [re.sub(r" {2,}", " ", i) if isinstance(i, str) else i for i in items]
    if out and isinstance(out[0], str):
        out[0] = out[0].lstrip()
    if out and isinstance(out[-1], str):
        out[-1] = out[-1].rstrip()
    return [i for i in out if i != ""]


def _prompts(work: Work) -> tuple[tuple[str, Prompt], ...]:
    return (("prompt", work.prompt), ("negative prompt", work.negative))


# --------------------------------------------------------------------------------------------------------------------
# networks


def networks(work: Work, rules: list[Rule]) -> None:
    rule = rules[-1]
    pattern = work.plan.embedding_pattern
    for label, prompt in _prompts(work):
        text = str(prompt)
        if "<" in text:
            for container in containers(prompt):
                edit_phrases(container, lambda p, label=label: _tags(p, work, rule, label))
        lowered = text.lower()
        if pattern is not None and any(map(lowered.__contains__, work.plan.embedding_names)) and pattern.search(text):
            for container in containers(prompt):
                edit_phrases(container, lambda p, label=label: _embeddings(p, work, rule, label))


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
                                 f"{target}; map it with --network-map or keep it with --keep-networks")
            if out and isinstance(out[-1], str):
                out[-1] = out[-1].rstrip()
    return _tidy(out) if _has_content(out) else DROP


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
                             f"{target}; map it with --network-map or keep it with --keep-networks")
        return ""

    changed = _tidy([pattern.sub(swap, t) if isinstance(t, str) else t for t in texts])
    if not _has_content(changed):
        return DROP
    if group is not None:
        group.children = [Text(i) if isinstance(i, str) else i for i in changed]
        return list(phrase.core)
    return changed


# --------------------------------------------------------------------------------------------------------------------
# phrase: magic words and artists

STYLE_SLOT = "\x00style\x00"  # where the artists' one style phrase goes, until it is composed


class _Phrases:
    """One run of the phrase stage over a prompt: magic words and artist names, each phrase in turn."""

    def __init__(self, work: Work, rules: list[Rule], *, grow: bool):
        self.work, self.plan, self.grow = work, work.plan, grow
        self.artist_rule = next((r for r in rules if r.kind == "artist"), None)
        self.present: Said | None = None  # what the prompt says, on the first replacement
        self.other_media: Counter[str] | None = None
        self.named: dict[str, Artist] = {}  # every artist the prompt names, in order (by name)
        self.described: dict[str, Artist] = {}  # those whose style is described
        self.slot_placed = False
        self.grew = False  # a replacement or the style slot added words
        self.spills: bool | None = None  # whether the prompt with its style phrase spills, once it is filled

    def edit(self, phrase: Phrase) -> list[Item] | None:
        core = phrase.core
        if len(core) == 1 and type(core[0]) is str and "\\" not in core[0]:
            new = self.piece(core[0])
            return KEEP if new is None else (DROP if new == "" else [escape(new)])
        plain = phrase.plain
        if plain is None:
            return self.mixed(phrase)
        rule = self.plan.magic(plain)
        if rule is not None:
            new = self.magic(rule, phrase.text, plain)
            return KEEP if new is None else (DROP if new == "" else phrase.replaced(new))
        return self.mixed(phrase)

    def mixed(self, phrase: Phrase) -> list[Item] | None:
        """A phrase of text and brackets or tags ("by (X) and Y and Z"): the names inside brackets are rewritten when
        the stage visits the brackets' own phrases; the names the bridge replaces go from the text around them."""
        if not self.plan.artists:
            return KEEP
        core, changed = list(phrase.core), False
        for i, item in enumerate(core):
            if type(item) is not str or "\\" in item:
                continue
            stripped = self.plan.artists.strip_replaced(item)
            if stripped is None:
                continue
            core[i], edits = stripped
            changed = True
            for edit in edits:
                self.named.setdefault(edit.artist.name, edit.artist)
                self.described.setdefault(edit.artist.name, edit.artist)
                self.work.record(edit.artist.rule_id, edit.written, edit.after, edit.reason, edit.artist.fact)
        if not changed:
            return KEEP
        if not self.slot_placed:
            self.slot_placed = self.grew = True
            core.append(", " + STYLE_SLOT)
        return _tidy(core) if _has_content(core) else DROP

    def piece(self, text: str) -> str | None:
        """The new text of one plain phrase (escapes aside): None to keep it, "" to drop it."""
        rule = self.plan.magic(text)
        if rule is not None:
            return self.magic(rule, text, normalize(text))
        if not self.plan.artists:
            return None
        return self.artists(text, remember=True)

    def magic(self, rule: Rule, before: str, plain: str) -> str | None:
        action = rule.params["action"]
        work = self.work
        if action == "drop":
            work.record(rule, before, "")
            return ""
        if action != "replace":
            return None
        replacement = rule.params["replacement"]
        if self.present is None:  # the user's words
            self.present = Said(work.user_words[1])
        words = PhraseSet.fixed_words(replacement)
        own = tuple(PhraseSet.words(plain))
        inside = sum(own[i:i + len(words)] == words for i in range(len(own) - len(words) + 1))
        # the phrase being replaced may say the replacement itself ("trending on artstation" -> "artstation"): then
        # the question is whether the rest of the prompt says it too
        if self.present.count(words) > inside if inside else self.present.says(words):
            work.record(rule, before, "", f"{rule.reason} (the prompt already says {replacement!r})")
            return ""
        clash = self.medium_clash(replacement, plain)
        if clash is not None:
            work.record(rule, before, "", f"{rule.reason} (dropped, not replaced: {replacement!r} names a medium and "
                                          f"the prompt asks for another, {clash!r})")
            return ""
        if not self.grow and _count_tokens(replacement) > _count_tokens(plain):
            work.record(rule, before, "", f"{rule.reason} (dropped, not replaced: {replacement!r} would make A1111 "
                                          "split a prompt that fitted its 75-token chunks)")
            return ""
        self.present.add(words)
        self.grew = True
        work.record(rule, before, replacement)
        return replacement

    def medium_clash(self, replacement: str, plain: str) -> str | None:
        """A medium word of the prompt (outside this phrase) that the replacement's medium would fight, if any."""
        media = self.plan.media
        theirs = media.find(replacement.lower())
        if not theirs:
            return None
        family = self.plan.medium_family
        if self.other_media is None:  # how often the prompt names each medium word
            self.other_media = Counter(media.find(self.work.user_words[1]))
        own = Counter(media.find(plain))
        families = {family[m] for m in theirs}
        return next((m for m, n in self.other_media.items() if n > own[m] and family[m] not in families), None)

    def artists(self, text: str, remember: bool = False) -> str | None:
        rewrite = self.plan.artists.rewrite_text(text)
        for artist in rewrite.named:
            self.named.setdefault(artist.name, artist)
        if rewrite.text is None:
            if remember and not rewrite.named:
                self.plan.unchanged_phrases.remember(text)
            return None
        for edit in rewrite.edits:
            self.described.setdefault(edit.artist.name, edit.artist)
            self.work.record(edit.artist.rule_id, edit.written, edit.after, edit.reason, edit.artist.fact)
        new = rewrite.text
        rule = self.plan.magic(new) if new else None
        if rule is not None:  # what is left is a magic word: "trending on artstation by X" -> "trending on artstation"
            magic = self.magic(rule, new, normalize(new))
            new = new if magic is None else magic
        only_marks = not new.strip(END_MARKS)
        if not rewrite.edits or self.slot_placed:
            return "" if only_marks else new  # nothing but a closing quote left: the phrase goes
        self.slot_placed = self.grew = True
        if only_marks:
            return STYLE_SLOT + new  # only a closing quote or full stop is left: "by X.”" -> "<style>.”"
        return new + ", " + STYLE_SLOT


def phrases(work: Work, rules: list[Rule]) -> None:
    before, changes = str(work.prompt), len(work.changes)
    run = _phrase_pass(work, rules, grow=True)
    if run.spills if run.spills is not None else run.grew and _spills(work):
        # Even with no style phrase, the replacements make A1111 split a prompt that fitted: do it again, dropping
        # the tags whose replacement is longer.
        work.prompt, work.changes[changes:] = parse(before), []
        run = _phrase_pass(work, rules, grow=False)
    work.artist_media = [a.medium for a in run.named.values() if a.medium]


def _phrase_pass(work: Work, rules: list[Rule], *, grow: bool) -> _Phrases:
    run = _Phrases(work, rules, grow=grow)
    # plain text already seen to need no change is skipped: libraries repeat their phrases
    touched = {id(container) for container in containers(work.prompt)
               if edit_phrases(container, run.edit, work.plan.unchanged_phrases)}
    touched.difference_update(id(clause.children) for clause in work.prompt.clauses)
    _prune_emptied_groups(work.prompt, touched)
    if run.slot_placed:
        run.spills = _fill_style_slot(work, run)
    return run


def _fill_style_slot(work: Work, run: _Phrases) -> bool:
    """Compose the one style phrase and put it where the first described artist was, as long as it fits: trimmed
    item by item (lowest priority first) while the prompt would need more 75-token chunks than the user's. Returns
    whether the prompt still does with no style phrase at all (the replacements' doing)."""
    plan = work.plan
    text = str(work.prompt)
    folded = fold_accents(text.replace(STYLE_SLOT, ",")).lower()
    words = PhraseSet.words(folded)
    style = compose_style(run.described.values(), words,
                          media=plan.media, families=plan.medium_family, subjects=plan.subjects,
                          own_palette=plan.own_palette, own_look=plan.own_look,
                          budget=plan.style_budget, count=_count_tokens)
    items = list(style.items)
    while True:
        candidate = _with_style(text, ", ".join(items))
        spills = _spills(work, candidate)
        if not spills or not items:
            break
        style.left_out.append((items.pop(), "A1111 would have to split a prompt that fitted its 75-token chunks"))
    work.prompt = parse(candidate)
    names = ", ".join(run.described)
    by_why: dict[str, list[str]] = {}
    for item, why in style.left_out:
        by_why.setdefault(why, []).append(repr(item))
    left_out = "; ".join(f"{', '.join(left)} ({why})" for why, left in by_why.items())
    reason = (f"one style phrase for {names}: what their names stood for in SD1, merged"
              + (f" (left out: {left_out})" if left_out else ""))
    rule = run.artist_rule
    work.record(rule.id if rule else "artists", "", ", ".join(items), reason, rule.fact if rule else "F-ARTISTS")
    return spills


def _with_style(text: str, style: str) -> str:
    """``text`` with the style slot filled, or taken out with its separator when there is no style."""
    if style:
        return text.replace(STYLE_SLOT, escape(style), 1)
    # (rare: these patterns are compiled on first use, not at import)
    at, end = text.index(STYLE_SLOT), text.index(STYLE_SLOT) + len(STYLE_SLOT)
    while True:  # brackets around nothing but the slot go with it: "(by X:1.2)" leaves no "()"
        before = re.search(r"(?<!\\)[(\[][ \t]*$", text[:at])
        after = re.match(r"[ \t]*(?::[ \t]*[\d.]+[ \t]*)?[)\]]", text[end:])
        if before is None or after is None:
            break
        at, end = before.start(), end + after.end()
    after = re.match(r"[ \t]*[,.;!?|+][ \t]*", text[end:])
    if after is not None:
        return text[:at] + text[end + after.end():]
    before = re.search(r"[ \t]*[,.;!?|+]?[ \t]*$", text[:at])
    return text[: before.start()] + text[end:]


@lru_cache(maxsize=1 << 12)  # the knowledge's facets and replacements come back prompt after prompt
def _count_tokens(text: str) -> int:
    from bridge.tokens import count_tokens

    return count_tokens(text)


def _spills(work: Work, text: str | None = None) -> bool:
    """Whether the prompt (or ``text``) needs more of A1111's 75-token chunks than the user's prompt did."""
    from bridge.tokens import chunk_count

    try:
        chunks = chunk_count(str(work.prompt) if text is None else text)
    except PromptSyntaxError:
        return False
    return chunks > 1 and work.user_chunks is not None and chunks > work.user_chunks


def _prune_emptied_groups(prompt: Prompt, touched: set[int]) -> None:
    """A group the phrase edits emptied ("(8k, 4k)", "(( (wlop) ))") goes too, and a phrase left with nothing else
    goes with its comma; groups that were empty in the user's prompt stay. ``touched``: the ids of the groups' child
    lists that the phrase edits changed."""
    if not touched:
        return
    emptied: set[int] = set()
    groups = [node for container in containers(prompt) for node in container if isinstance(node, Emphasis)]
    for group in reversed(groups):  # inner groups come after outer ones: decided first (no recursion: 10,000 deep)
        inner = [id(c) in emptied for c in group.children if isinstance(c, Emphasis)]
        blank = all(isinstance(c, Emphasis) and id(c) in emptied or isinstance(c, Text) and not c.text.strip()
                    for c in group.children)
        if blank and (id(group.children) in touched or any(inner)):
            emptied.add(id(group))
    if not emptied:
        return

    def edit(phrase: Phrase) -> list[Item] | None:
        kept: list[Item] = []
        for item in phrase.core:
            if id(item) in emptied:
                continue
            if isinstance(item, str) and kept and isinstance(kept[-1], str):
                kept[-1] += item
            else:
                kept.append(item)
        if len(kept) == len(phrase.core):
            return KEEP
        # "X and (Y) and (Z)" with Y and Z gone: no "and and", no "and" left at either end (rare: the patterns are
        # compiled on first use)
        kept = [re.sub(r"(?i)(?<!\S)(?:and|&)\s+(?=(?:and|&)(?!\S))", "", i) if isinstance(i, str) else i for i in kept]
        if kept and isinstance(kept[-1], str):
            kept[-1] = re.sub(r"(?i)\s*(?<!\S)(?:and|&)\s*$", "", kept[-1])
        if kept and isinstance(kept[0], str):
            kept[0] = re.sub(r"(?i)^\s*(?:and|&)(?!\S)\s*", "", kept[0])
        return _tidy(kept) if _has_content(kept) else DROP

    for container in containers(prompt):
        edit_phrases(container, edit)




# --------------------------------------------------------------------------------------------------------------------
# emphasis


def emphasis(work: Work, rules: list[Rule]) -> None:
    rule = rules[-1]
    toward_one = float(rule.params.get("toward_one", 0.2))
    low, high = (float(x) for x in rule.params.get("keep_outside", [0.0, 3.0]))
    leave_within = float(rule.params.get("leave_within", 0.1))
    for label, prompt in _prompts(work):
        if not prompt.features() & {"emphasis"}:
            continue
        seen: set[int] = set()
        changed = False
        for container in containers(prompt):
            replacements = []
            for i, node in enumerate(container):
                if isinstance(node, Emphasis) and id(node) not in seen:
                    new = _reweighted(node, toward_one, low, high, leave_within, seen, work, label)
                    if new is not None:
                        work.record(rule, render([node]), render(new))
                        replacements.append((i, new))
            for i, new in reversed(replacements):
                container[i:i + 1] = new
                changed = True
        if changed:
            _merge_text(prompt)


def _reweighted(node: Emphasis, toward_one: float, low: float, high: float, leave_within: float, seen: set[int],
                work: Work, label: str) -> list | None:
    """The replacement for a chain of nested groups ``((x))`` → ``(x:1.17)``, or None to leave it."""
    chain = [node]
    while len(chain[-1].children) == 1 and isinstance(chain[-1].children[0], Emphasis):
        chain.append(chain[-1].children[0])
    seen.update(id(g) for g in chain)
    if any(not g.close or (g.open == "[" and g.close != "]") for g in chain):
        return None  # unclosed: A1111 applies it to the rest of the prompt; leave the user's text alone
    inner = chain[-1].children
    if ":" in render(inner):
        return None  # a colon inside could turn into a weight once the brackets change
    try:
        weight = math.prod(g.multiplier for g in chain)
    except PromptSyntaxError:
        return None
    if not (math.isfinite(weight) and low < weight <= high):
        work.warnings.append(f"{label}: weight {weight:g} on {render(inner)[:40]!r} is outside ({low:g}, {high:g}]; "
                             "kept as written")
        return None
    if abs(weight - 1) <= leave_within + 1e-9 and not (len(chain) > 1 and round(weight, 2) == 1.0):
        return None  # one pair of brackets, or a mild weight: often prose "(like this)", and harmless
    new_weight = round(1 + (weight - 1) * (1 - toward_one), 2)
    if len(chain) == 1 and node.explicit_weight is not None and float(node.explicit_weight) == new_weight:
        return None
    if new_weight == 1.0:
        return list(inner)
    return [Emphasis(list(inner), "(", f":{format_weight(new_weight)})")]


def _merge_text(prompt: Prompt) -> None:
    for container in containers(prompt):
        merged: list = []
        for node in container:
            if isinstance(node, Text) and merged and isinstance(merged[-1], Text):
                merged[-1] = Text(merged[-1].text + node.text)
            else:
                merged.append(node)
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
        warning = rule.params.get("warning") or rule.reason
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


def _negative_kind(work: Work, words: Words) -> _Negative | None:
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
    from bridge.tokens import chunk_count

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


def nearest_bucket(width: int, height: int, buckets: list[list[int]]) -> tuple[int, int]:
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
    buckets = rule.params.get("buckets")
    if buckets:
        new = nearest_bucket(width, height, buckets)
        where = f"{work.target.key}: the training bucket nearest {width}x{height}"
    else:
        new = target_size(width, height, work.target.native_size, int(rule.params.get("multiple", 64)))
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
    from bridge.tokens import overflows

    for label, prompt in _prompts(work):
        try:
            work.warnings.extend(f"{label}: {warning}" for warning in overflows(str(prompt)))
        except PromptSyntaxError:
            pass  # already reported by the input checks

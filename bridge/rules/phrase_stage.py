"""The phrase stage: magic words kept, dropped or rephrased, and artist names rewritten, in one pass over the
phrases; then the artists' one style phrase composed (bridge/rules/artists.py) and put where the first of them was.

How it composes its edits:

- Phrases are cut at commas, at ``.`` ``;`` ``!`` ``?`` before a space (not after an initial, an abbreviation or a
  spaced decimal), at ``|`` and ``+`` between spaces, and at ``BREAK`` (bridge/rules/phrases.py); every separator
  the bridge does not touch stays as written.
- Magic words are looked up as written and, when the phrase holds digits, hyphens or punctuation, by their variant
  key. A replacement is dropped when the rest of the prompt already says it, or names a medium of another family.
- Artist names are found after markers, in lists and (the names the bridge replaces) anywhere in run-on text. The
  first described artist leaves a slot; after all phrases, ``compose_style`` fills it once from the facets of every
  described artist, within the style budget.
- What the stage adds never makes A1111 split a prompt that fitted its 75-token chunks: the style phrase is trimmed
  item by item, and if the magic-word replacements alone would spill, the pass runs again with those tags dropped.

Time: on SD1 keyword soups the edits cost about 100 us a prompt and the style phrase with its spill check about 60;
the chunk check does token work the token stage would otherwise do, and leaves it remembered.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from typing import TYPE_CHECKING

from bridge.rules.artists import compose_style
from bridge.rules.matching import END_MARKS, PhraseSet, Said, fold_accents, normalize
from bridge.rules.phrases import DROP, KEEP, Chains, Item, Phrase, containers, edit_phrases, has_content, tidy
from bridge.syntax import Emphasis, Prompt, PromptSyntaxError, Text, escape, parse

if TYPE_CHECKING:
    from bridge.rules.knowledge import Artist, Rule
    from bridge.rules.work import Work

__all__ = ["STYLE_SLOT", "phrases"]


STYLE_SLOT = "\x00style\x00"  # where the artists' one style phrase goes, until it is composed


class _Phrases:
    """One run of the phrase stage over a prompt: magic words and artist names, each phrase in turn."""

    def __init__(self, work: Work, *, grow: bool):
        self.work, self.plan, self.grow = work, work.plan, grow
        self.present: Said | None = None  # what the prompt says, on the first replacement
        self.other_media: Counter[str] | None = None
        self.named: dict[str, Artist] = {}  # every artist the prompt names, in order (by name)
        self.described: dict[str, Artist] = {}  # those whose style is described
        self.slot_placed = False
        self.grew = False  # a replacement or the style slot added words
        self.spills: bool | None = None  # whether the prompt with its style phrase spills, once it is filled
        self.looked_up: dict[str, Rule | None] = {}  # plain words of groups -> their magic-word rule

    def edit(self, phrase: Phrase) -> list[Item] | None:
        core = phrase.core
        if len(core) == 1 and type(core[0]) is str and "\\" not in core[0]:
            new = self.piece(core[0])
            return KEEP if new is None else (DROP if new == "" else [escape(new)])
        plain = phrase.plain
        if plain is None:
            return self.mixed(phrase)
        if plain not in self.looked_up:  # every level of ((((x)))) asks for the same words: looked up once
            self.looked_up[plain] = self.plan.magic(plain)
        rule = self.looked_up[plain]
        if rule is not None:
            if rule.params.action not in ("drop", "replace"):
                return KEEP  # as magic() decides, without rendering the phrase (a deep group's text is long)
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
        return tidy(core) if has_content(core) else DROP

    def piece(self, text: str) -> str | None:
        """The new text of one plain phrase (escapes aside): None to keep it, "" to drop it."""
        rule = self.plan.magic(text)
        if rule is not None:
            if rule.params.action not in ("drop", "replace"):  # a tag SD2 still reads: kept wherever it stands
                self.plan.unchanged_phrases.put(text, True)
                return None
            return self.magic(rule, text, normalize(text))
        if not self.plan.artists:
            return None
        return self.artists(text, remember=True)

    def magic(self, rule: Rule, before: str, plain: str) -> str | None:
        action = rule.params.action
        work = self.work
        if action == "drop":
            work.record(rule, before, "")
            return ""
        if action != "replace":
            return None
        replacement = rule.params.replacement
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
                self.plan.unchanged_phrases.put(text, True)
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
    run = _phrase_pass(work, grow=True)
    if run.spills if run.spills is not None else run.grew and _spills(work):
        # Even with no style phrase, the replacements make A1111 split a prompt that fitted: do it again, dropping
        # the tags whose replacement is longer.
        work.prompt, work.changes[changes:] = parse(before), []
        run = _phrase_pass(work, grow=False)
    work.artist_media = [a.medium for a in run.named.values() if a.medium]


def _phrase_pass(work: Work, *, grow: bool) -> _Phrases:
    run = _Phrases(work, grow=grow)
    # plain text already seen to need no change is skipped: libraries repeat their phrases
    chains = Chains()
    touched = {id(container) for container in containers(work.prompt)
               if edit_phrases(container, run.edit, work.plan.unchanged_phrases, chains)}
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
                          own=plan.own, genres=plan.genres,
                          budget=plan.style_budget, count=_count_tokens)
    items = list(style.items)
    while True:
        candidate = _with_style(text, ", ".join(items))
        spills = _spills(work, candidate)
        if not spills or not items:
            break
        style.left_out.append((items.pop(), "A1111 would have to split a prompt that fitted its 75-token chunks"))
    if not (items and _fill_slot(work.prompt, escape(", ".join(items)))):
        work.prompt = parse(candidate)
    names = ", ".join(run.described)
    by_why: dict[str, list[str]] = {}
    for item, why in style.left_out:
        by_why.setdefault(why, []).append(repr(item))
    left_out = "; ".join(f"{', '.join(left)} ({why})" for why, left in by_why.items())
    reason = (f"one style phrase for {names}: what their names stood for in SD1, merged"
              + (f" (left out: {left_out})" if left_out else ""))
    rule = plan.artist_rule
    work.record(rule.id if rule else "artists", "", ", ".join(items), reason, rule.fact if rule else "F-ARTISTS")
    return spills


def _fill_slot(prompt: Prompt, style: str) -> bool:
    """Put ``style`` (escaped) in the text node that holds the style slot, as parsing the filled text would; False
    when no text node holds it."""
    for container in containers(prompt):
        for node in container:
            if type(node) is Text and STYLE_SLOT in node.text:
                node.text = node.text.replace(STYLE_SLOT, style, 1)
                return True
    return False


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
    from bridge.chunks import chunk_count

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
        return tidy(kept) if has_content(kept) else DROP

    for container in containers(prompt):
        edit_phrases(container, edit)

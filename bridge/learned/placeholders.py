"""Protected syntax: the parts of a prompt a learned bridge must not rewrite, swapped for placeholders around it.

A seq2seq model rewrites words well and brackets badly: it drops a ``)``, turns ``1.3`` into ``1.2`` or invents a
``BREAK``. So the model never sees that syntax. :func:`protect` replaces each piece of it by a placeholder token,
:func:`check` verifies the model's output kept every placeholder once and in order, and :func:`restore` puts the
syntax back:

    >>> p = protect("a (castle:1.3) on a hill BREAK [day:night:0.5]")
    >>> p.text
    'a <extra_id_0>castle<extra_id_1> on a hill <extra_id_2> <extra_id_3>'
    >>> p.slots["<extra_id_1>"], p.slots["<extra_id_3>"]
    (':1.3)', '[day:night:0.5]')
    >>> restore("a <extra_id_0>stone castle<extra_id_1> on a hill <extra_id_2> <extra_id_3>", p)
    'a (stone castle:1.3) on a hill BREAK [day:night:0.5]'
    >>> check("a <extra_id_0>castle on a hill <extra_id_3>", p)
    ["<extra_id_1> (':1.3)') is missing", "<extra_id_2> ('BREAK') is missing"]

What is protected (found with :mod:`bridge.syntax`, the project's one parser):

- emphasis brackets, with their weight: ``(castle:1.3)`` → ``<0>castle<1>``, ``[fog]`` → ``<0>fog<1>``; the words
  inside stay translatable, the brackets and the weight do not (the learned bridge keeps weights as written);
- prompt editing ``[a:b:0.5]`` and alternation ``[a|b]``, whole;
- ``BREAK``, the ``AND`` between clauses and a clause weight (``a cat :1.2``);
- extra-network tags ``<lora:name:0.8>`` and embedding names the user keeps or maps. The network policy is the rules
  bridge's own (its ``networks`` stage runs here): tags and embeddings it removes are taken out before the model sees
  the prompt, with the same warnings and changes;
- escaped brackets (``\\(``); characters T5's vocabulary lacks (``<``, ``>``, ``{``, ``}``: it decodes them as
  ``⁇``), with dynamic-prompt choices ``{red|blue}`` whole; literal text that looks like a placeholder or like the
  ``negative:`` the text format splits on. So every prompt round-trips: ``restore(protect(p).text, protect(p)) == p``
  when nothing is removed.

Neighbouring pieces of syntax with no text between them share one placeholder (``((`` is one), so a prompt uses few.
Placeholders are T5's sentinel tokens ``<extra_id_N>``: one token each in the T5 family's vocabularies (t5, flan-t5,
mt5, byt5), which keeps them intact; ``MAX_SLOTS`` of them exist. A tokenizer built for a tiny test model adds them as
special tokens.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bridge.syntax import Alternation, Break, Editing, NetworkTag, Text, parse, walk_text

if TYPE_CHECKING:
    from collections.abc import Iterable

    from bridge.rules import RulesTranslator
    from bridge.translation import Change

__all__ = ["MAX_SLOTS", "PLACEHOLDER_PATTERN", "Protected", "TooManySlotsError", "align", "check", "placeholder",
           "policy_rules", "protect", "restore"]

MAX_SLOTS = 100  # T5 vocabularies hold 100 sentinels, <extra_id_0> ... <extra_id_99>
PLACEHOLDER_PATTERN = re.compile(r"<extra_id_(\d+)>")
# Literal text protected like syntax: placeholder look-alikes, the "negative:" of the text format (bridge.learned.textformat),
# escapes such as "\(", dynamic-prompt choices "{a|b}", and characters T5 cannot write.
_LITERAL = re.compile(r"<extra_id_\d+>|negative:|\\.?|\{[^{}]*\}|[{}<>]", re.DOTALL)


def placeholder(index: int) -> str:
    """The placeholder token number ``index``: ``placeholder(3) == "<extra_id_3>"``."""
    return f"<extra_id_{index}>"


class TooManySlotsError(ValueError):
    """A prompt with more separate pieces of protected syntax than there are placeholders."""


@dataclass
class Protected:
    """A prompt with its protected syntax swapped for placeholders.

    ``text`` is what the model reads; ``slots`` maps each placeholder to the syntax it stands for, in order of
    appearance; ``warnings`` and ``changes`` come from the network policy (removed or mapped networks).
    """

    text: str
    slots: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    keys: list[tuple] = field(default_factory=list, repr=False)  # what each slot is (weights left out), for align()


# One piece of a prompt: (None, text) for translatable text, or (keys, syntax) for protected syntax.
_Piece = tuple[tuple | None, str]


def protect(
    prompt: str,
    *,
    networks: str = "remove",
    network_map: dict[str, str] | None = None,
    embeddings: Iterable[str] = (),
    disable: Iterable[str] = (),
    source: str = "sd15",
    target: str = "sd2",
    label: str = "prompt",
    start: int = 0,
) -> Protected:
    """Apply the rules bridge's network policy to ``prompt``, then swap its protected syntax for placeholders.

    ``networks``, ``network_map``, ``embeddings`` and ``disable`` mean what they mean in
    :class:`~bridge.translation.TranslationOptions`; ``source``/``target`` pick the rules bridge whose policy and
    known embedding names apply. ``label`` names the prompt in warnings ("prompt" or "negative prompt"). Numbering
    starts at ``start``, so a prompt and its negative can share one model input. Raises :class:`TooManySlotsError`
    past ``MAX_SLOTS``.
    """
    from bridge.translation import TranslationOptions

    options = TranslationOptions(networks=networks, network_map=dict(network_map or {}),
                                 embeddings=tuple(embeddings), disable=tuple(disable))
    text, warnings, changes, kept_names = _network_policy(prompt, options, policy_rules(source, target), label)
    pieces = _pieces(text, kept_names)
    slots: dict[str, str] = {}
    keys: list[tuple] = []
    out: list[str] = []
    for key, piece in pieces:
        if key is None:
            out.append(piece)
            continue
        token = placeholder(start + len(slots))
        slots[token] = piece
        keys.append(key)
        out.append(token)
    if start + len(slots) > MAX_SLOTS:
        raise TooManySlotsError(f"{label} has {len(slots)} separate pieces of protected syntax (brackets, BREAK, AND, "
                                f"tags) from placeholder {start}; at most {MAX_SLOTS} placeholders exist")
    return Protected("".join(out), slots, warnings, changes, keys)


def restore(text: str, protected: Protected) -> str:
    """Put the protected syntax back in place of its placeholders (unknown placeholders are left as they are)."""
    return PLACEHOLDER_PATTERN.sub(lambda m: protected.slots.get(m.group(0), m.group(0)), text)


def check(text: str, protected: Protected) -> list[str]:
    """The problems of a model output: a placeholder missing, repeated, invented or out of order. Empty when intact.

    Text between placeholders may be rewritten and moved freely; the protected syntax must come back whole, once each,
    in the order it was given (reordered placeholders could close a bracket before opening it).
    """
    found = [m.group(0) for m in PLACEHOLDER_PATTERN.finditer(text)]
    counts = Counter(found)
    problems = []
    for token, syntax in protected.slots.items():
        if counts[token] == 0:
            problems.append(f"{token} ({syntax!r}) is missing")
        elif counts[token] > 1:
            problems.append(f"{token} ({syntax!r}) appears {counts[token]} times")
    problems += [f"{token} is invented (not in the input)" for token in counts if token not in protected.slots]
    if not problems and found != list(protected.slots):
        problems.append(f"protected syntax is out of order: {' '.join(found)}")
    return problems


def align(target: str, protected: Protected, *, networks: str = "remove", network_map: dict[str, str] | None = None,
          embeddings: Iterable[str] = (), source: str = "sd15", target_model: str = "sd2") -> str | None:
    """``target`` (a translation of the prompt behind ``protected``) written with that prompt's placeholders, for
    training; None when ``target`` does not keep every piece of protected syntax once and in order.

    Syntax is matched piece by piece in order; a weight counts as the same piece whatever its value, so a target that
    changed ``(castle:1.3)`` to ``(castle:1.2)`` is taught as keeping ``:1.3)`` (the learned bridge never changes
    protected syntax). Syntax only the target has stays literal text.
    """
    from bridge.translation import TranslationOptions

    options = TranslationOptions(networks=networks, network_map=dict(network_map or {}), embeddings=tuple(embeddings))
    text, _, _, kept_names = _network_policy(target, options, policy_rules(source, target_model), "prompt")
    pieces = _pieces(text, kept_names)
    tokens = list(protected.slots)
    matcher = difflib.SequenceMatcher(None, protected.keys, [k for k, _ in pieces if k is not None], autojunk=False)
    matched = {}  # index among the target's syntax pieces -> the source placeholder it keeps
    for first, target_first, size in matcher.get_matching_blocks():
        for offset in range(size):
            matched[target_first + offset] = tokens[first + offset]
    out: list[str] = []
    slot_index = 0
    for key, piece in pieces:
        if key is None:
            out.append(piece)
        else:
            out.append(matched.get(slot_index, piece))
            slot_index += 1
    aligned = "".join(out)
    return aligned if not check(aligned, protected) else None


# --------------------------------------------------------------------------------------------------------------------
# The network policy: the rules bridge's own networks stage


@functools.cache
def policy_rules(source: str, target: str) -> RulesTranslator:
    """The rules bridge whose network policy applies; pairs without one use the SD1 → SD2 knowledge's policy."""
    from bridge.rules import RulesTranslator
    from bridge.rules.knowledge import RULES_DIR

    try:
        return RulesTranslator.for_models(source, target)
    except ValueError:  # no bridge between the two, or not a rules bridge
        return RulesTranslator.from_file(RULES_DIR / "sd1_to_sd2.toml", source=source, target=target)


def _network_policy(text: str, options, rules: RulesTranslator, label: str
                    ) -> tuple[str, list[str], list[Change], list[str]]:
    """``text`` after the rules bridge's network policy: (text, warnings, changes, embedding names left in it)."""
    done = rules.apply_networks(text, options, negative=label != "prompt")
    return done.text, done.warnings, done.changes, done.embeddings


# --------------------------------------------------------------------------------------------------------------------
# Finding the protected syntax


def _pieces(text: str, names: list[str]) -> list[_Piece]:
    """``text`` as translatable text and protected syntax, neighbouring syntax merged, in the order of
    :func:`bridge.syntax.walk_text` (iterative: deep nesting is fine). ``names`` are embedding names to protect."""
    names_pattern = None
    if names:
        alternatives = "|".join(re.escape(n) for n in sorted(set(names), key=len, reverse=True))
        names_pattern = re.compile(r"(?<![\w.-])(?:" + alternatives + r")(?![\w-])")
    flat: list[tuple[tuple | None, str]] = []
    prompt = parse(text)
    for i, clause in enumerate(prompt.clauses):
        if i:
            flat.append((("and", prompt.separators[i - 1]), prompt.separators[i - 1]))
        whole: list[str] = []  # the text of the editing or alternation being read: protected whole
        depth = 0
        for node, piece, edge in walk_text(clause.children):
            if depth or (edge == 1 and isinstance(node, (Editing, Alternation))):
                whole.append(piece)
                depth += edge
                if not depth:
                    syntax = "".join(whole)
                    flat.append(((type(node).__name__.lower(), syntax), syntax))
                    whole = []
            elif isinstance(node, Text):
                flat += _text_pieces(piece, names_pattern)
            elif isinstance(node, (Break, NetworkTag)):
                flat.append((("break" if isinstance(node, Break) else "network", piece), piece))
            elif edge == 1:  # an emphasis opens
                flat.append((("open", piece), piece))
            elif piece:  # an emphasis closes (unclosed: ""); the weight is not part of the key
                flat.append((("close", piece[-1]), piece))
        if clause.weight_text:
            flat.append((("clause-weight",), clause.weight_text))
    return _merge(flat)


def _text_pieces(raw: str, names: re.Pattern | None) -> list[tuple[tuple | None, str]]:
    out: list[tuple[tuple | None, str]] = []
    pattern = _LITERAL if names is None else re.compile(f"{_LITERAL.pattern}|{names.pattern}", re.DOTALL)
    pos = 0
    for m in pattern.finditer(raw):
        if m.start() > pos:
            out.append((None, raw[pos : m.start()]))
        out.append((("literal", m.group(0)), m.group(0)))
        pos = m.end()
    if pos < len(raw):
        out.append((None, raw[pos:]))
    return out


def _merge(flat: list[tuple[tuple | None, str]]) -> list[_Piece]:
    """Neighbouring syntax pieces become one (its key the tuple of their keys); empty text disappears."""
    merged: list[_Piece] = []
    for key, text in flat:
        if key is None:
            if not text:
                continue
            if merged and merged[-1][0] is None:
                merged[-1] = (None, merged[-1][1] + text)
            else:
                merged.append((None, text))
        elif merged and merged[-1][0] is not None:
            merged[-1] = ((*merged[-1][0], key), merged[-1][1] + text)  # type: ignore[misc]
        else:
            merged.append(((key,), text))
    return merged

"""A1111's side of every conversion, through the one syntax tree (:mod:`bridge.syntax`).

Reading: :func:`a1111_clauses` parses the prompt with :func:`bridge.syntax.parse` and weighs it with
:func:`bridge.syntax.attention`, so every piece of text gets the exact weight A1111 gives it (nesting, unclosed
brackets and all); prompt editing and alternation become literal text, extra-network tags stay tags. Writing:
:func:`a1111_text` writes pieces as A1111's ``(text:weight)``, literal text escaped.
"""

from __future__ import annotations

import re

from bridge.dialects.common import NAMES, Clause, Item, Piece, Warnings, runs, split_space
from bridge.syntax import (
    Alternation,
    Break,
    Editing,
    Emphasis,
    NetworkTag,
    Node,
    Text,
    attention,
    escape,
    format_weight,
    parse,
    render,
)

_PLACEHOLDERS = range(0xE000, 0xF900)  # private-use characters stand in for constructs while attention() runs


def a1111_clauses(text: str, dialect: str, warnings: Warnings) -> list[Clause]:
    """The AND clauses of an A1111 prompt, each as the pieces A1111 weighs (``dialect`` words the warnings)."""
    return [
        Clause(_a1111_items(clause.children, 1.0, dialect, warnings), clause.weight, clause.weight_text.strip())
        for clause in parse(text).clauses
    ]


def _a1111_items(nodes: list[Node], scale: float, dialect: str, warnings: Warnings) -> list[Item]:
    """The pieces of ``nodes`` with the weights A1111 gives them, times ``scale``.

    Prompt editing, alternation and extra-network tags are swapped for placeholder characters, so attention() sees
    the brackets around them and gives each placeholder the multiplier A1111 applies to what it resolves to.
    """
    source = render(nodes)
    free = (chr(c) for c in _PLACEHOLDERS if chr(c) not in source)
    constructs: dict[str, Node] = {}
    stack = [nodes]
    while stack:
        container = stack.pop()
        for i, node in enumerate(container):
            if isinstance(node, Emphasis):
                stack.append(node.children)
            elif isinstance(node, (Editing, Alternation, NetworkTag)):
                placeholder = next(free)
                constructs[placeholder] = node
                container[i] = Text(placeholder)
    split = re.compile("([" + "".join(constructs) + "])") if constructs else None
    items: list[Item] = []
    for piece, weight in attention(render(nodes)):
        weight *= scale
        for part in split.split(piece) if split else [piece]:
            if part in constructs:
                items += _construct_items(constructs[part], weight, dialect, warnings)
            elif part == "BREAK" and weight == -1:
                items.append(Break())
            elif part:
                items.append(Piece(part, weight))
    return items


def _construct_items(node: Node, scale: float, dialect: str, warnings: Warnings) -> list[Item]:
    """Prompt editing and alternation as literal text (their contents weighted as usual); tags as they are."""
    if isinstance(node, NetworkTag):
        return [node]
    target = "compel" if dialect == "compel" else "core ComfyUI"
    raw = render([node])
    if isinstance(node, Editing):
        how = (
            "its .swap() is cross-attention control, which compel itself ignores"
            if dialect == "compel"
            else "two CLIPTextEncode nodes under ConditioningSetTimestepRange do this"
        )
        warnings.add(
            f"prompt editing {raw}: {target} has no prompt editing ({how}); kept as literal text, so the model reads "
            "both prompts at every step"
        )
        items: list[Item] = [Piece("[", scale)]
        if node.before is not None:
            items += [*_a1111_items(node.before, scale, dialect, warnings), Piece(":", scale)]
        return [*items, *_a1111_items(node.after, scale, dialect, warnings), Piece(f":{node.when}]", scale)]
    assert isinstance(node, Alternation)
    warnings.add(
        f"alternation {raw}: {target} has no alternation; kept as literal text, so the model reads every option"
    )
    items = [Piece("[", scale)]
    for i, option in enumerate(node.options):
        items += [Piece("|", scale)] if i else []
        items += _a1111_items(option, scale, dialect, warnings)
    return [*items, Piece("]", scale)]


_OPERATOR_WORD = re.compile(r"\b(?:AND|BREAK)\b")
_ENDS_LIKE_CLAUSE_WEIGHT = re.compile(r":\s*[-+]?(?:\d+\.?|\d*\.\d+)\s*\Z")
_TAG_TEXT = re.compile(r"<\w+:[^>]+>")


def a1111_text(items: list[Item], dialect: str, warnings: Warnings) -> str:
    """Pieces as A1111 text: literal text escaped, every weight explicit, ``(text:weight)``."""
    out: list[str] = []
    for item in runs(items, NAMES[dialect], warnings):
        if not isinstance(item, Piece):
            out.append(item.text)
            continue
        for tag in _TAG_TEXT.findall(item.text):
            warnings.add(f"{tag}: {NAMES[dialect]} reads it as plain text; A1111 loads it as an extra network")
        text = _OPERATOR_WORD.sub(lambda m: m.group().lower(), escape(item.text))
        if item.weight == 1 or not text.strip():
            out.append(text)
        else:
            lead, core, trail = split_space(text)
            out.append(f"{lead}({core}:{format_weight(item.weight)}){trail}")
    last = len(out) - 1
    while last >= 0 and not out[last].strip():
        last -= 1
    if last >= 0 and _ENDS_LIKE_CLAUSE_WEIGHT.search(out[last]) and not out[last].rstrip().endswith((")", ">")):
        lead, core, trail = split_space(out[last])  # "16:9" at the very end would read as an AND weight
        out[last] = f"{lead}({core}:1){trail}"
    return "".join(out)

"""A1111's side of every conversion, through the one syntax tree (:mod:`bridge.syntax`).

Reading: :func:`a1111_clauses` parses the prompt with :func:`bridge.syntax.parse` and weighs it with
:func:`bridge.syntax.attention`, so every piece of text gets the exact weight A1111 gives it (nesting, unclosed
brackets and all); prompt editing and alternation become literal text, extra-network tags stay tags. Writing:
:func:`a1111_text` writes pieces as A1111's ``(text:weight)``, literal text escaped.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

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
    render_head,
)

# Private-use characters: one that the prompt does not hold stands in for constructs while attention() runs. A prompt
# of MAX_PROMPT_LENGTH characters cannot hold them all.
_PLACEHOLDERS = itertools.chain(range(0xE000, 0xF900), range(0xF0000, 0xFFFFE), range(0x100000, 0x10FFFE))
_EXCERPT = 300  # characters of a construct quoted in a warning


def a1111_clauses(text: str, dialect: str, warnings: Warnings) -> list[Clause]:
    """The AND clauses of an A1111 prompt, each as the pieces A1111 weighs (``dialect`` words the warnings). Raises
    :class:`bridge.syntax.PromptSyntaxError` where A1111 rejects the prompt (``(a:1.2.3)``)."""
    used = set(text)
    placeholder = next(chr(c) for c in _PLACEHOLDERS if chr(c) not in used)
    return [
        Clause(_a1111_items(clause.children, dialect, warnings, placeholder), clause.weight,
               clause.weight_text.strip())
        for clause in parse(text).clauses
    ]


def _a1111_items(nodes: list[Node], dialect: str, warnings: Warnings, placeholder: str) -> list[Item]:
    """The pieces of ``nodes`` with the weights A1111 gives them.

    Prompt editing and alternation become literal text whose parts are weighed the same way, each scaled by the
    weight of the brackets around the construct; nested ones are taken from a stack, not by recursion.
    """
    items: list[Item] = []
    stack: list[Iterator] = [iter(_weighed(nodes, 1.0, placeholder))]
    while stack:
        for entry in stack[-1]:
            if isinstance(entry, tuple):  # (editing or alternation, the weight around it): its parts come next
                stack.append(_construct_parts(*entry, dialect, warnings, placeholder))
                break
            items.append(entry)
        else:
            stack.pop()
    return items


def _weighed(nodes: list[Node], scale: float, placeholder: str) -> list[Item | tuple[Node, float]]:
    """The pieces of ``nodes`` with A1111's weights times ``scale``; prompt editing and alternation as (node, weight).

    Editing, alternation and extra-network tags are swapped for ``placeholder``, so attention() sees the brackets
    around them and gives each the multiplier A1111 applies to what it resolves to; attention() keeps the order, so
    the n-th placeholder in its pieces is the n-th construct.
    """
    constructs = _swap_constructs(nodes, placeholder)
    found = iter(constructs)
    out: list[Item | tuple[Node, float]] = []
    for piece, weight in attention(render(nodes)):
        weight *= scale
        parts = piece.split(placeholder) if constructs else [piece]
        for i, part in enumerate(parts):
            if i:
                node = next(found)
                out.append(node if isinstance(node, NetworkTag) else (node, weight))
            if part == "BREAK" and weight == -1:
                out.append(Break())
            elif part:
                out.append(Piece(part, weight))
    return out


def _swap_constructs(nodes: list[Node], placeholder: str) -> list[Node]:
    """Put ``placeholder`` in place of each editing, alternation and tag of ``nodes`` (inside brackets too, not
    inside the constructs); return them in the order of the text."""
    found: list[Node] = []
    stack = [(nodes, 0)]
    while stack:
        container, i = stack.pop()
        while i < len(container):
            node = container[i]
            if isinstance(node, Emphasis):
                stack.append((container, i + 1))
                stack.append((node.children, 0))
                break
            if isinstance(node, (Editing, Alternation, NetworkTag)):
                found.append(node)
                container[i] = Text(placeholder)
            i += 1
    return found


def _construct_parts(node: Node, scale: float, dialect: str, warnings: Warnings,
                     placeholder: str) -> Iterator[Item | tuple[Node, float]]:
    """Prompt editing and alternation as literal text (their contents weighted as usual)."""
    target = "compel" if dialect == "compel" else "core ComfyUI"
    raw, whole = render_head([node], _EXCERPT)
    raw += "" if whole else "…"
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
        yield Piece("[", scale)
        if node.before is not None:
            yield from _weighed(node.before, scale, placeholder)
            yield Piece(":", scale)
        yield from _weighed(node.after, scale, placeholder)
        yield Piece(f":{node.when}]", scale)
        return
    assert isinstance(node, Alternation)
    warnings.add(
        f"alternation {raw}: {target} has no alternation; kept as literal text, so the model reads every option"
    )
    yield Piece("[", scale)
    for i, option in enumerate(node.options):
        if i:
            yield Piece("|", scale)
        yield from _weighed(option, scale, placeholder)
    yield Piece("]", scale)


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

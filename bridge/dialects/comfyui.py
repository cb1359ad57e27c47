"""ComfyUI's prompt weighting (core CLIPTextEncode), to and from A1111.

ComfyUI, as :func:`comfy_weights` reads it (``comfy/sd1_clip.py``): ``(x)`` multiplies by 1.1, so ``((x))`` is 1.21;
``(x:w)`` sets the weight to ``w`` whatever the brackets around it give, so ``((x:1.5))`` is 1.5 and ``((x:1.5):2)``
is 1.5 too. The weight is the text after the last ``:`` when Python's ``float`` accepts it and the ``:`` is not
first. ``[ ]`` are plain text; ``\\(`` ``\\)`` are the only escapes (a backslash before anything else is a
backslash). Brackets are matched by depth: after a stray ``)`` brackets stay literal until the depth is back to zero;
an unclosed ``(`` is literal text. Core ComfyUI has no prompt editing, alternation, BREAK, AND or extra-network tags;
those are nodes (ConditioningSetTimestepRange, ConditioningConcat, ConditioningCombine, LoraLoader).
"""

from __future__ import annotations

from bridge.dialects.a1111 import a1111_clauses, a1111_text
from bridge.dialects.common import NAMES, Clause, Converted, Item, Piece, Warnings, runs, split_space
from bridge.syntax import Break, NetworkTag, format_weight

COMFY_ROUND = 1.1  # ComfyUI: each ( ) multiplies by 1.1 unless it carries its own :weight


def from_a1111(text: str) -> Converted:
    """Write an A1111 prompt as ComfyUI, each piece with the weight A1111 gives it."""
    warnings = Warnings()
    return Converted(_write_comfy(a1111_clauses(text, "comfyui", warnings), warnings), list(warnings))


def to_a1111(text: str) -> Converted:
    """Read a ComfyUI prompt and write it as A1111, each piece with the weight ComfyUI gives it."""
    warnings = Warnings()
    pieces: list[Item] = [Piece(piece, weight) for piece, weight in comfy_weights(text)]
    return Converted(a1111_text(pieces, "comfyui", warnings), list(warnings))


def comfy_weights(text: str) -> list[tuple[str, float]]:
    """The (text, weight) segments ComfyUI's CLIPTextEncode tokenizes for ``text`` (see the module docstring).

    >>> comfy_weights("a ((b:1.5)) ((c)) [d] \\\\(e\\\\)")
    [('a ', 1.0), ('b', 1.5), (' ', 1.0), ('c', 1.2100000000000002), (' [d] (e)', 1.0)]
    """
    out: list[tuple[str, float]] = []
    stack = [(iter(_comfy_segments(_comfy_protect(text))), 1.0)]
    while stack:
        segments, weight = stack[-1]
        segment = next(segments, None)
        if segment is None:
            stack.pop()
        elif len(segment) >= 2 and segment[0] == "(" and segment[-1] == ")":
            inner, inner_weight = segment[1:-1], weight * COMFY_ROUND
            colon = inner.rfind(":")
            if colon > 0:
                try:
                    inner_weight = float(inner[colon + 1 :])
                    inner = inner[:colon]
                except ValueError:
                    pass
            stack.append((iter(_comfy_segments(inner)), inner_weight))
        else:
            out.append((_comfy_unprotect(segment), weight))
    return out


_COMFY_ESCAPES = (("\\)", "\0\1"), ("\\(", "\0\2"))  # ComfyUI's own stand-ins for escaped brackets


def _comfy_protect(text: str) -> str:
    for escaped, stand_in in _COMFY_ESCAPES:
        text = text.replace(escaped, stand_in)
    return text


def _comfy_unprotect(text: str) -> str:
    for escaped, stand_in in _COMFY_ESCAPES:
        text = text.replace(stand_in, escaped[1])
    return text


def _comfy_segments(text: str) -> list[str]:
    """Split at depth-0 brackets: plain runs and whole ``( … )`` groups, as ComfyUI's parse_parentheses does."""
    segments: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            if depth == 0 and current:
                segments.append("".join(current))
                current = []
            current.append(char)
            depth += 1
        elif char == ")":
            depth -= 1
            current.append(char)
            if depth == 0:
                segments.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        segments.append("".join(current))
    return segments


def _write_comfy(clauses: list[Clause], warnings: Warnings) -> str:
    if len(clauses) > 1:
        warnings.add(
            "AND: core ComfyUI has no AND (composable diffusion: encode each part and join them with "
            "ConditioningCombine, or ConditioningAverage for weights); kept as the plain word AND"
            + (", clause weights dropped" if any(c.weight_text for c in clauses) else "")
        )
    elif clauses[0].weight_text:
        warnings.add(f"AND weight {clauses[0].weight_text}: ComfyUI has no per-prompt guidance weight; dropped")
    return " AND ".join(_comfy_text(clause.items, warnings).strip() for clause in clauses)


def _comfy_text(items: list[Item], warnings: Warnings) -> str:
    out = ""
    pending_break = False
    for item in runs(items, NAMES["comfyui"], warnings):
        if isinstance(item, NetworkTag):
            strength = f" (strength {item.args[0]})" if item.args else ""
            warnings.add(
                f"{item.text}: ComfyUI reads extra-network tags as plain text; removed, load it with a "
                f"{'LoraLoader' if item.kind in ('lora', 'lyco') else 'loader'} node{strength}"
            )
            continue
        if isinstance(item, Break):
            warnings.add(
                "BREAK: core ComfyUI has no BREAK (encode each chunk with its own CLIPTextEncode and join them with "
                "ConditioningConcat); removed, the parts are joined with ', '"
            )
            pending_break = True
            continue
        text = item.text.replace("(", "\\(").replace(")", "\\)")
        if item.weight != 1 and text.strip():
            lead, core, trail = split_space(text)
            text = f"{lead}({core}:{format_weight(item.weight)}){trail}"
            if out.endswith("\\") and not lead:
                text = " " + text  # a literal backslash must not escape the bracket
        if pending_break and text.strip():
            left, text = out.rstrip(), text.lstrip()
            if left.endswith(",") and text.startswith(","):
                text = text[1:].lstrip()
            out = left + ("" if not left else " " if left.endswith(",") or text.startswith(",") else ", ")
            pending_break = False
        out += text
    return out.rstrip() if pending_break else out

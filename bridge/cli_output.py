"""translate-prompt's input and output: stdin read line by line, the dialects in and out, then what it writes
(text, A1111 infotext and JSON records, word diffs, colour, warning summaries).

Kept apart from bridge/cli.py (arguments, the run) so each stays readable; it imports only re at module level.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from collections import Counter

COLORS = ("auto", "always", "never")
_RECIPE_FIELDS = ("width", "height", "steps", "cfg_scale", "sampler", "seed", "model")


class InputError(Exception):
    """A file that cannot be read or written: exit 1."""


class UnreadablePrompt(Exception):
    """A prompt the --input-dialect cannot read: kept as written with a warning, as A1111 keeps a prompt it rejects."""


# What a dialect's reader or writer raises on a malformed prompt: PromptSyntaxError (a ValueError), a number no float
# holds (OverflowError), nesting deeper than Python goes.
_DIALECT_ERRORS = (ValueError, ArithmeticError, RecursionError)


class Output:
    """stdout for one run: a write that fails ends the run with one line saying why (exit 1), never a traceback:
    stdout closed, the reader of a pipe gone (EPIPE), a full disk (ENOSPC), or an encoding that cannot hold the text
    (PYTHONIOENCODING=ascii). ``failed`` says the stream is broken, so that nothing more is written to it."""

    def __init__(self, stream: TextIO | None):
        self.stream, self.failed, self.pending = stream, False, False  # pending: written since the last flush

    def write(self, text: str) -> None:
        self._do(lambda stream: stream.write(text))
        self.pending = True

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._do(lambda stream: stream.flush())
        self.pending = False

    def isatty(self) -> bool:
        try:
            return bool(self.stream and self.stream.isatty())
        except (AttributeError, ValueError, OSError):
            return False

    def _do(self, action) -> None:
        if self.stream is None:
            raise InputError("cannot write the results: stdout is closed; give --output FILE")
        try:
            action(self.stream)
        except UnicodeEncodeError as exc:
            raise InputError(f"cannot write to stdout: its encoding ({exc.encoding}) cannot hold the character "
                             f"U+{ord(exc.object[exc.start]):04X}; set PYTHONIOENCODING=utf-8 or give --output FILE"
                             ) from None
        except BrokenPipeError:
            self.failed = True
            raise InputError("cannot write to stdout: the program reading it has closed the pipe") from None
        except OSError as exc:
            self.failed = True
            raise InputError(f"cannot write to stdout: {exc.strerror or exc}") from None
        except ValueError:  # "I/O operation on closed file"
            self.failed = True
            raise InputError("cannot write the results: stdout is closed; give --output FILE") from None


def unpaired_surrogate(text: str, what: str) -> str | None:
    """Why `text` cannot be translated when it holds an unpaired surrogate (not Unicode: from bytes that were not
    UTF-8, or a JSON "\\ud800" escape), else None."""
    from bridge.datafiles import surrogate_at

    at = surrogate_at(text)
    if at is None:
        return None
    return (f"{what} holds an unpaired surrogate (U+{ord(text[at]):04X} at character {at + 1}), which is not text: it "
            "comes from bytes that are not UTF-8 or a \\ud800-style escape; save the prompt as UTF-8")


def stdin_lines(stdin: TextIO) -> Iterator[str]:
    """stdin's lines without their line ends, each read only when the one before has been answered."""
    buffer = getattr(stdin, "buffer", None)
    if buffer is None:  # a text stream (tests, an embedding caller)
        for line in iter(stdin.readline, ""):
            yield line.rstrip("\r\n")
        return
    offset = 0
    for raw in iter(buffer.readline, b""):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"stdin is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                             f"{offset + exc.start}); save it as UTF-8") from None
        yield (text[1:] if offset == 0 and text.startswith("\ufeff") else text).rstrip("\r\n")
        offset += len(raw)


def from_dialect(recipe, dialect: str, warn, embeddings: dict[str, str] | None = None):
    """Input prompts in compel or ComfyUI syntax become A1111 syntax, the bridge's own; the names of ComfyUI's
    ``embedding:NAME`` words go into ``embeddings`` (A1111 name -> as written), for the options and for
    :func:`to_dialect` to write the prefix back."""
    if dialect == "a1111":
        return recipe
    from bridge.dialects import to_a1111

    try:
        prompt, negative = to_a1111(recipe.prompt, dialect), to_a1111(recipe.negative_prompt, dialect)
    except _DIALECT_ERRORS as exc:
        raise UnreadablePrompt(f"reading {dialect}: {_malformed(exc)}; kept as written") from None
    if embeddings is not None:
        embeddings.update({**negative.embeddings, **prompt.embeddings})
    for warning in dict.fromkeys(prompt.warnings + negative.warnings):
        warn(f"reading {dialect}: {warning}", warning_kind(f"reading {dialect}: {warning}"))
    return recipe.replace(prompt=prompt.text, negative_prompt=negative.text)


def with_embeddings(options, embeddings: Mapping[str, str]):
    """``options`` with the names the user wrote as ``embedding:NAME`` added to their embeddings."""
    from dataclasses import replace

    added = [name for name in embeddings if name not in options.embeddings]
    return replace(options, embeddings=(*options.embeddings, *added)) if added else options


def to_dialect(translation, dialect: str, embeddings: Mapping[str, str] | None = None):
    """The translated prompts written in the requested front end's syntax (ComfyUI: ``embeddings`` that stay get
    their ``embedding:`` prefix back)."""
    if dialect == "a1111":
        return translation
    from dataclasses import replace

    from bridge.dialects import Converted, from_a1111

    kept = []

    def written(text: str) -> Converted:
        try:
            return from_a1111(text, dialect, embeddings)
        except _DIALECT_ERRORS as exc:  # a prompt A1111 kept as written because it rejects it, e.g. (a:1.2.3)
            kept.append(f"{_malformed(exc)}; kept in A1111 syntax")
            return Converted(text)

    prompt, negative = written(translation.prompt), written(translation.negative_prompt)
    warnings = [*translation.warnings, *(f"writing {dialect}: {w}" for w in
                                         dict.fromkeys(prompt.warnings + negative.warnings + kept))]
    recipe = translation.recipe.replace(prompt=prompt.text, negative_prompt=negative.text)
    return replace(translation, recipe=recipe, warnings=warnings)


def _malformed(exc: BaseException) -> str:
    if isinstance(exc, ValueError) and str(exc):
        return str(exc)
    return f"the prompt cannot be converted ({type(exc).__name__}: a number or a nesting too large)"


def use_color(choice: str, stream: TextIO, env: Mapping[str, str], to_file: bool) -> bool:
    """--color: always/never as asked; auto is off with NO_COLOR (non-empty) or TERM=dumb, on with FORCE_COLOR
    (non-empty), else on only when the output is a terminal (never into an --output file)."""
    if choice != "auto":
        return choice == "always"
    if env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return False
    if env.get("FORCE_COLOR"):
        return True
    if to_file:
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def target_keys() -> list[str]:
    """Every registered model some bridge translates to, in registry order (SDXL included)."""
    from bridge.models import list_bridges, list_models

    targets = {b.target for b in list_bridges()}
    return [m.key for m in list_models() if m.key in targets]


def json_record(translation, *, fmt_diff: bool, source_prompt: str, source_negative: str = "", key: str | None = None,
                line: int | None = None, source: str = "", target: str = "", warnings: list[str] | None = None) -> str:
    """One JSON Lines record: where it came from (key, line), the input (source_prompt), then the translation.
    With no translation (a blank line, an empty library row) the prompts are kept as read and the recipe fields
    are null, so every input line still has its record."""
    row: dict[str, Any] = {}
    if key is not None:
        row["key"] = key
    if line is not None:
        row["line"] = line
    row["source_prompt"] = source_prompt
    if translation is None:
        row.update(prompt=source_prompt, negative_prompt=source_negative, **dict.fromkeys(_RECIPE_FIELDS),
                   source=source, target=target, changes=[], warnings=list(warnings or []), notes=[])
    else:
        row.update(translation.to_dict())
        if fmt_diff:
            original = translation.original.prompt if translation.original else source_prompt
            row["diff"] = diff(original, translation.prompt, False).rstrip("\n")
    from bridge.datafiles import json_line

    return json_line(row)


def text_block(translation, fmt: str, explain: bool, show_diff: bool, color: bool) -> str:
    """The text or a1111 output for one translation (None: a blank line, so line N still answers line N)."""
    if translation is None:
        return "\n"
    parts: list[str] = []
    if fmt == "a1111":
        parts.append(translation.to_infotext() + "\n\n")
    elif explain:
        parts.append(explained(translation))
    else:
        parts.append(translation.prompt + "\n")
    if show_diff:
        original = translation.original.prompt if translation.original else ""
        parts.append(diff(original, translation.prompt, color))
        if translation.original and translation.original.negative_prompt != translation.negative_prompt:
            parts.append(diff(translation.original.negative_prompt, translation.negative_prompt, color,
                              label="negative: "))
    if explain and fmt == "a1111":
        parts.append(changes_text(translation))
    return "".join(parts)


def explained(translation) -> str:
    r = translation.recipe
    lines = [
        f"Prompt ({translation.target}): {r.prompt}",
        f"Negative prompt: {r.negative_prompt}",
        (f"Size: {r.width}x{r.height}, Steps: {r.steps}, CFG scale: {r.cfg_scale:g}, Sampler: {r.sampler}, "
         f"Model: {r.model}"),
    ]
    return "\n".join(lines) + "\n" + changes_text(translation)


def changes_text(translation) -> str:
    if not translation.changes:
        return "Changes: none (the prompt already suits the target)\n\n"
    lines = [*(f"Note: {n}" for n in translation.notes), f"Changes ({translation.source} -> {translation.target}):"]
    for change in translation.changes:
        after = repr(change.after) if change.after else "(removed)"
        hop = f"[{change.hop}] " if change.hop else ""
        lines.append(f"  - {hop}{change.rule}: {change.before!r} -> {after}")
        lines.append(f"      why: {change.reason}" + (f" [{change.fact}]" if change.fact else ""))
    return "\n".join(lines) + "\n\n"


def diff(before: str, after: str, color: bool, label: str = "") -> str:
    """Word-level diff: [-removed-] {+added+}, or red/green with colour."""
    from bridge.migration import word_diff

    out = []
    for op, text in word_diff(before, after):
        if op == "=":
            out.append(text)
        elif op == "-":
            out.append(f"\x1b[31m{text}\x1b[0m" if color else f"[-{text}-]")
        else:
            out.append(f"\x1b[32m{text}\x1b[0m" if color else f"{{+{text}+}}")
    return label + "".join(out) + "\n"


def print_models(stdout: TextIO, models, bridges) -> None:
    stdout.write(f"{'key':<10} {'native':>7}  {'prediction':<13} {'text encoder':<40} name\n")
    stdout.writelines(f"{m.key:<10} {m.native_size:>7}  {m.prediction_type:<13} {m.text_encoder:<40} {m.name}\n"
                      for m in models)
    stdout.write("\nbridges (--from -> --to):\n")
    stdout.writelines(f"  {b.source} -> {b.target}  ({b.kind})\n" for b in bridges)


# Warning kinds (--warnings-summary) ---------------------------------------------------------------------------------

_RULE = re.compile(r"\brule ([\w.*-]+)\)?$")
_SPECIFIC = re.compile(r"<[^<>]*>|'[^']*'|\"[^\"]*\"|\b\d+(?:\.\d+)?\b")


def warning_kind(warning: str) -> str:
    """A warning's kind: "rule ID" when the warning names the rule that raised it, else its words with the
    specifics masked (tags, quoted text and numbers become …), up to the first ';' or ' (' and at most 8 words.

    >>> warning_kind("removed <lora:detail:0.6> from the prompt: an SD1 lora does not load on sd2")
    'removed … from the prompt: an SD1 lora'
    """
    found = _RULE.search(warning)
    if found:
        return f"rule {found.group(1)}"
    text = re.sub(r"^\[[^\]]*\] ", "", warning)  # a chain's hop label
    text = _SPECIFIC.sub("…", text)
    text = re.split(r"; | \(", text, maxsplit=1)[0]
    return " ".join(text.split()[:8])


def warnings_summary(counts: Counter) -> str:
    total = sum(counts.values())
    lines = [f"warnings: {total} in all" + (", by kind:" if total else "")]
    lines += [f"  {n:>6}  {kind}" for kind, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return "\n".join(lines) + "\n"

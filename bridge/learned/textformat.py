"""The learned bridge's text format (``FORMAT_VERSION`` 1): how a prompt becomes model input, and model output a prompt.

The model reads the source prompt and negative, with their protected syntax swapped for placeholders
(:mod:`bridge.learned.placeholders`), and writes the target prompt and negative::

    input:   sd15 to sd2: <prompt> negative: <negative>
    output:  <prompt> negative: <negative>

A bridge trained without negatives (``negatives: false`` in bridge.json) reads and writes the prompt alone
(``sd15 to sd2: <prompt>`` → ``<prompt>``); its negative prompt comes from the rules bridge. The separator is plain
words because T5's vocabulary lacks characters such as ``<``, ``{`` and ``}`` (they decode as ``⁇``); a literal
``negative:`` in a prompt reaches the model as a placeholder, so the first one in an output is the separator.

:func:`encode_example` turns a source (and, for training, its target) into an :class:`Example`: the input text, the
protected syntax, and what it takes to check and restore a raw model output.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.learned.placeholders import Protected, align, check, protect, restore
from bridge.translation import TranslationOptions

__all__ = ["FORMAT_VERSION", "NEGATIVE_MARKER", "NEGATIVE_SEPARATOR", "Example", "encode_example", "format_input",
           "format_output", "split_output"]

FORMAT_VERSION = 1
NEGATIVE_MARKER = "negative:"
NEGATIVE_SEPARATOR = f" {NEGATIVE_MARKER} "


def format_input(prompt: str, negative: str | None = None, *, source: str, target: str) -> str:
    """The model input: ``format_input("a cat", "blurry", source="sd15", target="sd2")`` is
    ``'sd15 to sd2: a cat negative: blurry'`` (without ``negative`` that part is left out)."""
    text = f"{source} to {target}: {prompt}"
    return text if negative is None else text + NEGATIVE_SEPARATOR + negative


def format_output(prompt: str, negative: str | None = None) -> str:
    """The model output: ``format_output("a cat", "blurry") == 'a cat negative: blurry'``."""
    return prompt if negative is None else prompt + NEGATIVE_SEPARATOR + negative


def split_output(text: str) -> tuple[str, str | None]:
    """``(prompt, negative)`` of a model output; negative is None when the output has no negative part."""
    prompt, separator, negative = text.partition(NEGATIVE_MARKER)
    return (prompt.strip(), negative.strip()) if separator else (text.strip(), None)


@dataclass
class Example:
    """One source (and optionally target) encoded for the model: its input text, the protected syntax, the target
    text with the same placeholders, and the target as restored text (the reference metrics compare against)."""

    input_text: str
    prompt: Protected
    negative: Protected | None
    target_text: str | None = None
    reference: str | None = None

    def problems(self, raw: str) -> list[str]:
        """What is wrong with a raw model output for this input (empty when every placeholder is intact)."""
        prompt, negative = split_output(raw)
        problems = check(prompt, self.prompt)
        if self.negative is not None:
            if negative is None:
                return [*problems, f"the negative part (after {NEGATIVE_MARKER!r}) is missing"]
            problems += [f"negative: {p}" for p in check(negative, self.negative)]
        return problems

    def restore(self, raw: str) -> tuple[str, str | None]:
        """(prompt, negative) of a raw output with the protected syntax put back."""
        prompt, negative = split_output(raw)
        if self.negative is None or negative is None:
            return restore(prompt, self.prompt), None
        return restore(prompt, self.prompt), restore(negative, self.negative)


def encode_example(prompt: str, negative: str = "", *, source: str, target: str, negatives: bool = True,
                   options: TranslationOptions | None = None, target_prompt: str | None = None,
                   target_negative: str = "") -> Example | None:
    """Protect and format one source prompt (and, for training, its target) as the model reads and writes them.

    With a target, returns None when the target does not keep the source's protected syntax (see
    :func:`bridge.learned.placeholders.align`): such a pair cannot teach the model to keep it. Raises TooManySlotsError.
    """
    o = options or TranslationOptions()
    policy = {"networks": o.networks, "network_map": o.network_map, "embeddings": o.embeddings}
    p = protect(prompt, **policy, disable=o.disable, source=source, target=target)
    n = protect(negative, **policy, disable=o.disable, source=source, target=target, label="negative prompt",
                start=len(p.slots)) if negatives else None
    example = Example(format_input(p.text, n.text if n else None, source=source, target=target), p, n)
    if target_prompt is None:
        return example
    pair = {"source": source, "target_model": target, **policy}
    aligned_prompt = align(target_prompt, p, **pair)
    aligned_negative = align(target_negative, n, **pair) if n is not None else None
    if aligned_prompt is None or (n is not None and aligned_negative is None):
        return None
    example.target_text = format_output(aligned_prompt, aligned_negative)
    example.reference = format_output(*example.restore(example.target_text))
    return example

"""A1111 generation recipes and their infotext (the PNG "parameters" text AUTOMATIC1111 writes).

An infotext is the prompt (one or more lines), an optional negative prompt, and one line of parameters::

    masterpiece, (portrait:1.2) of a woman,
    city street at night <lora:detail:0.6>
    Negative prompt: lowres, bad anatomy
    Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 1234, Size: 512x768, Lora hashes: "detail: 1a2b3c"

`Recipe.from_infotext` reads it and `Recipe.to_infotext` writes it back byte for byte:

>>> recipe = Recipe.from_infotext("a cat\\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x768")
>>> recipe.steps, recipe.cfg_scale, recipe.width, recipe.height
(20, 7.0, 512, 768)
>>> recipe.replace(steps=30).to_infotext()
'a cat\\nSteps: 30, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x768'

Format rules, as A1111 writes and reads them:
- The last line holds the parameters when it splits entirely into at least three `Key: value` pairs; otherwise it is
  prompt (or negative) text, so "portrait: a man" stays prompt. A recipe with fewer than three parameters is therefore
  written as text that reads back as prompt, in A1111 as here.
- The first line starting with "Negative prompt:" starts the negative prompt, which runs up to the parameters line.
- A value containing a comma, colon or newline is written as a JSON string (`json.dumps`); so is one that starts with
  a double quote or has surrounding whitespace, which A1111 would misread unquoted.
- "\\r\\n" and "\\r" read as newlines; the prompt, the negative prompt and each value are stripped of surrounding
  whitespace.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

NEGATIVE_PREFIX = "Negative prompt:"
MIN_PARAMS = 3  # fewer pairs than this on the last line and A1111 reads it as prompt text

# Keys stored in Recipe fields: infotext key -> (field name, conversion). "Size" is read into width and height.
_FIELD_KEYS: dict[str, tuple[str, type]] = {
    "Steps": ("steps", int),
    "Sampler": ("sampler", str),
    "CFG scale": ("cfg_scale", float),
    "Seed": ("seed", int),
    "Model": ("model", str),
    "Clip skip": ("clip_skip", int),
}
_SIZE = "Size"
_DEFAULT_ORDER = ["Steps", "Sampler", "CFG scale", "Seed", "Size", "Model hash", "Model", "Clip skip"]

# A key is words of anything but whitespace, comma, colon or double quote, separated by single spaces.
_KEY = r'[^\s,:"]+(?: [^\s,:"]+)*'
_PAIR = re.compile(rf'\s*({_KEY}):\s*(?:("(?:[^"\\]|\\.)*")\s*(?:,|$)|([^,]*)(?:,|$))')
_SIZE_VALUE = re.compile(r"([0-9]{1,9})x([0-9]{1,9})")  # bounded: a 5,000-digit size is an error, not int()'s limit
_LONGEST_SHOWN = 60  # characters of a bad value an error quotes
_NEEDS_QUOTES = re.compile(r'[,:\n\r]|^"')

_DIFFUSERS_WARNINGS = {
    "emphasis": "emphasis and weights such as (word:1.2) or [word] are read literally by plain diffusers",
    "editing": "prompt editing [from:to:when] is read literally by plain diffusers",
    "alternation": "alternation [a|b] is read literally by plain diffusers",
    "break": "BREAK is read as a word by plain diffusers, not as a new 75-token chunk",
    "and": "AND (composable diffusion) is read as a word by plain diffusers",
    "network": "extra-network tags such as <lora:name:1> are read literally; load the LoRA with load_lora_weights",
}


class InfotextError(ValueError):
    """An infotext parameter whose value does not convert, e.g. `Steps: abc`."""


@dataclass
class Recipe:
    """One A1111 generation: prompts, the known parameters, and every other infotext key in `extra`.

    `key_order` remembers the order keys were read in (known and extra alike), so a parsed infotext is written back
    exactly; keys it does not list are written in A1111's usual order. It does not take part in equality.
    """

    prompt: str = ""
    negative_prompt: str = ""
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    sampler: str | None = None
    seed: int | None = None
    model: str | None = None
    clip_skip: int | None = None
    extra: dict[str, str] = field(default_factory=dict)
    key_order: list[str] = field(default_factory=list, init=False, repr=False, compare=False)
    # The text a known key was read from, reused while its value is unchanged (so "CFG scale: 7.0" stays "7.0").
    _raw: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        if (self.width is None) != (self.height is None):
            raise ValueError(f"width and height must be set together, got width={self.width}, height={self.height}")
        for key in self.extra:
            if key in _FIELD_KEYS or key == _SIZE:
                raise ValueError(f"extra key {key!r} belongs in its Recipe field, not in extra")
            if not re.fullmatch(_KEY, key):
                raise ValueError(
                    f"extra key {key!r} cannot be written to infotext: use words without commas, colons, "
                    "double quotes or newlines, separated by single spaces"
                )

    @property
    def model_hash(self) -> str | None:
        """The "Model hash" value, or None."""
        return self.extra.get("Model hash")

    @classmethod
    def from_infotext(cls, text: str) -> Recipe:
        """Read A1111 infotext. Raises InfotextError (a ValueError) naming the key and value when a known parameter
        does not convert: Steps, Seed and Clip skip must be integers, CFG scale a number, Size `WIDTHxHEIGHT`.

        >>> Recipe.from_infotext("a cat\\nNegative prompt: blurry").negative_prompt
        'blurry'
        """
        text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
        if not text:
            return cls()
        *lines, last = text.split("\n")
        pairs = _parse_params(last)
        if pairs is None:
            lines.append(last)
            pairs = []

        prompt_lines: list[str] = []
        negative_lines: list[str] | None = None
        for line in lines:
            if negative_lines is not None:
                negative_lines.append(line)
            elif line.lstrip().startswith(NEGATIVE_PREFIX):
                negative_lines = [line.lstrip()[len(NEGATIVE_PREFIX) :]]
            else:
                prompt_lines.append(line)

        values: dict[str, Any] = {}
        extra: dict[str, str] = {}
        for key, value in pairs:
            if key in _FIELD_KEYS or key == _SIZE:
                values.update(_read_field(key, value))
            else:
                extra[key] = value
        recipe = cls(
            prompt="\n".join(prompt_lines).strip(),
            negative_prompt="\n".join(negative_lines or []).strip(),
            extra=extra,
            **values,
        )
        recipe.key_order = list(dict.fromkeys(key for key, _ in pairs))
        recipe._raw = {key: value for key, value in pairs if key not in extra}
        return recipe

    def to_infotext(self) -> str:
        """Write A1111 infotext: the prompt, "Negative prompt: ..." when there is one, and the parameters line when
        there are parameters."""
        self._validate()
        lines = [self.prompt] if self.prompt else []
        if self.negative_prompt:
            lines.append(f"{NEGATIVE_PREFIX} {self.negative_prompt}")
        params = [(key, self._value_text(key)) for key in self._ordered_keys()]
        if params:
            lines.append(", ".join(f"{key}: {_quote(value)}" for key, value in params))
        return "\n".join(lines)

    def _ordered_keys(self) -> list[str]:
        present = [key for key in _DEFAULT_ORDER if self._value_text(key) is not None]
        present += [key for key in self.extra if key not in present]
        known = [key for key in self.key_order if key in present]
        return known + [key for key in present if key not in known]

    def _value_text(self, key: str) -> str | None:
        if key in self.extra:
            return self.extra[key]
        if key == _SIZE:
            current: dict[str, Any] = {"width": self.width, "height": self.height}
        elif key in _FIELD_KEYS:
            current = {_FIELD_KEYS[key][0]: getattr(self, _FIELD_KEYS[key][0])}
        else:
            return None
        if all(value is None for value in current.values()):
            return None
        raw = self._raw.get(key)
        if raw is not None and _read_field(key, raw) == current:
            return raw
        if key == _SIZE:
            return f"{self.width}x{self.height}"
        (value,) = current.values()
        return _format_number(value) if isinstance(value, float) else str(value)

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain data (for JSON); `from_dict` reads it back."""
        return {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "width": self.width,
            "height": self.height,
            "steps": self.steps,
            "cfg_scale": self.cfg_scale,
            "sampler": self.sampler,
            "seed": self.seed,
            "model": self.model,
            "clip_skip": self.clip_skip,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        """Build a Recipe from `to_dict` output; missing keys take their defaults, unknown keys raise ValueError."""
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown Recipe keys {unknown}; valid keys are {sorted(names)}")
        return cls(**{**data, "extra": dict(data.get("extra", {}))})

    def replace(self, **changes: Any) -> Recipe:
        """A copy with `changes` applied, like dataclasses.replace, keeping the key order and raw values.

        >>> Recipe(prompt="a cat", steps=20).replace(steps=30).steps
        30
        """
        unknown = changes.keys() - _INIT_FIELDS
        if unknown:
            raise TypeError(f"Recipe has no field {min(unknown)!r}; fields are {sorted(_INIT_FIELDS)}")
        new = object.__new__(Recipe)  # a plain copy: dataclasses.replace's __init__ round costs more than the work
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        if "extra" not in changes:
            new.extra = dict(self.extra)
        new.key_order = list(self.key_order)
        new._raw = dict(self._raw)
        if changes.keys() & _CHECKED_FIELDS:
            new._validate()
        return new

    def to_diffusers(self) -> dict[str, Any]:
        """Keyword arguments for a plain diffusers StableDiffusionPipeline call: prompt, and negative_prompt, width,
        height, num_inference_steps, guidance_scale and clip_skip where set.

        A1111's "Clip skip: N" is diffusers' `clip_skip=N - 1` (A1111 counts the last layer as 1), so it is passed only
        for N > 1. The seed is not included, because diffusers takes a generator:
        `pipe(**recipe.to_diffusers(), generator=torch.Generator().manual_seed(recipe.seed))`. The sampler is not
        mapped either. Plain diffusers reads A1111 prompt syntax literally; see `diffusers_warnings`.
        """
        kwargs: dict[str, Any] = {"prompt": self.prompt}
        if self.negative_prompt:
            kwargs["negative_prompt"] = self.negative_prompt
        optional = {
            "width": self.width,
            "height": self.height,
            "num_inference_steps": self.steps,
            "guidance_scale": self.cfg_scale,
            "clip_skip": self.clip_skip - 1 if self.clip_skip is not None and self.clip_skip > 1 else None,
        }
        kwargs.update({name: value for name, value in optional.items() if value is not None})
        return kwargs

    def diffusers_warnings(self) -> list[str]:
        """One line per A1111 prompt feature, in the prompt or the negative, that plain diffusers does not honour."""
        from bridge.syntax import features

        used = features(self.prompt) | features(self.negative_prompt)
        return [message for feature, message in _DIFFUSERS_WARNINGS.items() if feature in used]


_INIT_FIELDS = frozenset(f.name for f in dataclasses.fields(Recipe) if f.init)  # what replace() may change
_CHECKED_FIELDS = frozenset({"width", "height", "extra"})  # what Recipe._validate looks at


def _parse_params(line: str) -> list[tuple[str, str]] | None:
    """The `Key: value` pairs of a parameters line, or None when the line is not one."""
    pairs = []
    position = 0
    while position < len(line):
        match = _PAIR.match(line, position)
        if match is None:
            return None
        key, quoted, plain = match.groups()
        pairs.append((key, _unquote(quoted) if quoted is not None else plain.strip()))
        position = match.end()
    return pairs if len(pairs) >= MIN_PARAMS else None


def _read_field(key: str, text: str) -> dict[str, Any]:
    """Field values for a known key, e.g. {"width": 512, "height": 768} for `Size: 512x768`."""
    shown = repr(text) if len(text) <= _LONGEST_SHOWN else f"{text[:_LONGEST_SHOWN]!r}... ({len(text):,} characters)"
    if key == _SIZE:
        match = _SIZE_VALUE.fullmatch(text)
        if match is None:
            raise InfotextError(f"infotext key {key!r} has value {shown}; expected WIDTHxHEIGHT, e.g. '512x768'")
        return {"width": int(match[1]), "height": int(match[2])}
    name, convert = _FIELD_KEYS[key]
    try:
        value = convert(text)
    except ValueError:  # (also int()'s limit on digits: a value that long is no integer A1111 wrote)
        value = None
    if value is None or (convert is float and not math.isfinite(value)):
        expected = "an integer" if convert is int else "a finite number"
        raise InfotextError(f"infotext key {key!r} has value {shown}; expected {expected}")
    return {name: value}


def _quote(value: str) -> str:
    if _NEEDS_QUOTES.search(value) or value != value.strip():
        return json.dumps(value, ensure_ascii=False)
    return value


def _unquote(text: str) -> str:
    try:
        return json.loads(text)
    except json.JSONDecodeError:  # not valid JSON escapes: keep the text as written
        return text


def _format_number(value: float) -> str:
    text = repr(value)
    return text.removesuffix(".0")

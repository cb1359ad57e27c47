"""The types every bridge shares: what a bridge returns (:class:`Translation`, :class:`Change`), the options it
takes (:class:`TranslationOptions`) and the interface it implements (:class:`Translator`). The loader that picks a
bridge is :mod:`bridge.load`, one layer up; ``bridge.translation.translate`` and ``.load_translator`` lead there.

>>> import bridge
>>> t = bridge.translate("a castle, by greg rutkowski, 8k", source="sd15", target="sd2")
>>> t.recipe.width, t.recipe.height
(768, 768)
>>> [c.rule for c in t.changes][:1]
['artist.greg-rutkowski']

A :class:`Translation` holds the new :class:`~bridge.recipe.Recipe` (positive and negative prompt, size, CFG, steps,
sampler, …), every change as (rule, before, after, reason) and the warnings. The rules bridge (embedded, no weights)
implements :class:`Translator` today; the learned seq2seq bridge implements the same interface.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from bridge.recipe import Recipe

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["Change", "Translation", "TranslationOptions", "Translator"]

# Recipe fields a caller may set through translate(**settings).
RECIPE_SETTINGS = ("width", "height", "steps", "cfg_scale", "sampler", "seed", "model", "clip_skip")


@dataclass(slots=True)
class Change:
    """One edit a bridge made: which rule, the text before and after, and why (with the fact it rests on)."""

    rule: str
    before: str
    after: str
    reason: str
    fact: str | None = None
    hop: str | None = None  # in a chain of bridges, which one made the change ("sd14->sd15")

    def to_dict(self) -> dict[str, str]:
        out = {"rule": self.rule, "before": self.before, "after": self.after, "reason": self.reason}
        if self.fact:
            out["fact"] = self.fact
        if self.hop:
            out["hop"] = self.hop
        return out


@dataclass
class Translation:
    """The result of translating one prompt: the target recipe, the changes with reasons, and warnings."""

    recipe: Recipe
    source: str
    target: str
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    original: Recipe | None = None
    notes: list[str] = field(default_factory=list)  # facts worth saying that are not warnings (detected source)

    @property
    def prompt(self) -> str:
        return self.recipe.prompt

    @property
    def negative_prompt(self) -> str:
        return self.recipe.negative_prompt

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: recipe fields, then ``changes`` and ``warnings``."""
        r = self.recipe
        return {
            "prompt": r.prompt,
            "negative_prompt": r.negative_prompt,
            "width": r.width,
            "height": r.height,
            "steps": r.steps,
            "cfg_scale": r.cfg_scale,
            "sampler": r.sampler,
            "seed": r.seed,
            "model": r.model,
            "source": self.source,
            "target": self.target,
            "changes": [c.to_dict() for c in self.changes],
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }

    def to_infotext(self) -> str:
        """The recipe as A1111 infotext (paste it into A1111's prompt box and press the ↙ button)."""
        return self.recipe.to_infotext()


@dataclass(kw_only=True)
class TranslationOptions:
    """Options every bridge understands.

    networks: what to do with SD1 LoRA/hypernetwork tags and textual-inversion embeddings, which do not load on the
        target: "remove" (default, with a warning naming each) or "keep".
    network_map: old name → new name for networks/embeddings the user has an equivalent of (always applied first).
    embeddings: names of the user's SD1 embeddings (file stems of their embeddings folder), added to the known ones.
    disable: rule ids (or shell patterns such as ``artist.*``) to switch off.
    knowledge: a user knowledge file whose rules override the shipped ones with the same id.
    style_budget: the CLIP tokens the rules bridge's one style phrase (what the prompt's artists stood for) may take;
        None takes the knowledge file's (10 in the shipped ones); 0 adds no style.
    """

    networks: str = "remove"
    network_map: dict[str, str] = field(default_factory=dict)
    embeddings: tuple[str, ...] = ()
    disable: tuple[str, ...] = ()
    knowledge: str | os.PathLike | None = None
    style_budget: int | None = None

    def __post_init__(self) -> None:
        if self.networks not in ("remove", "keep"):
            raise ValueError(f"networks must be 'remove' or 'keep', got {self.networks!r}")
        if self.style_budget is not None and (type(self.style_budget) is not int or self.style_budget < 0):
            raise ValueError(f"style_budget must be a whole number of tokens, 0 or more, got {self.style_budget!r}")
        self.embeddings = tuple(self.embeddings)
        self.disable = tuple(self.disable)


class Translator(Protocol):
    """What every bridge implements (the rules bridge now, the learned bridge later)."""

    name: str
    source: str
    target: str

    def translate(self, recipe: Recipe, options: TranslationOptions | None = None) -> Translation: ...

    def translate_batch(self, recipes: Iterable[Recipe], options: TranslationOptions | None = None
                        ) -> list[Translation]: ...


_MOVED = {"translate", "load_translator", "make_recipe", "is_hub_id"}  # documented here before bridge.load existed


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import bridge.load

        return getattr(bridge.load, name)
    raise AttributeError(f"module 'bridge.translation' has no attribute {name!r}")

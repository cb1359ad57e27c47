"""The translation API (module `bridge.translation`; `bridge.translate` is the function): what a bridge returns, the interface every bridge implements, and the one loader.

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

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bridge.recipe import Recipe

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["Change", "Translation", "TranslationOptions", "Translator", "load_translator", "translate"]

_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")  # user/name, as on the Hugging Face hub

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


@dataclass
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


def is_hub_id(text: str) -> bool:
    """``user/name`` as on the Hugging Face hub (a path that does not exist is taken for one only in that shape)."""
    return _HUB_ID.fullmatch(text) is not None


def make_recipe(prompt: str | Recipe, negative_prompt: str | None = None, **settings: Any) -> Recipe:
    """A Recipe from a prompt (or a Recipe) plus settings; unknown setting names are an error that lists the valid."""
    unknown = sorted(set(settings) - set(RECIPE_SETTINGS))
    if unknown:
        raise TypeError(f"unknown setting {unknown[0]!r}; valid settings: {', '.join(RECIPE_SETTINGS)}")
    recipe = prompt if isinstance(prompt, Recipe) else Recipe(prompt=prompt)
    changes = {k: v for k, v in settings.items() if v is not None}
    if negative_prompt is not None:
        changes["negative_prompt"] = negative_prompt
    return recipe.replace(**changes) if changes else recipe


def translate(
    prompt: str | Recipe,
    *,
    source: str = "sd15",
    target: str = "sd2",
    negative_prompt: str | None = None,
    networks: str = "remove",
    network_map: dict[str, str] | None = None,
    embeddings: Iterable[str] = (),
    disable: Iterable[str] = (),
    knowledge: str | os.PathLike | None = None,
    style_budget: int | None = None,
    **settings: Any,
) -> Translation:
    """Translate one SD1.x prompt (or a whole :class:`Recipe`) with the embedded rules bridge.

    ``settings`` are recipe fields of the source generation (width, height, steps, cfg_scale, sampler, seed, model,
    clip_skip); the options are those of :class:`TranslationOptions`.

    >>> translate("portrait of a woman, (masterpiece:1.2), 8k", target="sd21").recipe.width
    768
    """
    options = TranslationOptions(networks, dict(network_map or {}), tuple(embeddings), tuple(disable), knowledge,
                                 style_budget)
    stamp = None
    if knowledge is not None:
        try:
            stat = os.stat(knowledge)
            stamp = (stat.st_size, stat.st_mtime_ns)
        except OSError:
            stamp = None  # the loader reports the missing file
    translator = _rules_translator(source, target, None if knowledge is None else os.fspath(knowledge), stamp)
    return translator.translate(make_recipe(prompt, negative_prompt, **settings), options)


@functools.lru_cache(maxsize=16)
def _rules_translator(source: str, target: str, knowledge: str | None, stamp: tuple | None) -> Translator:
    """Rules translators are reused across translate() calls (loading and planning cost more than translating);
    ``stamp`` makes an edited user knowledge file load again."""
    return load_translator("rules", source=source, target=target, knowledge=knowledge)


def _hop_translator(spec, knowledge: str | os.PathLike | None) -> Translator:
    """The translator of one registered bridge: a rules bridge from its knowledge file, or a learned one."""
    if spec.kind == "rules":
        from bridge.rules import RulesTranslator

        return RulesTranslator.for_bridge(spec, knowledge=knowledge)
    return load_translator(spec.model, source=spec.source, target=spec.target)


def load_translator(
    name_or_path: str | os.PathLike = "rules",
    *,
    source: str = "sd15",
    target: str = "sd2",
    knowledge: str | os.PathLike | None = None,
) -> Translator:
    """The one loader. ``"rules"`` is the registry's bridge for ``source`` → ``target``: the direct one, or else the
    shortest chain of registered bridges (each hop a rules bridge or a learned one); a ``.toml`` file is a rules
    bridge with that knowledge file; a folder holding ``bridge.json`` (or a hub id) is a learned bridge."""
    from bridge.rules import RulesTranslator

    text = os.fspath(name_or_path)
    if text == "rules":
        from bridge.models import find_path

        hops = [_hop_translator(spec, knowledge) for spec in find_path(source, target)]
        if len(hops) == 1:
            return hops[0]
        from bridge.chain import ChainTranslator

        return ChainTranslator(hops)
    path = Path(text)
    if path.suffix == ".toml":
        if not path.is_file():
            raise FileNotFoundError(f"knowledge file not found: {text}")
        return RulesTranslator.from_file(path, source=source, target=target, knowledge=knowledge)
    if (path / "bridge.json").is_file() or (not path.exists() and is_hub_id(text)):
        try:
            from bridge.learned.seq2seq import Seq2SeqTranslator  # type: ignore[import-not-found]
        except ImportError as exc:
            raise ValueError(f"cannot load learned bridge {text!r}: {exc}") from None
        return Seq2SeqTranslator.from_pretrained(text)
    raise ValueError(
        f"cannot load translator {text!r}; use 'rules', a knowledge .toml file, or a learned bridge "
        "(a folder with bridge.json, or a hub id such as user/sd15-to-sd2)"
    )

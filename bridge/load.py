"""The one loader, above every bridge: :func:`load_translator` (rules, a knowledge file, a chain of registered
bridges, or a learned bridge) and :func:`translate` (one prompt through the embedded rules bridge).

``bridge.translate``, ``bridge.load_translator`` and ``bridge.translation.{translate, load_translator}`` all lead
here; :mod:`bridge.translation` itself holds only the types every bridge shares.

>>> from bridge.load import translate
>>> translate("portrait of a woman, (masterpiece:1.2), 8k", target="sd21").recipe.width
768
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.models import is_hub_id
from bridge.recipe import Recipe
from bridge.translation import RECIPE_SETTINGS, Translation, TranslationOptions, Translator

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["load_translator", "make_recipe", "translate"]


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
    search: int | None = None,
    search_seeds: Iterable[int] = (0, 1),
    target_weights: str | None = None,
    source_weights: str | None = None,
    tiny: bool = False,
    device: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    search_report: str | os.PathLike | None = None,
    **settings: Any,
) -> Translation:
    """Translate one SD1.x prompt (or a whole :class:`Recipe`) with the embedded rules bridge.

    ``settings`` are recipe fields of the source generation (width, height, steps, cfg_scale, sampler, seed, model,
    clip_skip); the options are those of :class:`TranslationOptions`.

    >>> translate("portrait of a woman, (masterpiece:1.2), 8k", target="sd21").recipe.width
    768

    ``search=N`` translates by search instead (a GPU and the target's weights, or ``tiny=True``): N candidates, the
    prompt unchanged among them, rendered on the target with ``search_seeds`` and scored against the source prompt;
    the best is returned (:func:`bridge.search.search`, which takes the other ``search``/weights arguments). The
    search tries the shipped rules' variants, so it takes no knowledge file, disabled rules or style budget.
    """
    if search is not None:
        given = [name for name, value in (("knowledge", knowledge), ("disable", tuple(disable)),
                                          ("style_budget", style_budget)) if value]
        if given:
            raise ValueError(f"search tries the shipped rules' variants; it takes no {', '.join(given)}")
        from bridge.search import search as translate_by_search

        return translate_by_search(make_recipe(prompt, negative_prompt, **settings), source=source, target=target,
                                   candidates=search, seeds=tuple(search_seeds), target_weights=target_weights,
                                   source_weights=source_weights, tiny=tiny, device=device, cache_dir=cache_dir,
                                   report_dir=search_report)
    options = TranslationOptions(networks=networks, network_map=dict(network_map or {}), embeddings=tuple(embeddings),
                                 disable=tuple(disable), knowledge=knowledge, style_budget=style_budget)
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


def _hop_translator(spec, knowledge: str | os.PathLike | None, backend: str) -> Translator:
    """The translator of one registered bridge: a rules bridge from its knowledge file, or a learned one."""
    if spec.kind == "rules":
        from bridge.rules import RulesTranslator

        return RulesTranslator.for_bridge(spec, knowledge=knowledge)
    return load_translator(spec.model, source=spec.source, target=spec.target, backend=backend)


def load_translator(
    name_or_path: str | os.PathLike = "rules",
    *,
    source: str = "sd15",
    target: str = "sd2",
    knowledge: str | os.PathLike | None = None,
    backend: str = "auto",
) -> Translator:
    """The one loader. ``"rules"`` is the registry's bridge for ``source`` → ``target``: the direct one, or else the
    shortest chain of registered bridges (each hop a rules bridge or a learned one); a ``.toml`` file is a rules
    bridge with that knowledge file; a folder holding ``bridge.json`` (or a hub id) is a learned bridge.

    ``backend`` says how a learned bridge runs: ``"auto"`` (CTranslate2 when the folder holds its copy and the fast
    extra is installed, else transformers), ``"ct2"`` or ``"hf"``; rules bridges ignore it."""
    from bridge.rules import RulesTranslator

    if backend != "auto":  # (the learned bridge's modules cost the rules path's start-up 13 ms: not by default)
        from bridge.learned.fast import BACKENDS

        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
    text = os.fspath(name_or_path)
    if text == "rules":
        from bridge.models import find_path

        hops = [_hop_translator(spec, knowledge, backend) for spec in find_path(source, target)]
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
        return Seq2SeqTranslator.from_pretrained(text, backend=backend)
    raise ValueError(
        f"cannot load translator {text!r}; use 'rules', a knowledge .toml file, or a learned bridge "
        "(a folder with bridge.json, or a hub id such as user/sd15-to-sd2)"
    )

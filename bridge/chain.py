"""Chained bridges: carry a prompt across several model generations, one registered bridge (hop) at a time.

``--from sd14 --to sdxl`` has no direct bridge; the registry's shortest chain is sd14 -> sd15 -> sdxl. Each hop
translates the previous hop's recipe; every change and warning says which hop made it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import replace

from bridge.recipe import Recipe
from bridge.translation import Translation, TranslationOptions, Translator

__all__ = ["ChainTranslator"]


class ChainTranslator:
    """Several translators applied in order; itself a Translator."""

    name = "chain"

    def __init__(self, hops: list[Translator]):
        if not hops:
            raise ValueError("a chain needs at least one hop")
        self.hops = hops
        self.source = hops[0].source
        self.target = hops[-1].target

    @property
    def labels(self) -> list[str]:
        return [f"{hop.source}->{hop.target}" for hop in self.hops]

    def check_disable(self, disable: tuple[str, ...]) -> None:
        """A --disable-rule pattern must name a rule of at least one hop (a typo should not silently do nothing)."""
        from bridge.rules.knowledge import KnowledgeError

        ids = [i for hop in self.hops if hasattr(hop, "kb") for i in hop.kb.rule_ids()]
        for pattern in disable:
            if not any(fnmatch.fnmatchcase(i, pattern) for i in ids):
                raise KnowledgeError(f"unknown rule {pattern!r} in the bridges {', '.join(self.labels)}")

    def translate_batch(self, recipes: Iterable[Recipe], options: TranslationOptions | None = None
                        ) -> list[Translation]:
        return [self.translate(r, options) for r in recipes]

    def translate(self, recipe: Recipe | str, options: TranslationOptions | None = None) -> Translation:
        options = options or TranslationOptions()
        original = Recipe(prompt=recipe) if isinstance(recipe, str) else recipe
        self.check_disable(options.disable)
        current, changes, warnings, notes = original, [], [], []
        source = self.source
        for i, hop in enumerate(self.hops):
            label = self.labels[i]
            if i and not current.prompt.strip():
                warnings.append(f"[{label}] skipped: the previous hop left an empty prompt")
                continue
            result = hop.translate(current, _hop_options(hop, options))
            if i == 0:
                source = result.source
            changes += [replace(c, hop=label) for c in result.changes]
            warnings += [f"[{label}] {w}" for w in result.warnings]
            notes += [f"[{label}] {n}" for n in result.notes]
            current = result.recipe if i == len(self.hops) - 1 else _undo_defaults(current, result.recipe)
        return Translation(current, source, self.target, changes, warnings, original=original, notes=notes)


_DEFAULTED = ("steps", "cfg_scale", "sampler", "model")


def _undo_defaults(before: Recipe, after: Recipe) -> Recipe:
    """Settings a middle hop only filled in from its own target's defaults are left open again, so the last hop
    fills them from the final target's (sdxl's CFG, not sd15's)."""
    return after.replace(**{name: getattr(before, name) for name in _DEFAULTED if getattr(before, name) is None})


def _hop_options(hop: Translator, options: TranslationOptions) -> TranslationOptions:
    """Each hop gets the disable patterns that name its own rules (the chain checked them all)."""
    if not options.disable or not hasattr(hop, "kb"):
        return options
    ids = hop.kb.rule_ids()
    mine = tuple(p for p in options.disable if any(fnmatch.fnmatchcase(i, p) for i in ids))
    return replace(options, disable=mine)

"""prompt-bridge: migrate text-to-image prompts across model generations (Stable Diffusion 1.x -> 2.x and on).

>>> import bridge
>>> t = bridge.translate("a castle, by greg rutkowski, 8k", source="sd15", target="sd2")
>>> (t.recipe.width, t.recipe.height)
(768, 768)

The names below load on first use, so ``import bridge`` stays instant and never imports torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Change", "Recipe", "Translation", "Translator", "attention", "load_translator", "parse", "translate"]

_LAZY = {
    "translate": "bridge.load",
    "load_translator": "bridge.load",
    "Translation": "bridge.translation",
    "Translator": "bridge.translation",
    "Change": "bridge.translation",
    "Recipe": "bridge.recipe",
    "parse": "bridge.syntax",
    "attention": "bridge.syntax",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bridge' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)

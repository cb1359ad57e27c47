"""prompt-bridge as a ComfyUI custom node pack: the "Prompt Bridge" and "Prompt Bridge (parts)" nodes (see
:mod:`.node`).

Install: clone prompt-bridge, link this folder into ComfyUI's ``custom_nodes`` and restart ComfyUI (the README's
"In ComfyUI and AUTOMATIC1111" gives the steps). ComfyUI's ``nodes.py`` (``init_external_custom_nodes`` and
``load_custom_node``) imports each entry of ``custom_nodes`` by its path there, so ``__file__`` is the link; the real
folder, links resolved, sits in the clone, whose root holds the ``bridge`` package. The core needs nothing beyond the
standard library (and ``tomli`` on Python 3.10), so when ``bridge`` is not installed the clone root goes on
``sys.path``. A copied folder with no clone behind it logs one line saying what to do and exports no
``NODE_CLASS_MAPPINGS``, which ComfyUI lists as an import failure.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]

MISSING_CORE = (
    "prompt-bridge: the node cannot find the bridge package; link integrations/comfyui from a prompt-bridge clone "
    "instead of copying it (ln -s /path/to/prompt-bridge/integrations/comfyui ComfyUI/custom_nodes/prompt_bridge), "
    "or pip install /path/to/prompt-bridge in ComfyUI's Python"
)


def locate_core(here: str | Path = __file__) -> str | None:
    """Make ``bridge`` importable: None when it is (installed, or the clone root added), else the message to show."""
    if importlib.util.find_spec("bridge") is not None:
        return None
    clone = Path(here).resolve().parent.parent.parent  # <clone>/integrations/comfyui/__init__.py, links resolved
    if not (clone / "bridge" / "__init__.py").is_file():
        return MISSING_CORE
    sys.path.insert(0, str(clone))
    importlib.invalidate_caches()
    return None


_problem = locate_core()
if _problem is None:
    from .node import PromptBridge, PromptBridgeParts

    NODE_CLASS_MAPPINGS = {"PromptBridge": PromptBridge, "PromptBridgeParts": PromptBridgeParts}
    NODE_DISPLAY_NAME_MAPPINGS = {"PromptBridge": "Prompt Bridge", "PromptBridgeParts": "Prompt Bridge (parts)"}
else:
    logging.getLogger("prompt_bridge").error(_problem)

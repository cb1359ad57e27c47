"""bridge.json: what a learned bridge folder holds and how it was made (:class:`BridgeInfo`).

A bridge folder holds ``bridge.json``, the tokenizer, and full weights (``model.safetensors``) or a peft adapter
(``adapter_model.safetensors``) over ``base_model`` (a hub id, or a path relative to the folder). bridge.json is
written last: it marks the folder as a complete bridge.

``copies`` says which copies of the model the folder holds, each by kind: ``"hf"``, the transformers weights (or
adapter) in the folder itself, and ``"ct2"``, a CTranslate2 copy written by ``python -m bridge.export``
(:mod:`bridge.learned.fast`), e.g. ``{"path": "ct2", "quantization": "int8", "ctranslate2": "4.8.5",
"strip_tokens": ["<pad>", "</s>"]}``. A bridge.json written before copies were recorded holds the transformers
weights alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bridge.datafiles import atomic_write
from bridge.learned.textformat import FORMAT_VERSION, NEGATIVE_SEPARATOR

__all__ = ["BRIDGE_FILE", "COPIES", "WEIGHTS", "BridgeInfo"]

BRIDGE_FILE = "bridge.json"
WEIGHTS = ("full", "lora")
COPIES = ("hf", "ct2")  # transformers weights (or adapter); a CTranslate2 copy (bridge.learned.fast)


@dataclass
class BridgeInfo:
    """bridge.json: what a learned bridge is and how it was made."""

    source: str
    target: str
    weights: str = "full"  # "full": the whole model in the folder; "lora": a peft adapter over base_model
    base_model: str | None = None  # hub id or path (relative to the folder) of the model an adapter applies to
    negatives: bool = True  # the model reads and writes negative prompts too
    num_beams: int = 1  # decoding translate() uses
    max_source_tokens: int = 256
    max_target_tokens: int = 256
    copies: dict[str, dict[str, Any]] = field(default_factory=lambda: {"hf": {"path": "."}})  # see the docstring
    format_version: int = FORMAT_VERSION
    text_format: dict[str, str] = field(default_factory=lambda: {
        "input": "{source} to {target}: {prompt}" + NEGATIVE_SEPARATOR + "{negative}",
        "output": "{prompt}" + NEGATIVE_SEPARATOR + "{negative}",
        "placeholders": "<extra_id_N> for protected syntax (bridge/learned/placeholders.py)",
    })
    training: dict[str, Any] = field(default_factory=dict)  # the config of the run
    data: dict[str, Any] = field(default_factory=dict)  # files, sha256 of the data, rows used
    metrics: dict[str, Any] = field(default_factory=dict)  # final evaluation on held-out pairs

    def __post_init__(self) -> None:
        if self.weights not in WEIGHTS:
            raise ValueError(f"bridge.json: weights must be one of {', '.join(WEIGHTS)} but is {self.weights!r}")
        if self.weights == "lora" and not self.base_model:
            raise ValueError("bridge.json: a LoRA bridge needs base_model (a hub id or a path inside the folder)")
        unknown = sorted(set(self.copies) - set(COPIES))
        if unknown:
            raise ValueError(f"bridge.json: unknown copy {unknown[0]!r} in copies; valid kinds: {', '.join(COPIES)}")
        if self.format_version > FORMAT_VERSION:
            raise ValueError(f"bridge.json has format version {self.format_version}; this prompt-bridge reads "
                             f"versions up to {FORMAT_VERSION}: upgrade prompt-bridge")
        if not self.negatives:
            self.text_format = {k: v.split(NEGATIVE_SEPARATOR)[0] if k != "placeholders" else v
                                for k, v in self.text_format.items()}

    @classmethod
    def load(cls, folder: str | os.PathLike) -> BridgeInfo:
        path = Path(folder) / BRIDGE_FILE
        data = json.loads(path.read_text(encoding="utf-8"))
        data.pop("kind", None)
        unknown = sorted(set(data) - {f for f in cls.__dataclass_fields__})
        if unknown:
            raise ValueError(f"{path}: unknown key {unknown[0]!r}; valid keys: {', '.join(cls.__dataclass_fields__)}")
        return cls(**data)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write bridge.json atomically (it marks the folder as a complete bridge)."""
        path = Path(folder) / BRIDGE_FILE
        atomic_write(path, json.dumps({"kind": "seq2seq", **asdict(self)}, indent=2, default=str) + "\n")
        return path

"""A tiny learned bridge folder with its CTranslate2 copy, for the front ends' tests: a random T5 of a few thousand
parameters, untrained (its raw outputs break placeholders, so a test that needs a real output sets one), exported by
bridge/export.py. Needs torch, transformers and ctranslate2 (tests skip without them)."""

import json
from pathlib import Path

CORPUS = Path(__file__).resolve().parent.parent / "data" / "corpora" / "diffusiondb_prompts.jsonl"


def make_bridge(folder: Path, source: str = "sd15", target: str = "sd21") -> Path:
    """Write a learned bridge for ``source`` -> ``target`` with an int8 CTranslate2 copy into ``folder``."""
    from bridge.export import export
    from bridge.learned.bridge_info import BridgeInfo
    from bridge.testing import t5_from_config, train_tokenizer

    lines = CORPUS.read_text(encoding="utf-8").splitlines()[:300]
    tokenizer = train_tokenizer([json.loads(line)["prompt"] for line in lines], vocab_size=400)
    t5_from_config(len(tokenizer), d_model=16, layers=1, heads=2, d_ff=32).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    BridgeInfo(source, target, max_target_tokens=16).save(folder)
    export(folder)
    return folder

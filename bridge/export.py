"""Export a learned bridge for the fast path: a CTranslate2 copy of its model, beside the transformers one.

    python -m bridge.export runs/sd15_to_sd2                         # int8, the default
    python -m bridge.export runs/sd15_to_sd2 --quantization float32
    python -m bridge.export user/sd15-to-sd2 --out runs/sd15_to_sd2  # a hub id: downloaded into --out, exported there

It writes ``DIR/ct2`` (CTranslate2's model.bin, config.json and vocabulary, and the tokenizer as transformers runs
it, ``tokenizer.json`` for the tokenizers package) and records it in ``DIR/bridge.json``
(``copies``), so ``translate-prompt --model DIR`` then runs on CTranslate2 with the fast extra alone: no torch, no
transformers (:mod:`bridge.learned.fast`). A LoRA bridge is merged into its base model first (``base_model``: a
folder inside the bridge, a local path, or a hub id), as the transformers path merges it at load time. CTranslate2's
own converter (``ctranslate2.converters.TransformersConverter``) does the conversion. training/train.py exports
each bridge it writes (``--no-ct2`` turns that off).

``--quantization``: int8 (the default: smallest and fastest on a CPU), int8_float16, float16 or float32. The float16
variants are for GPUs: a CPU runs float16 as float32 and int8_float16 as int8_float32. Exporting needs the ml extra
(torch, transformers, peft) and the fast extra (ctranslate2, tokenizers): ``pip install -e '.[ml,fast]'``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from bridge.datafiles import atomic_dir
from bridge.learned.bridge_info import BRIDGE_FILE, BridgeInfo
from bridge.learned.fast import CPU_FALLBACK, CT2_DIR, DEFAULT_QUANTIZATION, QUANTIZATIONS, TOKENIZER_FILE
from bridge.models import is_hub_id

__all__ = ["export", "export_ct2", "main"]

PROG = "python -m bridge.export"
NEEDED = {"torch": "ml", "transformers": "ml", "ctranslate2": "fast", "tokenizers": "fast"}
USAGE_ERROR, FAILURE = 2, 1


def export_ct2(folder: str | os.PathLike, info: BridgeInfo, quantization: str = DEFAULT_QUANTIZATION, *,
               trust_pickle: bool = False) -> dict[str, Any]:
    """Write the CTranslate2 copy of the bridge in ``folder`` (``folder/ct2``, replaced whole) and return its record
    for ``info.copies["ct2"]``; saving bridge.json is the caller's (training/train.py writes it last). Pickled
    weights (``pytorch_model.bin``) are read only with ``trust_pickle`` (else PickledWeightsError, a ValueError)."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantization!r}; valid: {', '.join(QUANTIZATIONS)}")
    from bridge.learned.seq2seq import check_weights, load_transformers_model

    folder = Path(folder)
    check_weights(folder, trust_pickle)  # before CTranslate2's converter, which would unpickle them
    import ctranslate2
    from ctranslate2.converters import TransformersConverter
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if not tokenizer.is_fast:
        raise ValueError(f"{folder}'s tokenizer has no tokenizers version to write {TOKENIZER_FILE} from")

    def convert(source: Path, target: Path) -> None:
        TransformersConverter(str(source)).convert(str(target), quantization=quantization, force=True)

    def write(target: Path) -> None:
        if info.weights != "lora":
            convert(folder, target)
        else:
            with tempfile.TemporaryDirectory(prefix="bridge-export-") as merged:  # the adapter merged into its base
                load_transformers_model(folder, info, trust_pickle=trust_pickle).save_pretrained(merged)
                tokenizer.save_pretrained(merged)
                convert(Path(merged), target)
        # The tokenizer as transformers runs it, for the tokenizers package: a tokenizer class may set its own
        # normalizer and pre-tokenizer over what the folder's tokenizer.json says (transformers 5's T5Tokenizer does).
        tokenizer.backend_tokenizer.save(str(target / TOKENIZER_FILE))

    atomic_dir(folder / CT2_DIR, write)
    # what the transformers path leaves out of a decoded output, the same tokens by name
    strip = sorted({t for t in (tokenizer.pad_token, tokenizer.eos_token, tokenizer.bos_token) if t})
    return {"path": CT2_DIR, "quantization": quantization, "ctranslate2": ctranslate2.__version__,
            "strip_tokens": strip}


def export(folder: str | os.PathLike, quantization: str = DEFAULT_QUANTIZATION, *, trust_pickle: bool = False
           ) -> BridgeInfo:
    """Export the bridge folder's CTranslate2 copy and record it in its bridge.json; returns the saved info."""
    folder = Path(folder)
    if not (folder / BRIDGE_FILE).is_file():
        raise ValueError(f"no {BRIDGE_FILE} in {str(folder)!r}: give a folder written by training/train.py or a hub "
                         "id with --out")
    info = BridgeInfo.load(folder)
    if "hf" not in info.copies:
        raise ValueError(f"{folder} holds no transformers weights to convert (bridge.json copies: "
                         f"{', '.join(info.copies)})")
    info.copies["ct2"] = export_ct2(folder, info, quantization, trust_pickle=trust_pickle)
    info.save(folder)
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bridge", metavar="DIR", help="a bridge folder (holding bridge.json), or a hub id with --out")
    parser.add_argument("--quantization", choices=QUANTIZATIONS, default=DEFAULT_QUANTIZATION,
                        help="weights of the copy (default: %(default)s; the float16 variants are for GPUs)")
    parser.add_argument("--out", metavar="DIR", help="with a hub id: the folder to download the bridge into")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="read pickled weights (pytorch_model.bin), which can run code as they load; by default "
                        "only safetensors are read")
    args = parser.parse_args(argv)
    missing = sorted({extra for name, extra in NEEDED.items() if importlib.util.find_spec(name) is None})
    if missing:
        print(f"{PROG}: error: exporting needs the {' and '.join(missing)} extra{'s' * (len(missing) > 1)}: "
              "pip install -e '.[ml,fast]' in a prompt-bridge clone", file=sys.stderr)
        return FAILURE
    try:
        folder = _bridge_folder(args.bridge, args.out)
        export(folder, args.quantization, trust_pickle=args.trust_pickle)
    except ValueError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except OSError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return FAILURE
    print(f"wrote {folder / CT2_DIR} ({args.quantization}); translate-prompt --model {folder} runs on it")
    if args.quantization in CPU_FALLBACK:
        print(f"note: a CPU runs {args.quantization} as {CPU_FALLBACK[args.quantization]}; it pays off on a GPU",
              file=sys.stderr)
    return 0


def _bridge_folder(name: str, out: str | None) -> Path:
    """The folder to export: ``name`` itself, or a hub id downloaded into ``out``."""
    if Path(name).exists():
        if out is not None:
            raise ValueError("--out is for a hub id; a bridge folder is exported in place")
        return Path(name)
    if not is_hub_id(name):
        raise ValueError(f"no bridge folder at {name!r}: give a folder written by training/train.py, or a hub id "
                         "such as user/sd15-to-sd2 with --out DIR")
    if out is None:
        raise ValueError(f"{name!r} is a hub id: give --out DIR, the folder to download it into and export there")
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(name, local_dir=out))


if __name__ == "__main__":
    sys.exit(main())

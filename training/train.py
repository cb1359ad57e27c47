"""Train a learned bridge: a seq2seq model (T5 family) that rewrites prompts written for one model for the next.

Quick start, on a CPU in about a minute: a tiny random T5 and a tokenizer trained here, on pairs this script builds
from the DiffusionDB corpus with the rules bridge (it learns to imitate the rules; a smoke test of the whole loop):

    python training/train.py --tiny --out runs/tiny
    translate-prompt --model runs/tiny "a castle on a hill, by greg rutkowski, 8k"

Real runs train a pretrained model on pairs from the data builder (data/build_pairs.py: Parquet shards with columns
source_prompt, source_negative, target_prompt, target_negative and optionally split):

    # one GPU
    accelerate launch training/train.py --config training/configs/sd15_to_sd2.toml --data runs/pairs \\
        --out runs/sd15_to_sd2
    # 8 GPUs on one machine, bf16
    accelerate launch --multi_gpu --num_processes 8 --mixed_precision bf16 training/train.py \\
        --config training/configs/sd15_to_sd2.toml --data runs/pairs --out runs/sd15_to_sd2
    # 2 machines x 8 GPUs: the same command on each, with --machine_rank 0 and 1
    accelerate launch --multi_gpu --num_machines 2 --num_processes 16 --machine_rank 0 \\
        --main_process_ip 10.0.0.1 --main_process_port 29500 training/train.py \\
        --config training/configs/sd15_to_sd2.toml --data runs/pairs --out runs/sd15_to_sd2

A new model pair is a new config (training/configs/sd2_to_sdxl.toml) and pairs built for it; a model the packaged
registry lacks comes from --registry FILE (training/README.md, "Bridge the next model").

Settings come from the dataclass defaults below, then ``--tiny``'s presets, then ``--config FILE.toml`` (flat keys,
the field names), then command-line flags (``--field-name value``; ``--lora``/``--full``; ``--help`` lists them).

What one run does, in order:
1. pairs: ``--data`` (a folder of Parquet shards, a .parquet or a .jsonl file), or with ``--tiny`` and no data, its
   own. Rows with ``split`` "train" train, "eval"/"validation"/"dev" evaluate, others ("test") are left out; without
   a split column a stable hash of the source prompt holds out ``eval_fraction``.
2. encoding (bridge/learned/seq2seq.py, bridge/learned/placeholders.py): protected syntax becomes placeholders in inputs and targets;
   a pair whose target does not keep the source's protected syntax is skipped (counted in the log).
3. model: ``--model`` (hub id or path, any AutoModelForSeq2SeqLM), with a LoRA adapter (``--lora``, peft) or fully
   fine-tuned (``--full``); with ``--tiny``, a small T5 from config (``--d-model``, ``--layers``...).
4. the loop: AdamW with transformers' "cosine_with_min_lr" schedule (linear warm-up from 0 over ``warmup`` steps,
   then cosine decay to ``min_lr_ratio`` of the peak); batches padded by DataCollatorForSeq2Seq; accelerate handles
   devices, mixed precision, gradient accumulation and multi-GPU/multi-node data parallelism (each process takes its
   share of every global batch). Every epoch goes through the training pairs in a new order fixed by ``seed``.
   Every ``eval_every`` steps, on held-out pairs: loss, chrF, exact match and syntax preservation (the share of raw
   outputs with every placeholder intact), logged and appended to OUT/metrics.jsonl.
5. checkpoints every ``save_every`` steps in OUT/checkpoints/step-N (model or adapter, optimizer, scheduler, RNG
   states, sampler, the step that fixes the data position), written to a temporary folder and renamed, so a kill -9
   leaves the last complete one. Rerun the same command and training continues from it, on the same batches, and
   ends with the same loss as a run that was never stopped.
6. the bridge folder OUT: weights (or adapter, and for a random tiny base the base in OUT/base), tokenizer,
   train_config.toml, metrics.jsonl, the CTranslate2 copy OUT/ct2 that translate-prompt runs on without torch
   (bridge/export.py: an adapter merged into its base, ``ct2_quantization`` int8 by default; ``--no-ct2`` writes
   none; it needs the fast extra), a model card README.md, and bridge.json last (it marks the folder complete).
   Publish it without OUT/checkpoints (see training/README.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import random
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from bridge.datafiles import atomic_dir
from bridge.learned.seq2seq import BridgeInfo, Example, encode_example
from bridge.translation import TranslationOptions

REPO = Path(__file__).resolve().parents[1]

TINY_CORPUS = REPO / "data" / "corpora" / "diffusiondb_prompts.jsonl"
TINY_MAX_CHARS = 100  # short prompts keep the tiny run fast
TINY_WEIGHTS = (0.8, 1.1, 1.2, 1.3)  # weights the tiny pairs put on a phrase, so the model sees placeholders
TINY_SYNTAX_RATE = 0.3  # share of tiny pairs given a weighted phrase (and, half as often, a BREAK)
COLUMNS = ("source_prompt", "source_negative", "target_prompt", "target_negative")
EVAL_SPLITS = ("eval", "validation", "valid", "dev")
HASH_BUCKETS = 10_000
# may change between resumed runs
RESUME_FREE = ("out", "data", "eval_every", "save_every", "log_every", "eval_pairs", "ct2", "ct2_quantization")
CHECKPOINTS = "checkpoints"
USAGE_ERROR, FAILURE = 2, 1


@dataclass
class TrainConfig:
    out: str | None = field(default=None, metadata={"help": "the bridge folder to write (checkpoints inside)"})
    data: str | None = field(default=None, metadata={"help": "pairs: a folder of Parquet shards, .parquet or .jsonl"})
    registry: str | None = field(default=None, metadata={
        "help": "your own registry file (the layout of bridge/data/models.toml) that defines source and target"})
    source: str = field(default="sd15", metadata={"help": "source model key (bridge/data/models.toml or --registry)"})
    target: str = field(default="sd2", metadata={"help": "target model key"})
    model: str | None = field(default="google/flan-t5-base", metadata={"help": "base model: hub id or path"})
    tiny: bool = field(default=False, metadata={"help": "tiny random T5 + trained tokenizer; own pairs if no --data"})
    lora: bool = field(default=True, metadata={"help": "LoRA adapter (--lora) or full fine-tuning (--full)"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    lora_targets: str = field(default="all-linear", metadata={"help": "modules to adapt: all-linear or e.g. q,v"})
    negatives: bool = field(default=True, metadata={"help": "the model also reads and writes negative prompts"})
    networks: str = field(default="remove", metadata={"help": "network policy for inputs: remove or keep"})
    steps: int = field(default=3000, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=32, metadata={"help": "pairs per process per micro-batch"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    lr: float = field(default=3e-4, metadata={"help": "peak learning rate"})
    min_lr_ratio: float = field(default=0.1, metadata={"help": "final learning rate as a share of the peak"})
    warmup: int = field(default=100, metadata={"help": "warm-up steps (linear from 0)"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    grad_clip: float = field(default=1.0, metadata={"help": "gradient norm clip (0: none)"})
    mixed_precision: str | None = field(default=None, metadata={"help": "no, fp16 or bf16 (default: accelerate's)"})
    eval_every: int = field(default=250, metadata={"help": "evaluate every N steps (0: only at the end)"})
    save_every: int = field(default=250, metadata={"help": "checkpoint every N steps (0: never)"})
    eval_fraction: float = field(default=0.05, metadata={"help": "held-out share when the data has no split"})
    eval_pairs: int = field(default=512, metadata={"help": "held-out pairs evaluated (loss and generation)"})
    max_source_tokens: int = field(default=256, metadata={"help": "input truncation"})
    max_target_tokens: int = field(default=256, metadata={"help": "target truncation and generation limit"})
    num_beams: int = field(default=1, metadata={"help": "beams the bridge translates with"})
    ct2: bool = field(default=True, metadata={
        "help": "also write the CTranslate2 copy (OUT/ct2) that translate-prompt runs on without torch (--no-ct2: not)"})
    ct2_quantization: str = field(default="int8", metadata={
        "help": "weights of the CTranslate2 copy: int8, int8_float16, float16 or float32 (float16 ones for GPUs)"})
    seed: int = field(default=0, metadata={"help": "seed for initialisation, data order, dropout"})
    cpu_threads: int = field(default=0, metadata={"help": "torch CPU threads (0: torch's default)"})
    log_every: int = field(default=10, metadata={"help": "print the training loss every N steps"})
    tiny_pairs: int = field(default=2000, metadata={"help": "--tiny without --data: pairs to build"})
    vocab_size: int = field(default=2000, metadata={"help": "--tiny: tokenizer vocabulary"})
    d_model: int = field(default=64, metadata={"help": "--tiny: model width"})
    layers: int = field(default=2, metadata={"help": "--tiny: encoder and decoder layers"})
    heads: int = field(default=4, metadata={"help": "--tiny: attention heads"})
    d_ff: int = field(default=256, metadata={"help": "--tiny: feed-forward width"})

    def __post_init__(self) -> None:
        from bridge.models import get_model
        from bridge.workflows.common import use_registry_file

        use_registry_file(self.registry)  # raises UsageError, a ValueError
        self.source, self.target = get_model(self.source).key, get_model(self.target).key
        if self.networks not in ("remove", "keep"):
            raise ValueError(f"networks must be 'remove' or 'keep' but is {self.networks!r}")
        from bridge.learned.fast import QUANTIZATIONS

        if self.ct2_quantization not in QUANTIZATIONS:
            raise ValueError(f"ct2_quantization must be one of {', '.join(QUANTIZATIONS)} but is "
                             f"{self.ct2_quantization!r}")
        if self.mixed_precision not in (None, "no", "fp16", "bf16"):
            raise ValueError(f"mixed_precision must be no, fp16 or bf16 but is {self.mixed_precision!r}")
        for name in ("steps", "batch_size", "grad_accum", "eval_pairs", "max_source_tokens", "max_target_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1 but is {getattr(self, name)}")
        if not 0 < self.eval_fraction < 1:
            raise ValueError(f"eval_fraction must be between 0 and 1 but is {self.eval_fraction}")
        if not self.tiny and not self.data:
            raise ValueError("give --data (pairs from data/build_pairs.py), or --tiny to train on pairs built here")
        if not self.tiny and not self.model:
            raise ValueError("give --model (a hub id such as google/flan-t5-base, or a path), or --tiny")


# --tiny: a CPU-sized run (about a minute); anything set in a config file or on the command line wins. One CPU
# thread: for a model this small, thread start-up costs more than it saves (10x slower with 2 busy cores).
TINY = {"model": None, "lora": False, "steps": 400, "batch_size": 16, "lr": 3e-3, "warmup": 20, "eval_every": 100,
        "save_every": 100, "eval_pairs": 64, "cpu_threads": 1, "max_source_tokens": 128, "max_target_tokens": 128, "log_every": 50}


def parse_config(argv: list[str] | None) -> TrainConfig:
    """Defaults, then --tiny presets, then the --config file, then flags (raises ValueError on a bad value)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="FILE.toml", help="a config file (training/configs/)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "lora":
            group = parser.add_mutually_exclusive_group()
            group.add_argument("--lora", dest="lora", action="store_true", default=None, help=f.metadata["help"])
            group.add_argument("--full", dest="lora", action="store_false", help="full fine-tuning")
        elif isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=f.metadata["help"])
        else:
            kind = type(f.default) if f.default is not None else str
            parser.add_argument(flag, type=kind, default=None, help=f.metadata["help"])
    args = parser.parse_args(argv)
    given: dict[str, Any] = {}
    if args.config:
        given = read_config(Path(args.config))
    given |= {k: v for k, v in vars(args).items() if v is not None and k != "config"}
    return TrainConfig(**((TINY if given.get("tiny") else {}) | given))


def read_config(path: Path) -> dict[str, Any]:
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config file {path} is not valid TOML: {exc}") from None
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"{path}: unknown key {unknown[0]!r}; valid keys: {', '.join(names)}")
    return values


def write_config(config: TrainConfig, path: Path) -> None:
    """The config as TOML (None values left out), so `--config OUT/train_config.toml` reruns it."""
    lines = ["# The config this bridge was trained with (training/train.py --config this_file reruns it)."]
    for key, value in dataclasses.asdict(config).items():
        if value is not None:
            lines.append(f"{key} = {json.dumps(value)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------------------------------
# Pairs


def load_pairs(data: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows of a .jsonl file, a .parquet file or a folder of Parquet shards; and what was read (files, sha256)."""
    path = Path(data)
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    if not path.exists() or not files:
        raise ValueError(f"no pairs at {data!r}: give a folder of Parquet shards, a .parquet or a .jsonl file")
    digest = hashlib.sha256()
    rows: list[dict[str, Any]] = []
    for file in files:
        digest.update(file.read_bytes())
        if file.suffix == ".jsonl":
            rows += [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
        elif file.suffix == ".parquet":
            import pyarrow.parquet as pq

            rows += pq.read_table(file).to_pylist()
        else:
            raise ValueError(f"pairs file {file} must be .parquet or .jsonl")
    missing = [c for c in COLUMNS if rows and c not in rows[0]]
    if missing:
        raise ValueError(f"{data}: the pairs lack column {missing[0]!r}; needed: {', '.join(COLUMNS)}")
    return rows, {"files": [str(f) for f in files], "sha256": digest.hexdigest(), "rows": len(rows)}


def tiny_pairs(config: TrainConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Short DiffusionDB prompts (some given a weight or a BREAK) and their rules-bridge translations. The emphasis
    rule is off: the learned bridge keeps weights as written, so targets that changed them could not teach it."""
    from bridge.recipe import Recipe
    from bridge.translation import load_translator

    rng = random.Random(config.seed)
    lines = TINY_CORPUS.read_text(encoding="utf-8").splitlines()
    prompts = sorted({p for p in (json.loads(line)["prompt"].strip() for line in lines) if 0 < len(p) <= TINY_MAX_CHARS})
    rng.shuffle(prompts)
    rules = load_translator("rules", source=config.source, target=config.target)
    options = TranslationOptions(networks=config.networks, disable=("emphasis",))
    rows = []
    for prompt in prompts[: config.tiny_pairs]:
        source = with_syntax(prompt, rng)
        result = rules.translate(Recipe(prompt=source), options)
        rows.append({"source_prompt": source, "source_negative": "", "target_prompt": result.prompt,
                     "target_negative": result.negative_prompt})
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
    return rows, {"files": [f"built by --tiny from {TINY_CORPUS.relative_to(REPO)}"], "sha256": digest,
                  "rows": len(rows)}


def with_syntax(prompt: str, rng: random.Random) -> str:
    """Sometimes weight one comma phrase, sometimes turn a comma into BREAK (the tiny pairs' protected syntax)."""
    phrases = prompt.split(", ")
    if rng.random() < TINY_SYNTAX_RATE:
        i = rng.randrange(len(phrases))
        phrases[i] = f"({phrases[i]}:{rng.choice(TINY_WEIGHTS)})"
    if len(phrases) > 1 and rng.random() < TINY_SYNTAX_RATE / 2:
        i = rng.randrange(1, len(phrases))
        return ", ".join(phrases[:i]) + " BREAK " + ", ".join(phrases[i:])
    return ", ".join(phrases)


def split_pairs(rows: list[dict[str, Any]], eval_fraction: float) -> tuple[list[dict], list[dict]]:
    """(train, eval): by the ``split`` column when it names eval rows, else by a stable hash of the source prompt."""
    if any(r.get("split") in EVAL_SPLITS for r in rows):
        return [r for r in rows if r.get("split") == "train"], [r for r in rows if r.get("split") in EVAL_SPLITS]
    rows = [r for r in rows if r.get("split") in (None, "train")]

    def held_out(row: dict) -> bool:
        digest = hashlib.sha256(str(row["source_prompt"]).encode()).digest()
        return int.from_bytes(digest[:8], "big") % HASH_BUCKETS < eval_fraction * HASH_BUCKETS

    return [r for r in rows if not held_out(r)], [r for r in rows if held_out(r)]


def encode_pairs(rows: list[dict], config: TrainConfig) -> tuple[list[Example], int]:
    """Encoded pairs, and how many were skipped (their target breaks protected syntax, or too much of it)."""
    from bridge.learned.placeholders import TooManySlotsError

    options = TranslationOptions(networks=config.networks)
    examples = []
    for row in rows:
        try:
            example = encode_example(
                row["source_prompt"], row["source_negative"] or "", source=config.source, target=config.target,
                negatives=config.negatives, options=options, target_prompt=row["target_prompt"],
                target_negative=row["target_negative"] or "")
        except TooManySlotsError:
            example = None
        if example is not None:
            examples.append(example)
    return examples, len(rows) - len(examples)


# --------------------------------------------------------------------------------------------------------------------
# Model, batches, schedule


def tiny_tokenizer(examples: list[Example], vocab_size: int, out: Path, accelerator: Any) -> Any:
    """A tokenizer trained on the pairs, kept in OUT/checkpoints/tokenizer so a resumed run (and every process)
    tokenizes the same way."""
    from transformers import AutoTokenizer

    from bridge.testing import train_tokenizer

    saved = out / CHECKPOINTS / "tokenizer"
    if accelerator.is_main_process and not saved.is_dir():
        texts = [t for e in examples for t in (e.input_text, e.target_text)]
        saved.parent.mkdir(parents=True, exist_ok=True)
        atomic_dir(saved, train_tokenizer(texts, vocab_size).save_pretrained)
    accelerator.wait_for_everyone()
    return AutoTokenizer.from_pretrained(saved)


def build_model(config: TrainConfig, tokenizer: Any, out: Path, is_main: bool) -> tuple[Any, Any]:
    """(model, tokenizer): pretrained by --model, or with --tiny a small T5 from config for ``tokenizer``. LoRA
    wraps the model with peft; a random tiny base is saved in OUT/base, as the bridge needs it."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from bridge.learned.placeholders import MAX_SLOTS, placeholder
    from bridge.testing import t5_from_config

    if config.tiny:
        model = t5_from_config(len(tokenizer), d_model=config.d_model, layers=config.layers, heads=config.heads,
                               d_ff=config.d_ff, seed=config.seed)
    else:
        tokenizer = AutoTokenizer.from_pretrained(config.model)
        model = AutoModelForSeq2SeqLM.from_pretrained(config.model)
        sentinels = [placeholder(i) for i in range(MAX_SLOTS)]
        if tokenizer.unk_token_id in tokenizer.convert_tokens_to_ids(sentinels):
            if config.lora:
                raise ValueError(f"{config.model}'s tokenizer has no <extra_id_N> tokens for placeholders; use a "
                                 "T5-family model, or --full to add them")
            tokenizer.add_special_tokens({"additional_special_tokens": sentinels})
            model.resize_token_embeddings(len(tokenizer))
    if config.lora:
        from peft import LoraConfig, TaskType, get_peft_model

        if config.tiny and is_main:  # a random base ships inside the bridge folder
            atomic_dir(out / "base", model.save_pretrained)
        targets = config.lora_targets if config.lora_targets == "all-linear" else config.lora_targets.split(",")
        model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_2_SEQ_LM, r=config.lora_r,
                                                 lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                                                 target_modules=targets))
    return model, tokenizer


def base_model_reference(config: TrainConfig) -> str | None:
    """What bridge.json names as the base of a LoRA bridge: "base" (inside the folder) for a random tiny base, an
    absolute path for a local model, else the hub id."""
    if not config.lora:
        return None
    if config.tiny:
        return "base"
    local = Path(config.model)
    return str(local.resolve()) if local.exists() else config.model


def tokenize(examples: list[Example], tokenizer: Any, config: TrainConfig) -> list[dict[str, list[int]]]:
    """Token ids of inputs and targets, unpadded: DataCollatorForSeq2Seq pads each batch (labels with -100)."""
    inputs = tokenizer([e.input_text for e in examples], truncation=True, max_length=config.max_source_tokens)
    labels = tokenizer([e.target_text for e in examples], truncation=True, max_length=config.max_target_tokens)
    return [{"input_ids": i, "labels": o} for i, o in zip(inputs["input_ids"], labels["input_ids"], strict=True)]


def make_accelerator(config: TrainConfig) -> Any:
    """The Accelerator of a run. Gradient accumulation syncs every ``grad_accum`` micro-batches and not at the end
    of an epoch of the data loader (sync_with_dataloader=False): an optimizer step is exactly ``grad_accum``
    micro-batches wherever epochs end, which keeps step N at micro-batch N * grad_accum, the data position a
    checkpoint restores. The seedable sampler shuffles epoch e with seed ``seed + e``."""
    from accelerate import Accelerator, DataLoaderConfiguration
    from accelerate.utils import GradientAccumulationPlugin

    return Accelerator(
        mixed_precision=config.mixed_precision,
        gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=config.grad_accum,
                                                                sync_with_dataloader=False),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=config.seed))


def train_loader(rows: list, collate_fn: Any, batch_size: int, accelerator: Any) -> Any:
    """The training DataLoader, prepared by accelerate: each epoch a seeded permutation of ``rows`` (accelerate's
    seedable sampler: epoch e is torch.randperm with seed ``data_seed + e``), cut into batches of ``batch_size``;
    with N processes, process r takes batches r, r + N, r + 2N, ... The last batch of an epoch may be smaller."""
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    loader = DataLoader(rows, batch_size=batch_size, collate_fn=collate_fn,
                        # range(len(rows)), not rows: the sampler accelerate saves in every checkpoint stays small
                        sampler=RandomSampler(range(len(rows))),
                        # a generator of its own: starting an epoch draws no number from torch's global RNG, whose
                        # state (dropout's) a checkpoint restores and a resumed run must not shift
                        generator=torch.Generator())
    return accelerator.prepare(loader)


def micro_batches(loader: Any, first: int, accelerator: Any) -> Iterator[Any]:
    """Micro-batches ``first``, ``first`` + 1, ... of the run: epoch after epoch of ``loader`` (set_epoch fixes
    each epoch's order), the first epoch entered ``first % len(loader)`` batches in (accelerate's
    skip_first_batches). A function of ``first`` alone, so a resumed run sees the batches the interrupted one
    would have."""
    epoch, skip = divmod(first, len(loader))
    while True:
        loader.set_epoch(epoch)
        yield from accelerator.skip_first_batches(loader, skip) if skip else loader
        epoch, skip = epoch + 1, 0


# --------------------------------------------------------------------------------------------------------------------
# Evaluation and checkpoints


def evaluate(model: Any, tokenizer: Any, info: BridgeInfo, examples: list[Example], config: TrainConfig) -> dict:
    """Held-out loss (per target token) and generation metrics (see bridge.learned.seq2seq.evaluate_examples)."""
    import torch
    from transformers import DataCollatorForSeq2Seq

    from bridge.learned.seq2seq import Seq2SeqTranslator, evaluate_examples

    examples = examples[: config.eval_pairs]
    model.eval()
    rows = tokenize(examples, tokenizer, config)
    collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)
    total, tokens = 0.0, 0
    with torch.inference_mode():
        for first in range(0, len(rows), config.batch_size):
            batch = collator(rows[first : first + config.batch_size]).to(model.device)
            count = int((batch["labels"] != -100).sum())
            total += float(model(**batch).loss) * count
            tokens += count
    metrics = {"eval_loss": total / max(tokens, 1)}
    metrics |= evaluate_examples(Seq2SeqTranslator(model, tokenizer, info), examples, batch_size=config.batch_size)
    model.train()
    return metrics


def _publish(tmp: Path, final: Path) -> None:
    """Flush every file of ``tmp`` to disk, then rename it to ``final`` (replacing an older one)."""
    for file in tmp.rglob("*"):
        if file.is_file():
            with file.open("rb") as handle:
                os.fsync(handle.fileno())
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def latest_checkpoint(out: Path) -> Path | None:
    found = sorted((out / CHECKPOINTS).glob("step-*[0-9]"))
    return found[-1] if found else None


def save_checkpoint(accelerator: Any, out: Path, state: dict) -> None:
    """Model, optimizer, scheduler and RNG states (accelerate) plus trainer_state.json, in OUT/checkpoints/step-N;
    older checkpoints are removed once the new one is in place."""
    final = out / CHECKPOINTS / f"step-{state['step']:08d}"
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1), encoding="utf-8")
        _publish(tmp, final)
        for old in (out / CHECKPOINTS).glob("step-*[0-9]"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def check_resumable(saved: dict, config: TrainConfig, data_sha: str) -> None:
    now = {k: v for k, v in dataclasses.asdict(config).items() if k not in RESUME_FREE}
    then = {k: v for k, v in saved["config"].items() if k not in RESUME_FREE}
    for key, value in now.items():
        if value != then.get(key):
            raise ValueError(f"{config.out} holds a checkpoint of a run with {key} = {then.get(key)!r}, not "
                             f"{value!r}; rerun with the same settings, or use a new --out")
    if saved["data_sha256"] != data_sha:
        raise ValueError(f"{config.out} holds a checkpoint trained on other data (sha256 {saved['data_sha256'][:12]}"
                         f"…, now {data_sha[:12]}…); use the same data, or a new --out")


# --------------------------------------------------------------------------------------------------------------------
# The bridge folder


def write_bridge(out: Path, model: Any, tokenizer: Any, info: BridgeInfo, config: TrainConfig,
                 history: list[dict]) -> None:
    if config.lora:
        model.save_pretrained(out)  # adapter_config.json + adapter_model.safetensors
    else:
        model.save_pretrained(out)  # config.json + model.safetensors
    tokenizer.save_pretrained(out)
    write_config(config, out / "train_config.toml")
    (out / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history), encoding="utf-8")
    if config.ct2:
        write_ct2_copy(out, info, config.ct2_quantization)
    (out / "README.md").write_text(model_card(info, config), encoding="utf-8")
    info.save(out)


def write_ct2_copy(out: Path, info: BridgeInfo, quantization: str) -> None:
    """The CTranslate2 copy (bridge/export.py), recorded in ``info``; without the fast extra, a note of how to make
    it later (a finished training run is not failed for it)."""
    import importlib.util

    if importlib.util.find_spec("ctranslate2") is None:
        print(f"train.py: no CTranslate2 copy written: install the fast extra (pip install -e '.[fast]'), then run "
              f"python -m bridge.export {out}", file=sys.stderr)
        return
    from bridge.export import export_ct2

    info.copies["ct2"] = export_ct2(out, info, quantization)


def model_card(info: BridgeInfo, config: TrainConfig) -> str:
    m = info.metrics
    base = info.base_model or ("tiny random T5 (from config)" if config.tiny else config.model)
    ct2 = info.copies.get("ct2")
    ct2_line = (f"The folder holds a CTranslate2 copy (`ct2/`, {ct2['quantization']}): with it the fast extra alone "
                "(`prompt-bridge[fast]`: ctranslate2 and tokenizers, no torch) runs the bridge, several times faster "
                "on a CPU." if ct2 else "Make a CTranslate2 copy for the fast path with `python -m bridge.export PATH`.")
    metric_lines = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in m.items())
    return f"""# prompt-bridge: learned bridge {info.source} → {info.target}

A seq2seq model that rewrites Stable Diffusion prompts written for `{info.source}` into prompts for `{info.target}`,
trained with prompt-bridge's `training/train.py`. Protected syntax (weights, prompt editing, alternation, BREAK, AND,
kept LoRA tags) is carried through placeholders, so the model cannot change it.

- base model: {base}; weights: {"LoRA adapter" if info.weights == "lora" else "full"}
- text format (version {info.format_version}): `{info.text_format["input"]}` → `{info.text_format["output"]}`
- data: {", ".join(map(str, info.data.get("files", [])))} (sha256 {info.data.get("sha256", "?")[:16]}…),
  {info.data.get("train_pairs", "?")} training and {info.data.get("eval_pairs", "?")} held-out pairs
- config: `train_config.toml`; evaluation history: `metrics.jsonl`

## Held-out metrics

| metric | value |
|---|---|
{metric_lines}

## Use

```bash
pip install 'prompt-bridge[ml]'
translate-prompt --model PATH_OR_HUB_ID "a castle on a hill, by greg rutkowski, 8k"
```

{ct2_line}

```python
from bridge.translation import load_translator
bridge = load_translator("PATH_OR_HUB_ID")
print(bridge.translate("a castle on a hill, by greg rutkowski, 8k").prompt)
```

## Publish

```bash
hf upload USER/{info.source}-to-{info.target} PATH . --exclude "checkpoints/*"
```
"""


# --------------------------------------------------------------------------------------------------------------------
# The run


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_config(argv)
        if not config.out:
            raise ValueError("give --out DIR, the bridge folder to write")
        if config.data and not Path(config.data).exists():
            raise ValueError(f"no pairs at {config.data!r}: give a folder of Parquet shards, a .parquet or a .jsonl")
    except ValueError as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    try:
        return train(config)
    except ValueError as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return FAILURE


def train(config: TrainConfig) -> int:
    import torch
    from accelerate.utils import set_seed
    from transformers import DataCollatorForSeq2Seq, get_scheduler

    out = Path(config.out)
    if config.cpu_threads:
        torch.set_num_threads(config.cpu_threads)
    accelerator = make_accelerator(config)
    log = accelerator.print
    set_seed(config.seed)

    # ---- pairs
    rows, data_info = load_pairs(config.data) if config.data else tiny_pairs(config)
    train_rows, eval_rows = split_pairs(rows, config.eval_fraction)
    train_set, skipped_train = encode_pairs(train_rows, config)
    eval_set, skipped_eval = encode_pairs(eval_rows, config)
    if not train_set:
        raise ValueError(f"no usable training pairs in {config.data or 'the tiny pairs'} ({len(rows)} rows, "
                         f"{skipped_train} skipped)")
    data_info |= {"train_pairs": len(train_set), "eval_pairs": len(eval_set),
                  "skipped_pairs": skipped_train + skipped_eval}
    log(f"pairs: {len(train_set)} train, {len(eval_set)} held out, {skipped_train + skipped_eval} skipped "
        "(target breaks protected syntax)")

    # ---- model, optimizer, schedule
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    tokenizer = tiny_tokenizer(train_set, config.vocab_size, out, accelerator) if config.tiny else None
    model, tokenizer = build_model(config, tokenizer, out, accelerator.is_main_process)
    rows_train = tokenize(train_set, tokenizer, config)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    # linear warm-up from 0 over `warmup` steps, then cosine decay to min_lr_ratio of the peak at `steps`. Not
    # prepared by accelerate (that would step it once per process): it steps once per optimizer step, below.
    scheduler = get_scheduler("cosine_with_min_lr", optimizer, num_warmup_steps=config.warmup,
                              num_training_steps=config.steps,
                              scheduler_specific_kwargs={"min_lr_rate": config.min_lr_ratio})
    loader = train_loader(rows_train, DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100), config.batch_size,
                          accelerator)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    info = BridgeInfo(config.source, config.target, weights="lora" if config.lora else "full",
                      base_model=base_model_reference(config),
                      negatives=config.negatives, num_beams=config.num_beams,
                      max_source_tokens=config.max_source_tokens, max_target_tokens=config.max_target_tokens,
                      training=dataclasses.asdict(config), data=data_info)

    # ---- resume
    state = {"step": 0, "history": [], "train_loss": None}
    if accelerator.is_main_process:  # a save that a kill interrupted
        for partial in (out / CHECKPOINTS).glob("*.tmp"):
            shutil.rmtree(partial, ignore_errors=True)
    checkpoint = latest_checkpoint(out)
    if checkpoint is not None:
        saved = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
        check_resumable(saved, config, data_info["sha256"])
        accelerator.load_state(str(checkpoint))
        state = {k: saved[k] for k in state}
        log(f"resumed from {checkpoint} (step {state['step']})")

    unwrapped = accelerator.unwrap_model(model)

    def record(step: int, metrics: dict) -> None:
        entry = {"step": step, "train_loss": state["train_loss"], **metrics}
        state["history"].append(entry)
        log("eval " + " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in entry.items()))
        if accelerator.is_main_process:
            (out / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in state["history"]), "utf-8")

    # ---- the loop
    model.train()
    started = time.perf_counter()
    batches = micro_batches(loader, state["step"] * config.grad_accum, accelerator)
    for step in range(state["step"], config.steps):
        losses = []
        for _ in range(config.grad_accum):
            batch = next(batches)
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.grad_clip:
                    accelerator.clip_grad_norm_(trainable, config.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach())
        scheduler.step()
        state["step"] = step + 1
        state["train_loss"] = float(accelerator.reduce(torch.stack(losses).mean(), "mean"))
        if state["step"] % config.log_every == 0 or state["step"] == 1:
            elapsed = time.perf_counter() - started
            log(f"step {state['step']}/{config.steps} loss {state['train_loss']:.4f} "
                f"lr {scheduler.get_last_lr()[0]:.2e} ({elapsed:.1f}s)")
        if config.eval_every and state["step"] % config.eval_every == 0 and state["step"] < config.steps and eval_set:
            if accelerator.is_main_process:
                record(state["step"], evaluate(unwrapped, tokenizer, info, eval_set, config))
            accelerator.wait_for_everyone()
        if config.save_every and (state["step"] % config.save_every == 0 or state["step"] == config.steps):
            save_checkpoint(accelerator, out, {**state, "config": dataclasses.asdict(config),
                                               "data_sha256": data_info["sha256"]})

    # ---- the bridge folder
    if accelerator.is_main_process:
        final = evaluate(unwrapped, tokenizer, info, eval_set, config) if eval_set else {}
        record(state["step"], final)
        info.metrics = {"step": state["step"], "final_train_loss": state["train_loss"], **final}
        write_bridge(out, unwrapped, tokenizer, info, config, state["history"])
        log(f"wrote the bridge to {out} (load it with translate-prompt --model {out})")
    accelerator.wait_for_everyone()
    return 0


if __name__ == "__main__":
    sys.exit(main())

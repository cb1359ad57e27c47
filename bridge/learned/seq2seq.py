"""The learned bridge: a seq2seq model (T5 family, optionally a LoRA adapter) that rewrites SD1.x prompts for SD2.

    from bridge.load import load_translator

    bridge = load_translator("runs/sd15_to_sd2")       # a folder written by training/train.py, or a hub id
    t = bridge.translate("a (castle:1.3), by greg rutkowski, 8k")
    t.prompt, t.recipe.width, t.changes[0].rule         # a Translation, as the rules bridge returns
    # ('a (castle:1.3), dramatic fantasy painting', 768, 'seq2seq')

The text format (``FORMAT_VERSION`` 1). The model reads the source prompt and negative, with their protected syntax
swapped for placeholders (:mod:`bridge.learned.placeholders`), and writes the target prompt and negative::

    input:   sd15 to sd2: <prompt> negative: <negative>
    output:  <prompt> negative: <negative>

A bridge trained without negatives (``negatives: false`` in bridge.json) reads and writes the prompt alone
(``sd15 to sd2: <prompt>`` → ``<prompt>``); its negative prompt comes from the rules bridge. The separator is plain
words because T5's vocabulary lacks characters such as ``<``, ``{`` and ``}`` (they decode as ``⁇``); a literal
``negative:`` in a prompt reaches the model as a placeholder, so the first one in an output is the separator.

What comes from where in a :class:`~bridge.translation.Translation`: the model's prompt (and negative, when the
bridge predicts it); the rules bridge's negative otherwise, and always its size and settings (steps, CFG, sampler,
model); the network policy's changes and warnings (removed or mapped LoRA tags and embeddings, as the rules bridge
reports them); one ``seq2seq`` change per rewritten prompt. When the raw model output breaks a placeholder (one
missing, repeated, invented or out of order), that item falls back to the rules bridge's prompt, with a warning.
A pair with no direct rules bridge (sdxl → sd15) uses the rules engine's structural stages only (networks, size,
settings) and keeps the prompt as written as the fallback.

The bridge folder: ``bridge.json`` (:class:`BridgeInfo`), the tokenizer, and full weights (``model.safetensors``) or
a peft adapter (``adapter_model.safetensors``) over ``base_model`` (a hub id, or a path relative to the folder).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.learned.placeholders import Protected, TooManySlotsError, align, check, protect, restore
from bridge.models import is_hub_id
from bridge.recipe import Recipe
from bridge.translation import Change, Translation, TranslationOptions

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from bridge.rules import RulesTranslator

__all__ = ["BRIDGE_FILE", "FORMAT_VERSION", "BridgeInfo", "Candidate", "Example", "Seq2SeqTranslator", "chrf",
           "encode_example", "evaluate_examples", "format_input", "format_output", "rerank", "split_output", "t5_from_config",
           "train_tokenizer"]

FORMAT_VERSION = 1
BRIDGE_FILE = "bridge.json"
NEGATIVE_MARKER = "negative:"
NEGATIVE_SEPARATOR = f" {NEGATIVE_MARKER} "
WEIGHTS = ("full", "lora")
# The structural stages of the rules engine: what a pair without a rules bridge still gets from it.
STRUCTURAL_KINDS = ("networks", "size", "clip-skip", "settings", "tokens")
# Rules changes kept beside the model's prompt: they explain the parts of the recipe the rules bridge set.
RULES_CHANGE_PREFIXES = ("size", "clip-skip")


# --------------------------------------------------------------------------------------------------------------------
# The text format


def format_input(prompt: str, negative: str | None = None, *, source: str, target: str) -> str:
    """The model input: ``format_input("a cat", "blurry", source="sd15", target="sd2")`` is
    ``'sd15 to sd2: a cat negative: blurry'`` (without ``negative`` that part is left out)."""
    text = f"{source} to {target}: {prompt}"
    return text if negative is None else text + NEGATIVE_SEPARATOR + negative


def format_output(prompt: str, negative: str | None = None) -> str:
    """The model output: ``format_output("a cat", "blurry") == 'a cat negative: blurry'``."""
    return prompt if negative is None else prompt + NEGATIVE_SEPARATOR + negative


def split_output(text: str) -> tuple[str, str | None]:
    """``(prompt, negative)`` of a model output; negative is None when the output has no negative part."""
    prompt, separator, negative = text.partition(NEGATIVE_MARKER)
    return (prompt.strip(), negative.strip()) if separator else (text.strip(), None)


@dataclass
class Example:
    """One source (and optionally target) encoded for the model: its input text, the protected syntax, the target
    text with the same placeholders, and the target as restored text (the reference metrics compare against)."""

    input_text: str
    prompt: Protected
    negative: Protected | None
    target_text: str | None = None
    reference: str | None = None

    def problems(self, raw: str) -> list[str]:
        """What is wrong with a raw model output for this input (empty when every placeholder is intact)."""
        prompt, negative = split_output(raw)
        problems = check(prompt, self.prompt)
        if self.negative is not None:
            if negative is None:
                return [*problems, f"the negative part (after {NEGATIVE_MARKER!r}) is missing"]
            problems += [f"negative: {p}" for p in check(negative, self.negative)]
        return problems

    def restore(self, raw: str) -> tuple[str, str | None]:
        """(prompt, negative) of a raw output with the protected syntax put back."""
        prompt, negative = split_output(raw)
        if self.negative is None or negative is None:
            return restore(prompt, self.prompt), None
        return restore(prompt, self.prompt), restore(negative, self.negative)


def encode_example(prompt: str, negative: str = "", *, source: str, target: str, negatives: bool = True,
                   options: TranslationOptions | None = None, target_prompt: str | None = None,
                   target_negative: str = "") -> Example | None:
    """Protect and format one source prompt (and, for training, its target) as the model reads and writes them.

    With a target, returns None when the target does not keep the source's protected syntax (see
    :func:`bridge.learned.placeholders.align`): such a pair cannot teach the model to keep it. Raises TooManySlotsError.
    """
    o = options or TranslationOptions()
    policy = {"networks": o.networks, "network_map": o.network_map, "embeddings": o.embeddings}
    p = protect(prompt, **policy, disable=o.disable, source=source, target=target)
    n = protect(negative, **policy, disable=o.disable, source=source, target=target, label="negative prompt",
                start=len(p.slots)) if negatives else None
    example = Example(format_input(p.text, n.text if n else None, source=source, target=target), p, n)
    if target_prompt is None:
        return example
    pair = {"source": source, "target_model": target, **policy}
    aligned_prompt = align(target_prompt, p, **pair)
    aligned_negative = align(target_negative, n, **pair) if n is not None else None
    if aligned_prompt is None or (n is not None and aligned_negative is None):
        return None
    example.target_text = format_output(aligned_prompt, aligned_negative)
    example.reference = format_output(*example.restore(example.target_text))
    return example


# --------------------------------------------------------------------------------------------------------------------
# The bridge folder


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
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"kind": "seq2seq", **asdict(self)}, indent=2, default=str) + "\n", "utf-8")
        os.replace(tmp, path)
        return path


@dataclass
class Candidate:
    """One generated translation: the restored prompt and negative (None when the bridge does not predict it), the
    raw output with placeholders, and what is wrong with it (empty when its protected syntax is intact)."""

    prompt: str
    negative_prompt: str | None
    raw: str
    problems: list[str]


# --------------------------------------------------------------------------------------------------------------------
# The translator


class Seq2SeqTranslator:
    """A learned bridge: implements :class:`~bridge.translation.Translator` with a seq2seq model.

    ``last_raw`` holds the raw outputs (placeholders not yet restored) of the last translate/translate_batch call,
    one per recipe ("" where the model was not run), so syntax preservation can be measured before restoration.
    """

    name = "seq2seq"

    def __init__(self, model: Any, tokenizer: Any, info: BridgeInfo, *, model_id: str = "in-memory model",
                 batch_size: int = 32):
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.source, self.target = info.source, info.target
        self.model_id = model_id
        self.batch_size = batch_size  # prompts per generation batch in translate_batch
        self.rules, self._structural = _rules_for(info.source, info.target)
        self.last_raw: list[str] = []

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str | os.PathLike, device: str | None = None,
                        dtype: str | Any | None = None) -> Seq2SeqTranslator:
        """Load a bridge folder (or download one by hub id): bridge.json, tokenizer, weights or adapter.

        ``device`` defaults to CUDA when available; ``dtype`` ("float16", "bfloat16", a torch dtype) to the stored
        one. An adapter is merged into its base model for faster generation.
        """
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        text = os.fspath(path_or_hub_id)
        folder = Path(text)
        if not folder.exists() and is_hub_id(text):
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(text))
        if not (folder / BRIDGE_FILE).is_file():
            raise FileNotFoundError(f"no {BRIDGE_FILE} in {text!r}: give a folder written by training/train.py or "
                                    "a hub id such as user/sd15-to-sd2")
        info = BridgeInfo.load(folder)
        kwargs = {"dtype": getattr(torch, dtype) if isinstance(dtype, str) else dtype} if dtype else {}
        tokenizer = AutoTokenizer.from_pretrained(folder)
        with _quiet_loading():
            if info.weights == "lora":
                from peft import PeftModel

                local_base = folder / info.base_model
                base = AutoModelForSeq2SeqLM.from_pretrained(local_base if local_base.exists() else info.base_model,
                                                             **kwargs)
                model = PeftModel.from_pretrained(base, folder).merge_and_unload()
            else:
                model = AutoModelForSeq2SeqLM.from_pretrained(folder, **kwargs)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(model.to(device).eval(), tokenizer, info, model_id=text)

    # ---- generation

    def generate(self, texts: Sequence[str], *, num_return_sequences: int = 1, do_sample: bool = False,
                 temperature: float = 1.0, top_p: float = 1.0, num_beams: int = 1, batch_size: int = 32,
                 max_new_tokens: int | None = None, seed: int | None = None) -> list[list[str]]:
        """Raw model outputs (placeholders kept) for model inputs (see :func:`format_input`), in input order.

        Inputs are sorted by length and run ``batch_size`` at a time, so little compute goes to padding. Greedy by
        default; ``num_beams`` for beam search, ``do_sample`` (with ``temperature``, ``top_p``, ``seed``) for
        sampling; ``num_return_sequences`` outputs per input (at most ``num_beams`` without sampling).
        """
        import torch

        if not do_sample and num_return_sequences > num_beams:
            raise ValueError(f"num_return_sequences ({num_return_sequences}) needs num_beams >= it, or do_sample=True")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not texts:
            return []
        tok = self.tokenizer
        encoded = tok(list(texts), truncation=True, max_length=self.info.max_source_tokens)["input_ids"]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]), reverse=True)
        settings = {"num_return_sequences": num_return_sequences, "do_sample": do_sample, "num_beams": num_beams,
                    "max_new_tokens": max_new_tokens or self.info.max_target_tokens}
        if do_sample:
            settings |= {"temperature": temperature, "top_p": top_p}
        device = self.model.device
        drop = {i for i in (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id) if i is not None}
        results: list[list[str]] = [[] for _ in encoded]
        with _seeded(seed, device), torch.inference_mode():
            for first in range(0, len(order), batch_size):
                chunk = order[first : first + batch_size]
                batch = tok.pad({"input_ids": [encoded[i] for i in chunk]}, return_tensors="pt").to(device)
                out = self.model.generate(**batch, **settings).tolist()
                for k, ids in enumerate(out):
                    text = tok.decode([t for t in ids if t not in drop], skip_special_tokens=False,
                                      clean_up_tokenization_spaces=False)
                    results[chunk[k // num_return_sequences]].append(text.strip())
        return results

    def encode(self, recipe: Recipe, options: TranslationOptions | None = None) -> Example:
        """The model input for ``recipe`` (network policy applied, syntax protected). Raises TooManySlotsError."""
        return encode_example(recipe.prompt, recipe.negative_prompt, source=self.source, target=self.target,
                              negatives=self.info.negatives, options=options)

    def _encode_all(self, recipes: Sequence[Recipe], options: TranslationOptions | None) -> list[Example | None]:
        """One Example per recipe; None for a prompt with more protected syntax than there are placeholders."""
        examples: list[Example | None] = []
        for recipe in recipes:
            try:
                examples.append(self.encode(recipe, options))
            except TooManySlotsError:
                examples.append(None)
        return examples

    def candidates(self, recipes: Iterable[Recipe | str], options: TranslationOptions | None = None,
                   **generation: Any) -> list[list[Candidate]]:
        """Translations to choose from, for data building: ``generation`` as in :meth:`generate` (e.g.
        ``num_return_sequences=8, do_sample=True, seed=0``). A prompt with too much protected syntax gets none."""
        examples = self._encode_all([_as_recipe(r) for r in recipes], options)
        ready = [e for e in examples if e is not None]
        outputs = iter(self.generate([e.input_text for e in ready], **generation))
        result = []
        for example in examples:
            raws = next(outputs) if example is not None else []
            result.append([Candidate(*example.restore(raw), raw, example.problems(raw)) for raw in raws])
        return result

    # ---- the Translator interface

    def translate(self, recipe: Recipe | str, options: TranslationOptions | None = None) -> Translation:
        return self.translate_batch([recipe], options)[0]

    def translate_batch(self, recipes: Iterable[Recipe | str], options: TranslationOptions | None = None
                        ) -> list[Translation]:
        """Translate recipes with one batched generation; see the module docstring for what comes from where."""
        options = options or TranslationOptions()
        recipes = [_as_recipe(r) for r in recipes]
        fallback_options = TranslationOptions(options.networks, options.network_map, options.embeddings,
                                              options.disable + self._structural, options.knowledge)
        ruled = [self.rules.translate(r, fallback_options) for r in recipes]
        examples = self._encode_all(recipes, options)
        ready = [e for e in examples if e is not None]
        outputs = iter(self.generate([e.input_text for e in ready], num_beams=self.info.num_beams,
                                     batch_size=self.batch_size))
        self.last_raw = [next(outputs)[0] if e is not None else "" for e in examples]
        return [self._result(recipe, rules, example, raw)
                for recipe, rules, example, raw in zip(recipes, ruled, examples, self.last_raw, strict=True)]

    def _result(self, recipe: Recipe, rules: Translation, example: Example | None, raw: str) -> Translation:
        if example is None:
            warning = ("the prompt has more separate pieces of protected syntax than the learned bridge has "
                       "placeholders; used the rules bridge's prompt")
            return _with_warnings(rules, [warning])
        problems = example.problems(raw)
        if problems:
            warning = (f"the learned bridge {self.model_id} broke protected syntax ({'; '.join(problems)}); "
                       "used the rules bridge's prompt")
            return _with_warnings(rules, [warning])
        prompt, negative = example.restore(raw)
        reason = f"rewritten by the learned bridge {self.model_id} ({self.source} -> {self.target})"
        changes = [*example.prompt.changes, Change("seq2seq", recipe.prompt, prompt, reason)]
        new = rules.recipe.replace(prompt=prompt)
        if negative is not None:
            changes += [*example.negative.changes, Change("seq2seq", recipe.negative_prompt, negative, reason)]
            new = new.replace(negative_prompt=negative)
        # The rules bridge's changes to what it set: size and clip skip; the negative (its networks and defaults)
        # when the model does not predict one. Its changes to the prompt are the model's business now.
        kept = RULES_CHANGE_PREFIXES + (() if negative is not None else ("negative", "networks"))
        changes += [c for c in rules.changes if c.rule.split(".")[0] in kept and c not in example.prompt.changes]
        warnings = _unique([*example.prompt.warnings, *(example.negative.warnings if example.negative else ()),
                            *rules.warnings])
        return Translation(new, rules.source, self.target, changes, warnings, original=recipe, notes=rules.notes)


def rerank(prompt: str, candidates: Sequence[str], scorer: Callable[[str, list[str]], Sequence[float]]
           ) -> list[tuple[str, float]]:
    """Best-of-N: ``candidates`` scored by ``scorer(prompt, candidates)`` (one float each, higher is better), best
    first; ties keep the candidates' order. ``rerank(p, cands, scorer)[0][0]`` is the best candidate."""
    scores = [float(s) for s in scorer(prompt, list(candidates))]
    if len(scores) != len(candidates):
        raise ValueError(f"the scorer returned {len(scores)} scores for {len(candidates)} candidates")
    return sorted(zip(candidates, scores, strict=True), key=lambda pair: -pair[1])


def _seeded(seed: int | None, device: Any) -> contextlib.AbstractContextManager:
    """Sampling under ``seed`` without disturbing the caller's random state; no seed: the global generator."""
    if seed is None:
        return contextlib.nullcontext()
    import torch

    @contextlib.contextmanager
    def forked() -> Iterator[None]:
        cuda = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            yield

    return forked()


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """No "Loading weights" progress bar on stderr (translate-prompt's stderr is for warnings); restored after."""
    from transformers.utils import logging

    was_enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()


def _as_recipe(recipe: Recipe | str) -> Recipe:
    return Recipe(prompt=recipe) if isinstance(recipe, str) else recipe


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _with_warnings(translation: Translation, warnings: list[str]) -> Translation:
    translation.warnings = _unique([*translation.warnings, *warnings])
    return translation


def _rules_for(source: str, target: str) -> tuple[RulesTranslator, tuple[str, ...]]:
    """The rules bridge for the pair and the rule ids to switch off in it: none for a registered rules bridge; for
    a pair without one, every rule that rewrites prompts (the structural stages stay, see STRUCTURAL_KINDS)."""
    from bridge.learned.placeholders import policy_rules
    from bridge.models import find_bridge

    rules = policy_rules(source, target)
    try:
        if find_bridge(source, target).kind == "rules":
            return rules, ()
    except ValueError:
        pass
    kb = rules.kb
    off = [r.id for r in kb.rules.values() if r.kind not in STRUCTURAL_KINDS]
    if kb.artists:
        off.append("artist.*")
    if kb.negatives:
        off.append("negative.*")
    return rules, tuple(off)


# --------------------------------------------------------------------------------------------------------------------
# Metrics


CHRF_ORDER = 6  # character n-grams up to 6, as in chrF (Popović 2015) and sacrebleu
CHRF_BETA = 2  # recall weighted twice as much as precision


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (0-100): character n-gram F-score, n = 1..6, beta = 2, whitespace ignored; n-gram statistics are
    summed over the corpus, then precision and recall averaged over the orders, as sacrebleu computes it.

    >>> chrf(["a castle on a hill"], ["a castle on a hill"])
    100.0
    >>> round(chrf(["a castle"], ["a stone castle on a hill"]), 1)
    24.8
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    matches = [0] * CHRF_ORDER
    hyp_total = [0] * CHRF_ORDER
    ref_total = [0] * CHRF_ORDER
    for hyp, ref in zip(hypotheses, references, strict=True):
        hyp, ref = "".join(hyp.split()), "".join(ref.split())
        for n in range(1, CHRF_ORDER + 1):
            h = Counter(hyp[i : i + n] for i in range(len(hyp) - n + 1))
            r = Counter(ref[i : i + n] for i in range(len(ref) - n + 1))
            matches[n - 1] += sum((h & r).values())
            hyp_total[n - 1] += sum(h.values())
            ref_total[n - 1] += sum(r.values())
    orders = [n for n in range(CHRF_ORDER) if hyp_total[n] and ref_total[n]]
    if not orders:
        return 100.0 if not any(hyp_total) and not any(ref_total) else 0.0
    precision = sum(matches[n] / hyp_total[n] for n in orders) / len(orders)
    recall = sum(matches[n] / ref_total[n] for n in orders) / len(orders)
    if precision + recall == 0:
        return 0.0
    b2 = CHRF_BETA**2
    return 100 * (1 + b2) * precision * recall / (b2 * precision + recall)


def evaluate_examples(translator: Seq2SeqTranslator, examples: Sequence[Example], *, batch_size: int = 32
                      ) -> dict[str, float]:
    """Generation metrics of ``translator`` on encoded pairs (greedy): chrF and exact match of the restored output
    against the reference, and the syntax-preservation rate of the raw output (every placeholder intact)."""
    raws = [r[0] for r in translator.generate([e.input_text for e in examples], batch_size=batch_size)]
    restored = [format_output(*e.restore(raw)) for e, raw in zip(examples, raws, strict=True)]
    references = [e.reference or "" for e in examples]
    n = max(len(examples), 1)
    return {
        "chrf": chrf(restored, references),
        "exact_match": sum(h == r for h, r in zip(restored, references, strict=True)) / n,
        "syntax_preservation": sum(not e.problems(raw) for e, raw in zip(examples, raws, strict=True)) / n,
    }


# --------------------------------------------------------------------------------------------------------------------
# Models from scratch: tiny runs, tests, benchmarks (real runs load a pretrained model and its own tokenizer)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2000) -> Any:
    """A byte-level BPE tokenizer trained on ``texts`` (a transformers fast tokenizer, T5's special tokens:
    ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, the placeholders ``<extra_id_N>`` as single tokens). Decoding is exact."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from bridge.learned.placeholders import MAX_SLOTS, placeholder

    sentinels = [placeholder(i) for i in range(MAX_SLOTS)]
    special = ["<pad>", "</s>", "<unk>", *sentinels]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   additional_special_tokens=sentinels, model_input_names=["input_ids", "attention_mask"])


def t5_from_config(vocab_size: int, *, d_model: int = 64, layers: int = 2, heads: int = 4, d_ff: int = 256,
                   seed: int = 0) -> Any:
    """A randomly initialised T5 (``T5ForConditionalGeneration``) of the given size: no download. t5-small is
    ``d_model=512, layers=6, heads=8, d_ff=2048`` with vocab 32128."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(vocab_size=vocab_size, d_model=d_model, d_kv=d_model // heads, d_ff=d_ff, num_layers=layers,
                      num_decoder_layers=layers, num_heads=heads, dropout_rate=0.0, decoder_start_token_id=0,
                      pad_token_id=0, eos_token_id=1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return T5ForConditionalGeneration(config)

"""The learned bridge's translator: a seq2seq model (T5 family, optionally a LoRA adapter) that rewrites SD1.x prompts
for SD2.

    from bridge.load import load_translator

    bridge = load_translator("runs/sd15_to_sd2")       # a folder written by training/train.py, or a hub id
    t = bridge.translate("a (castle:1.3), by greg rutkowski, 8k")
    t.prompt, t.recipe.width, t.changes[0].rule         # a Translation, as the rules bridge returns
    # ('a (castle:1.3), dramatic fantasy painting', 768, 'seq2seq')

The parts of the learned bridge, one module each: :mod:`bridge.learned.placeholders` (protected syntax),
:mod:`bridge.learned.textformat` (model input and output), :mod:`bridge.learned.bridge_info` (bridge.json),
:mod:`bridge.learned.metrics` (chrF, exact match, syntax preservation) and this translator. Their public names are
importable from here too (and so from ``bridge.seq2seq``), as are the tiny builders of :mod:`bridge.testing`.

What comes from where in a :class:`~bridge.translation.Translation`: the model's prompt (and negative, when the
bridge predicts it); the rules bridge's negative otherwise, and always its size and settings (steps, CFG, sampler,
model); the network policy's changes and warnings (removed or mapped LoRA tags and embeddings, as the rules bridge
reports them); one ``seq2seq`` change per rewritten prompt. When the raw model output breaks a placeholder (one
missing, repeated, invented or out of order), that item falls back to the rules bridge's prompt, with a warning.
A pair with no direct rules bridge (sdxl → sd15) uses the rules engine's structural stages only (networks, size,
settings) and keeps the prompt as written as the fallback.

The bridge folder: ``bridge.json`` (:class:`~bridge.learned.bridge_info.BridgeInfo`), the tokenizer, and full weights
(``model.safetensors``) or a peft adapter (``adapter_model.safetensors``) over ``base_model`` (a hub id, or a path
relative to the folder): safetensors only, unless ``trust_pickle`` (pickled weights such as ``pytorch_model.bin``
can run code as they load: :class:`PickledWeightsError` otherwise); optionally a CTranslate2 copy (``ct2/``), which :meth:`Seq2SeqTranslator.from_pretrained`
prefers when the fast extra is installed (:mod:`bridge.learned.fast`: no torch, no transformers). Both backends share
everything here but the model call: placeholders, length-sorted batches, beam search, sampling, the fallback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.learned import fast
from bridge.learned.bridge_info import BRIDGE_FILE, BridgeInfo
from bridge.learned.metrics import chrf, evaluate_examples
from bridge.learned.placeholders import TooManySlotsError
from bridge.learned.textformat import (
    FORMAT_VERSION,
    Example,
    encode_example,
    format_input,
    format_output,
    split_output,
)
from bridge.models import is_hub_id
from bridge.recipe import Recipe
from bridge.translation import Change, Translation, TranslationOptions

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from bridge.rules import RulesTranslator

# Besides Candidate, Seq2SeqTranslator, load_transformers_model and rerank, names re-exported from the modules above:
# training/train.py, data/build_pairs.py, the tests and the documented path ``bridge.seq2seq`` import them from here.
__all__ = ["BRIDGE_FILE", "FORMAT_VERSION", "BridgeInfo", "Candidate", "Example", "PickledWeightsError",
           "Seq2SeqTranslator", "check_weights", "chrf", "encode_example", "evaluate_examples", "format_input",
           "format_output", "load_transformers_model", "rerank", "split_output"]

TOP_K = fast.TOP_K  # sampling keeps the 50 likeliest tokens on both backends (transformers' default)
# The structural stages of the rules engine: what a pair without a rules bridge still gets from it.
STRUCTURAL_KINDS = ("networks", "size", "clip-skip", "settings", "tokens")
# Rules changes kept beside the model's prompt: they explain the parts of the recipe the rules bridge set.
RULES_CHANGE_PREFIXES = ("size", "clip-skip")


@dataclass
class Candidate:
    """One generated translation: the restored prompt and negative (None when the bridge does not predict it), the
    raw output with placeholders, and what is wrong with it (empty when its protected syntax is intact)."""

    prompt: str
    negative_prompt: str | None
    raw: str
    problems: list[str]


class Seq2SeqTranslator:
    """A learned bridge: implements :class:`~bridge.translation.Translator` with a seq2seq model.

    ``model`` and ``tokenizer`` are a transformers seq2seq model and its tokenizer (``backend`` ``"hf"``), or a
    :class:`~bridge.learned.fast.CT2Model` and a ``tokenizers.Tokenizer`` (``backend`` ``"ct2"``).
    ``last_raw`` holds the raw outputs (placeholders not yet restored) of the last translate/translate_batch call,
    one per recipe ("" where the model was not run), so syntax preservation can be measured before restoration.
    """

    name = "seq2seq"

    def __init__(self, model: Any, tokenizer: Any, info: BridgeInfo, *, model_id: str = "in-memory model",
                 batch_size: int = 32):
        self.model = model
        self.tokenizer = tokenizer
        self._engine = fast.CT2Engine(model, tokenizer) if isinstance(model, fast.CT2Model) else _HFEngine(model,
                                                                                                         tokenizer)
        self.backend = self._engine.name
        self.info = info
        self.source, self.target = info.source, info.target
        self.model_id = model_id
        self.batch_size = batch_size  # prompts per generation batch in translate_batch
        self.rules, self._structural = _rules_for(info.source, info.target)
        self.last_raw: list[str] = []

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str | os.PathLike, device: str | None = None,
                        dtype: str | Any | None = None, *, backend: str = "auto", threads: int = 0,
                        trust_pickle: bool = False) -> Seq2SeqTranslator:
        """Load a bridge folder (or download one by hub id): bridge.json, tokenizer, weights or adapter, or the
        CTranslate2 copy.

        ``backend``: ``"auto"`` (CTranslate2 when the folder holds its copy and the fast extra is installed, else
        transformers), ``"ct2"`` or ``"hf"`` (see :func:`bridge.learned.fast.choose_backend`). ``device`` defaults
        to CUDA when available. On transformers, ``dtype`` ("float16", "bfloat16", a torch dtype) defaults to the
        stored one and an adapter is merged into its base model for faster generation; on CTranslate2 the copy runs
        in its exported quantization, on ``threads`` CPU cores, one worker each (0: every core; see
        :class:`bridge.learned.fast.CT2Model`). Weights are read from safetensors files; pickled ones
        (``pytorch_model.bin``) only with ``trust_pickle``, else :class:`PickledWeightsError`.
        """
        text = os.fspath(path_or_hub_id)
        if backend not in fast.BACKENDS:  # before any download
            raise ValueError(f"unknown backend {backend!r}; valid backends: {', '.join(fast.BACKENDS)}")
        folder = Path(text)
        if not folder.exists() and is_hub_id(text):
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(text))
        if not (folder / BRIDGE_FILE).is_file():
            raise FileNotFoundError(f"no {BRIDGE_FILE} in {text!r}: give a folder written by training/train.py or "
                                    "a hub id such as user/sd15-to-sd2")
        info = BridgeInfo.load(folder)
        if fast.choose_backend(folder, info, backend, text) == "ct2":
            model, tokenizer = fast.load(folder, info, device=device, threads=threads)
            return cls(model, tokenizer, info, model_id=text)
        if not all(importlib.util.find_spec(name) for name in ("torch", "transformers")):
            raise ImportError(f"the learned bridge {text!r} needs the ml extra (torch, transformers) to run with "
                              "transformers; a bridge folder with a CTranslate2 copy (python -m bridge.export DIR) "
                              f"runs without it: {fast.FAST_EXTRA_HINT}")
        import torch  # (after the checks: a folder that is no bridge says so without the ML stack)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = load_transformers_model(folder, info, dtype, trust_pickle=trust_pickle)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(model.to(device).eval(), tokenizer, info, model_id=text)

    # ---- generation

    def generate(self, texts: Sequence[str], *, num_return_sequences: int = 1, do_sample: bool = False,
                 temperature: float = 1.0, top_p: float = 1.0, num_beams: int = 1, batch_size: int = 32,
                 max_new_tokens: int | None = None, min_new_tokens: int | None = None, seed: int | None = None
                 ) -> list[list[str]]:
        """Raw model outputs (placeholders kept) for model inputs (see :func:`format_input`), in input order.

        Inputs are sorted by length and run ``batch_size`` at a time, so little compute goes to padding. Greedy by
        default; ``num_beams`` for beam search, ``do_sample`` (with ``temperature``, ``top_p``, ``seed``; from the
        ``TOP_K`` likeliest tokens) for sampling; ``num_return_sequences`` outputs per input (at most ``num_beams``
        without sampling). ``min_new_tokens`` holds the end of sequence back (benchmarks fix the output length).
        """
        if not do_sample and num_return_sequences > num_beams:
            raise ValueError(f"num_return_sequences ({num_return_sequences}) needs num_beams >= it, or do_sample=True")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not texts:
            return []
        encoded = self.token_ids(texts)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]), reverse=True)
        chunks = [order[first : first + batch_size] for first in range(0, len(order), batch_size)]
        settings = {"num_return_sequences": num_return_sequences, "do_sample": do_sample, "num_beams": num_beams,
                    "max_new_tokens": max_new_tokens or self.info.max_target_tokens}
        if min_new_tokens:
            settings["min_new_tokens"] = min_new_tokens
        if do_sample:
            settings |= {"temperature": temperature, "top_p": top_p, "top_k": TOP_K}
        results: list[list[str]] = [[] for _ in encoded]
        outputs = self._engine.generate(([encoded[i] for i in chunk] for chunk in chunks), settings, seed)
        for chunk, texts_out in zip(chunks, outputs, strict=True):  # strict: runs the engine to its end
            for k, text in enumerate(texts_out):
                results[chunk[k // num_return_sequences]].append(text.strip())
        return results

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Model inputs as the backend's tokenizer encodes them (truncated to ``max_source_tokens``, end token kept):
        the same ids on both backends."""
        return self._engine.encode(list(texts), self.info.max_source_tokens)

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
        fallback_options = dataclasses.replace(options, disable=options.disable + self._structural)
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


class PickledWeightsError(ValueError):
    """A bridge folder whose weights are pickled (``pytorch_model.bin``) and not trusted: unpickling runs code."""


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")  # torch.save's files: pickles


def check_weights(folder: str | os.PathLike, trust_pickle: bool = False) -> None:
    """Raise :class:`PickledWeightsError` when ``folder`` holds pickled weights and no safetensors file, unless
    ``trust_pickle``. Loading a pickle can run any code its author wrote into it; safetensors holds only tensors."""
    folder = Path(folder)
    if trust_pickle or not folder.is_dir() or any(folder.glob("*.safetensors")):
        return
    pickled = sorted(path.name for path in folder.iterdir() if path.suffix in PICKLE_SUFFIXES and path.is_file())
    if pickled:
        raise PickledWeightsError(
            f"{folder} holds pickled weights ({', '.join(pickled)}), which can run code as they load; give a bridge "
            "saved as safetensors, or load it only if you trust where it comes from: --trust-pickle "
            "(trust_pickle=True)")


def load_transformers_model(folder: str | os.PathLike, info: BridgeInfo, dtype: str | Any | None = None, *,
                            trust_pickle: bool = False) -> Any:
    """The bridge's transformers model, an adapter merged into its base (``base_model``: a folder inside the bridge,
    a local path or a hub id); ``dtype`` ("float16", "bfloat16", a torch dtype) defaults to the stored one. The
    translator and the export (bridge/export.py) load it this way. Safetensors weights only (a base from the hub
    too), unless ``trust_pickle``: then safetensors first, pickled weights when there are none."""
    import torch
    from transformers import AutoModelForSeq2SeqLM

    folder = Path(folder)
    kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype) if isinstance(dtype, str) else dtype} if dtype else {}
    if not trust_pickle:
        kwargs["use_safetensors"] = True  # transformers never falls back to a pickle then
    check_weights(folder, trust_pickle)
    with _quiet_loading():
        if info.weights == "lora":
            from peft import PeftModel

            local_base = folder / info.base_model
            if local_base.exists():
                check_weights(local_base, trust_pickle)
            base = AutoModelForSeq2SeqLM.from_pretrained(local_base if local_base.exists() else info.base_model,
                                                         **kwargs)
            return PeftModel.from_pretrained(base, folder).merge_and_unload()
        return AutoModelForSeq2SeqLM.from_pretrained(folder, **kwargs)


def rerank(prompt: str, candidates: Sequence[str], scorer: Callable[[str, list[str]], Sequence[float]]
           ) -> list[tuple[str, float]]:
    """Best-of-N: ``candidates`` scored by ``scorer(prompt, candidates)`` (one float each, higher is better), best
    first; ties keep the candidates' order. ``rerank(p, cands, scorer)[0][0]`` is the best candidate."""
    scores = [float(s) for s in scorer(prompt, list(candidates))]
    if len(scores) != len(candidates):
        raise ValueError(f"the scorer returned {len(scores)} scores for {len(candidates)} candidates")
    return sorted(zip(candidates, scores, strict=True), key=lambda pair: -pair[1])


class _HFEngine:
    """Generation with transformers: what :meth:`Seq2SeqTranslator.generate` asks of a backend (token ids in,
    decoded texts out; see :class:`bridge.learned.fast.CT2Engine` for the other)."""

    name = "hf"

    def __init__(self, model: Any, tokenizer: Any):
        self.model, self.tokenizer = model, tokenizer

    def encode(self, texts: list[str], max_length: int) -> list[list[int]]:
        return self.tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]

    def generate(self, chunks: Iterable[list[list[int]]], settings: dict[str, Any], seed: int | None
                 ) -> Iterator[list[str]]:
        """For each chunk of inputs, ``num_return_sequences`` outputs per input, input by input."""
        import torch

        tok, device = self.tokenizer, self.model.device
        drop = {i for i in (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id) if i is not None}
        with _seeded(seed, device), torch.inference_mode():
            for chunk in chunks:
                batch = tok.pad({"input_ids": chunk}, return_tensors="pt").to(device)
                out = self.model.generate(**batch, **settings).tolist()
                yield [tok.decode([t for t in ids if t not in drop], skip_special_tokens=False,
                                  clean_up_tokenization_spaces=False) for ids in out]


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

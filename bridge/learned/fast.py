"""The learned bridge served by CTranslate2: the fast path, with no torch and no transformers at translate time.

A bridge folder may hold a CTranslate2 copy of its model (``ct2/``, written by ``python -m bridge.export DIR`` or by
training/train.py), recorded in bridge.json's ``copies``. :meth:`Seq2SeqTranslator.from_pretrained
<bridge.learned.seq2seq.Seq2SeqTranslator.from_pretrained>` picks the backend (:func:`choose_backend`): ``"ct2"``
when that copy and the ``ctranslate2`` and ``tokenizers`` packages (the ``fast`` extra) are there, ``"hf"``
(transformers) otherwise; ``backend="ct2"`` or ``"hf"`` asks for one.

    >>> from bridge.load import load_translator
    >>> bridge = load_translator("runs/sd15_to_sd2")            # doctest: +SKIP
    >>> bridge.backend                                           # doctest: +SKIP
    'ct2'

On this path the text is tokenized by the ``tokenizers`` package from the copy's ``tokenizer.json`` (``ct2/``: the
tokenizer as transformers runs it, written at export; the same ids), CTranslate2 generates, and the placeholders, the length-sorted batches and the rules
bridge's recipe are the translator's own, as on the transformers path. Greedy search, beam search and sampling work
alike; sampling draws from the ``TOP_K`` likeliest tokens (transformers' default) and then ``top_p``.

On a CPU the copy runs as several workers of one thread each (CTranslate2's ``inter_threads``; they share the
weights), one per core by default, and the translator's batches go to them together: batches in parallel beat one
batch spread over the cores (on a 2-core machine, 64 prompts in two batches ran at 45 prompts/s against 30 with two
threads on each batch in turn). A single prompt runs on one core.

CTranslate2 seeds its sampler once per worker thread, when that thread first samples, so a seeded sampling call runs
on a translator loaded for that call with one worker, after ``ctranslate2.set_random_seed`` (a second load of the
copy, from the page cache): the same seed gives the same samples.

Quantization is chosen at export: ``int8`` (the default), ``int8_float16``, ``float16`` or ``float32``. A CPU has no
float16 kernels: there a float16 copy runs as float32 and an int8_float16 one as int8_float32 (``CPU_FALLBACK``), so
the float16 variants only pay off on a GPU.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.learned.bridge_info import BridgeInfo

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = ["BACKENDS", "CPU_FALLBACK", "CT2_DIR", "DEFAULT_QUANTIZATION", "FAST_EXTRA_HINT", "QUANTIZATIONS", "TOKENIZER_FILE", "TOP_K",
           "CT2Engine", "CT2Model", "available", "choose_backend", "cpu_cores", "has_copy", "load"]

BACKENDS = ("auto", "ct2", "hf")
QUANTIZATIONS = ("int8", "int8_float16", "float16", "float32")
DEFAULT_QUANTIZATION = "int8"
CT2_DIR = "ct2"  # the copy's folder inside the bridge folder
TOKENIZER_FILE = "tokenizer.json"
# Compute types a CPU lacks, and what CTranslate2 runs them as there (it would convert them itself, with a warning).
CPU_FALLBACK = {"float16": "float32", "int8_float16": "int8_float32", "bfloat16": "float32",
                "int8_bfloat16": "int8_float32"}
TOP_K = 50  # sampling keeps the 50 likeliest tokens: transformers' default, made explicit so both backends agree
FAST_EXTRA_HINT = "install the fast extra (pip install -e '.[fast]' in a prompt-bridge clone)"


def available() -> bool:
    """Whether the fast extra (``ctranslate2`` and ``tokenizers``) is installed; nothing is imported."""
    return all(importlib.util.find_spec(name) is not None for name in ("ctranslate2", "tokenizers"))


def has_copy(folder: str | Path, info: BridgeInfo) -> bool:
    """Whether bridge.json records a CTranslate2 copy and the folder holds it (model.bin and tokenizer.json)."""
    record = info.copies.get("ct2")
    copy = Path(folder) / (record or {}).get("path", CT2_DIR)
    return record is not None and (copy / "model.bin").is_file() and (copy / TOKENIZER_FILE).is_file()


def choose_backend(folder: str | Path, info: BridgeInfo, backend: str = "auto", name: str | None = None) -> str:
    """``"ct2"`` or ``"hf"`` for the bridge in ``folder``: ``backend="auto"`` takes CTranslate2 when the folder holds
    its copy and the fast extra is installed; ``"ct2"`` raises ValueError (one line) when either is missing."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
    if backend == "hf":
        return "hf"
    copy = has_copy(folder, info)
    if backend == "ct2":
        name = name or str(folder)
        if not copy:
            raise ValueError(f"the learned bridge {name!r} has no CTranslate2 copy: make one with "
                             f"python -m bridge.export {name}")
        if not available():
            raise ValueError(f"the ct2 backend needs the ctranslate2 and tokenizers packages: {FAST_EXTRA_HINT}")
        return "ct2"
    return "ct2" if copy and available() else "hf"


class CT2Model:
    """A CTranslate2 copy loaded for translation (``translator``, a ``ctranslate2.Translator``), and how it was loaded,
    so a seeded sampling call can load it again (:meth:`sampler`). ``strip_tokens`` are the tokens left out of a
    decoded output (padding, end and start of sequence), as the transformers path leaves them out.

    ``device`` is ``"cpu"`` or ``"cuda"``; ``compute_type`` the copy's quantization, or what a CPU runs it as;
    ``threads`` the CPU cores to use, one worker of one thread each (0: every core this process may run on); on a
    GPU one worker.
    """

    def __init__(self, path: str | Path, strip_tokens: Iterable[str], *, device: str = "cpu", device_index: int = 0,
                 compute_type: str = "default", threads: int = 0):
        if threads < 0:
            raise ValueError(f"threads must be 0 (every core) or more, got {threads}")
        self.path, self.strip_tokens = str(path), frozenset(strip_tokens)
        self.device, self.device_index, self.compute_type = device, device_index, compute_type
        self.workers = (threads or cpu_cores()) if device == "cpu" else 1
        self.translator = self._load(self.workers)

    def _load(self, workers: int) -> Any:
        import ctranslate2

        # CTranslate2 sets the loading thread's OpenMP thread count to its workers' (one): a host that runs torch in
        # this process (A1111, ComfyUI, the HF backend) shares OpenMP, and keeps its own count
        torch = sys.modules.get("torch")
        host_threads = torch.get_num_threads() if torch is not None else None
        translator = ctranslate2.Translator(self.path, device=self.device, device_index=self.device_index,
                                            compute_type=self.compute_type, inter_threads=workers,
                                            intra_threads=1 if self.device == "cpu" else 0)
        if host_threads is not None:
            torch.set_num_threads(host_threads)
        return translator

    def sampler(self, seed: int | None) -> Any:
        """The translator to sample with: for a ``seed``, one of its own whose sampler starts from it (see the module
        docstring); else ``translator``, whose sampler starts from a fresh random seed at its first draw and goes on
        from there (not from whatever seed a seeded call left behind)."""
        import ctranslate2

        ctranslate2.set_random_seed(secrets.randbits(32) if seed is None else seed)
        return self.translator if seed is None else self._load(1)


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity where the system tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # (macOS, Windows)
        return os.cpu_count() or 1


def load(folder: str | Path, info: BridgeInfo, *, device: str | None = None, threads: int = 0
         ) -> tuple[CT2Model, Tokenizer]:
    """The folder's CTranslate2 copy and its tokenizer. ``device``: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; by
    default CUDA when CTranslate2 sees a GPU."""
    import ctranslate2
    from tokenizers import Tokenizer

    record = info.copies["ct2"]
    copy = Path(folder) / record.get("path", CT2_DIR)
    if device is None:
        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    kind, _, index = str(device).partition(":")
    quantization = record.get("quantization", "default")
    compute_type = quantization
    if quantization not in ctranslate2.get_supported_compute_types(kind):
        compute_type = CPU_FALLBACK.get(quantization, "default")
    tokenizer = Tokenizer.from_file(str(copy / TOKENIZER_FILE))
    tokenizer.no_padding()
    tokenizer.enable_truncation(info.max_source_tokens)  # as the transformers path truncates, end token kept
    model = CT2Model(copy, record.get("strip_tokens", ()), device=kind,
                     device_index=int(index or 0), compute_type=compute_type, threads=threads)
    return model, tokenizer


class CT2Engine:
    """Generation on a :class:`CT2Model`: what :meth:`Seq2SeqTranslator.generate
    <bridge.learned.seq2seq.Seq2SeqTranslator.generate>` asks of a backend (token ids in, decoded texts out). The
    settings are those of transformers' ``generate`` that the translator uses, mapped to CTranslate2's names."""

    name = "ct2"

    def __init__(self, model: CT2Model, tokenizer: Tokenizer):
        self.model, self.tokenizer = model, tokenizer

    def encode(self, texts: list[str], max_length: int) -> list[list[int]]:
        if self.tokenizer.truncation is None or self.tokenizer.truncation["max_length"] != max_length:
            self.tokenizer.enable_truncation(max_length)
        return [encoding.ids for encoding in self.tokenizer.encode_batch(texts)]

    def generate(self, chunks: Iterable[list[list[int]]], settings: dict[str, Any], seed: int | None
                 ) -> Iterator[list[str]]:
        """For each chunk of inputs, ``num_return_sequences`` outputs per input, input by input. As many chunks run
        at once as the translator has workers: each is submitted before the oldest one's outputs are awaited."""
        options = translate_options(settings)
        translator = self.model.sampler(seed) if settings["do_sample"] else self.model.translator
        running: deque[list[Any]] = deque()
        for chunk in chunks:
            source = [[self.tokenizer.id_to_token(i) for i in ids] for ids in chunk]
            running.append(translator.translate_batch(source, asynchronous=True, **options))
            if len(running) >= translator.num_translators:
                yield self._outputs(running.popleft())
        while running:
            yield self._outputs(running.popleft())

    def _outputs(self, results: list[Any]) -> list[str]:
        return [self.decode(tokens) for result in results for tokens in result.result().hypotheses]

    def decode(self, tokens: list[str]) -> str:
        ids = [self.tokenizer.token_to_id(t) for t in tokens if t not in self.model.strip_tokens]
        # (a token the tokenizer lacks is one of the unused rows of a model's larger vocabulary: nothing to write)
        return self.tokenizer.decode([i for i in ids if i is not None], skip_special_tokens=False)


def translate_options(settings: dict[str, Any]) -> dict[str, Any]:
    """CTranslate2's ``translate_batch`` options for the translator's generation settings (transformers' names)."""
    beams = settings["num_beams"]
    options = {"beam_size": beams, "num_hypotheses": settings["num_return_sequences"],
               "max_decoding_length": settings["max_new_tokens"],
               # transformers lets a model end at once, CTranslate2 by default not: 0 matches the first
               "min_decoding_length": settings.get("min_new_tokens") or 0,
               "max_input_length": 0}  # inputs are already truncated by the tokenizer
    if settings["do_sample"]:
        if beams > 1:
            raise ValueError(f"the ct2 backend samples without beams: give num_beams=1 with do_sample, not {beams}")
        options |= {"sampling_topk": settings.get("top_k", TOP_K), "sampling_topp": settings["top_p"],
                    "sampling_temperature": settings["temperature"]}
    return options

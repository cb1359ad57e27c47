"""Source prompts for the workflow scripts (data/build_pairs.py, eval/evaluate.py): corpora, files, datasets.

    >>> from bridge.workflows.corpora import read_prompts, select_prompts
    >>> prompts = read_prompts("diffusiondb")                         # a shipped corpus, a library file or folder
    >>> chosen = select_prompts(prompts, limit=100, seed=0, accept=looks_sd1)

- :func:`read_prompts`: a corpus name (``CORPORA``: ``parti``, ``diffusiondb``, shipped in ``data/corpora/`` with
  their SOURCES.md), or any prompt library :func:`bridge.library.read_library` reads (.txt, .csv, .tsv, .jsonl,
  .parquet, styles.csv, PNG infotext, a folder of them). :func:`read_hf_dataset` reads a column of a Hugging Face
  dataset (hub name, or a local folder) through ``datasets``. Each gives :class:`SourcePrompt` objects with their
  whitespace normalised (:func:`normalise`) and duplicates removed (first one kept).
- :func:`select_prompts`: optional filters, then a reproducible draw of ``limit`` prompts with ``seed``.
- :func:`looks_sd1`: the "written for SD 1.x" filter (see its docstring).
"""

from __future__ import annotations

import functools
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.library import LibraryError, read_library
from bridge.workflows.common import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

__all__ = ["CORPORA", "CORPORA_DIR", "TINY_PROMPTS", "CorpusError", "SourcePrompt", "looks_sd1", "normalise",
           "read_hf_dataset", "read_prompts", "select_prompts"]

# Shipped corpora: name -> (file under CORPORA_DIR, prompt column). A source checkout has them in data/corpora;
# PROMPT_BRIDGE_DATA (or the scripts' --data-dir) points elsewhere.
CORPORA_DIR = Path(os.environ.get("PROMPT_BRIDGE_DATA", Path(__file__).resolve().parents[2] / "data" / "corpora"))
CORPORA = {
    "parti": ("parti_prompts.tsv", "Prompt"),
    "diffusiondb": ("diffusiondb_prompts.jsonl", "prompt"),
}

# Built-in SD1-style prompts of the --tiny smoke runs (no corpus needed).
TINY_PROMPTS = [
    "a castle on a hill, by greg rutkowski, trending on artstation, 8k",
    "portrait of a knight, ((masterpiece)), best quality, highly detailed, sharp focus",
    "a red fox in the snow",
    "a lighthouse on a cliff at dusk, octane render, unreal engine, 4k",
    ("an overgrown library inside a giant hollow tree, glowing lanterns, spiral staircases, moss covered books, "
     "fireflies, volumetric light rays, mist, intricate carved wood, highly detailed, digital painting, concept art, "
     "matte painting, cinematic composition, by greg rutkowski and thomas kinkade and alphonse mucha, "
     "smooth, sharp focus, illustration, trending on artstation, 8k, masterpiece, best quality"),
]

SD1_MIN_PHRASES = 3  # a comma-separated tag list of at least this many phrases reads as SD1-style
SD1_RULE_FAMILIES = ("artist.", "magic.")  # rules-bridge rules that fire only on SD1 vocabulary
_WHITESPACE = re.compile(r"\s+")
_EMPHASIS = re.compile(r"\(\(|\[\[|:\s*[0-9.]+\s*\)|<(?:lora|hypernet|lyco):")


class CorpusError(UsageError):
    """Prompts that cannot be read: the message names the source and what would be valid (a usage error: exit 2)."""


@dataclass(frozen=True)
class SourcePrompt:
    """One source prompt (whitespace normalised), its negative prompt and where it came from (``file:line``)."""

    prompt: str
    negative_prompt: str = ""
    origin: str = ""


def normalise(text: str) -> str:
    """Runs of whitespace (newlines, tabs) become one space; the ends are stripped: ``"a  cat\\n" -> "a cat"``."""
    return _WHITESPACE.sub(" ", text).strip()


def _unique(items: Iterable[SourcePrompt]) -> list[SourcePrompt]:
    """Normalised, without empty prompts, the first of each (prompt, negative prompt) kept, in order."""
    seen: dict[tuple[str, str], SourcePrompt] = {}
    for item in items:
        prompt, negative = normalise(item.prompt), normalise(item.negative_prompt)
        if prompt and (prompt, negative) not in seen:
            seen[prompt, negative] = SourcePrompt(prompt, negative, item.origin)
    return list(seen.values())


def read_prompts(source: str | os.PathLike, *, column: str | None = None, negative_column: str | None = None,
                 data_dir: str | os.PathLike | None = None) -> list[SourcePrompt]:
    """The prompts of a corpus name (``CORPORA``, looked up in ``data_dir``, default ``CORPORA_DIR``) or of a
    library file or folder (``column``/``negative_column`` as in :func:`bridge.library.read_library`)."""
    name = os.fspath(source)
    if name in CORPORA:
        relative, corpus_column = CORPORA[name]
        path = Path(data_dir or CORPORA_DIR) / relative
        if not path.is_file():
            raise CorpusError(f"corpus {name!r} not found at {path}; set --data-dir or PROMPT_BRIDGE_DATA")
        column = column or corpus_column
    elif Path(name).exists():
        path = Path(name)
    else:
        raise CorpusError(f"{name!r} is neither a file nor a corpus; corpora: {', '.join(CORPORA)}")
    try:
        items = read_library(path, column=column, negative_column=negative_column)
    except LibraryError as exc:
        raise CorpusError(str(exc)) from None
    return _unique(SourcePrompt(i.recipe.prompt, i.recipe.negative_prompt, i.key) for i in items)


def read_hf_dataset(name_or_path: str, *, column: str = "prompt", split: str = "train",
                    negative_column: str | None = None) -> list[SourcePrompt]:
    """A column of a Hugging Face dataset: a folder written by ``Dataset.save_to_disk``, any other local folder or
    file ``datasets.load_dataset`` reads, or a hub name (needs the network, or the dataset in the HF cache)."""
    import datasets

    path = Path(name_or_path)
    try:
        if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
            loaded = datasets.load_from_disk(str(path))
            table = loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        else:
            table = datasets.load_dataset(name_or_path, split=split)
    except (FileNotFoundError, ValueError, KeyError, ConnectionError) as exc:
        raise CorpusError(f"cannot load dataset {name_or_path!r} (split {split!r}): {exc}") from None
    for wanted in (column, negative_column):
        if wanted is not None and wanted not in table.column_names:
            raise CorpusError(f"dataset {name_or_path!r} has no column {wanted!r}; columns: "
                              f"{', '.join(table.column_names)}")
    prompts = table[column]
    negatives = table[negative_column] if negative_column else [""] * len(prompts)
    return _unique(SourcePrompt(str(p or ""), str(n or ""), f"{name_or_path}:{split}:{i}")
                   for i, (p, n) in enumerate(zip(prompts, negatives, strict=True)))


def select_prompts(prompts: Sequence[SourcePrompt], *, limit: int | None = None, seed: int = 0,
                   accept: Callable[[str], bool] | None = None) -> list[SourcePrompt]:
    """The prompts ``accept`` takes, in corpus order; with ``limit`` (fewer than that), ``limit`` of them drawn at
    random: the first accepted ones in a permutation seeded by ``seed``, so the same inputs give the same draw and
    ``accept`` runs only on the prompts looked at."""
    accept = accept or (lambda _: True)
    if limit is None:
        return [p for p in prompts if accept(p.prompt)]
    drawn: list[int] = []
    for index in random.Random(seed).sample(range(len(prompts)), len(prompts)):
        if accept(prompts[index].prompt):
            drawn.append(index)
            if len(drawn) == limit:
                return [prompts[i] for i in drawn]
    return [prompts[i] for i in sorted(drawn)]  # fewer than `limit` pass: all of them, in corpus order


def looks_sd1(prompt: str, *, source: str = "sd15", target: str = "sd2") -> bool:
    """Whether ``prompt`` reads as written for SD 1.x: a tag list of at least ``SD1_MIN_PHRASES`` comma-separated
    phrases, A1111 emphasis or network syntax (``((x))``, ``(x:1.2)``, ``<lora:…>``), or a word the rules bridge
    knows as SD1 vocabulary (an SD1 artist or magic word such as "trending on artstation", "8k", "octane render").

    Plain descriptive captions ("a photo of a cat on a sofa") fail: there is little to migrate in them.
    """
    if prompt.count(",") + 1 >= SD1_MIN_PHRASES or _EMPHASIS.search(prompt):
        return True
    return any(c.rule.startswith(SD1_RULE_FAMILIES) for hop in _rules_hops(source, target)
               for c in hop.translate(prompt).changes)


@functools.lru_cache(maxsize=16)
def _rules_hops(source: str, target: str) -> tuple:
    """The rules bridges on the registry's way from ``source`` to ``target``, each asked about the prompt itself
    (SD1 vocabulary is the first hops' business; bridge.load, one way round, is not imported here: it imports the
    search, which imports this module)."""
    from bridge.models import find_path
    from bridge.rules import RulesTranslator

    return tuple(RulesTranslator.for_bridge(spec) for spec in find_path(source, target) if spec.kind == "rules")

"""Prompt conditioning as AUTOMATIC1111 computes it: the one place in the project where prompts become embeddings.

    >>> schedule_entries(["a cat", "a cat", "a dog"])
    (['a cat', 'a dog'], (0, 0, 1))

- Chunks (:func:`prompt_chunks`): the pipeline's own tokenizer turns each emphasis piece into ids, and
  :func:`bridge.chunks.chunk_spans` (the project's one A1111 chunker, after A1111's ``modules/sd_hijack_clip.py``
  ``tokenize_line``) cuts them into 75-token chunks: at the limit, at the last comma within 20 tokens of it, and at
  ``BREAK``. Each chunk is wrapped in start/end tokens and padded to 77.
- Emphasis (:func:`encode_weighted`): ``(word:1.3)`` / ``[word]`` scales each token's hidden state and the mean is
  restored (``z *= w; z *= old_mean / new_mean``), over all texts of one batch, per chunk; chunks are concatenated.
- Clip skip: honoured for models that condition on the last layer (SD 1.x); the renderer ignores it for
  penultimate-layer models (SD 2.x), as A1111 does.
- Prompt schedules: the texts of a prompt per step become schedule entries (:func:`schedule_entries`), and
  :func:`schedule_step` maps a pipeline iteration to the A1111 step whose text applies. The negative prompt is
  scheduled too, but reads ``AND`` and extra-network tags as words (:func:`negative_texts`).

SDXL (:func:`encode_weighted_xl`), as A1111 does it (``modules/sd_models_xl.py``, ``sd_hijack_clip.py``): each of
the two text encoders (CLIP ViT-L and OpenCLIP bigG) is a separate A1111 text encoder with its own chunks and pad
token (ViT-L pads with the end token, bigG with ``"!"``), and emphasis is applied *per encoder*: each one's
``hidden_states[-2]`` (the penultimate layer, without the final layer norm) is multiplied by the token weights and
its own mean restored, then the two are concatenated along the width (768 + 1280 = 2048). The pooled output that
conditions SDXL's UNet (bigG's projected end-token state) is taken from the first chunk *before* weighting: emphasis
never changes it. Clip skip is ignored for SDXL, as in A1111 by default. An empty negative prompt is zeros (both the
embeddings and the pooled output), as A1111 and diffusers make it; the renderer does that.

SD 2's penultimate layer: diffusers stores SD 2's OpenCLIP text tower without its last block (its converter skips
``resblocks.23``: the hub's SD 2 text encoders have 23 of ViT-H's 24 layers), so the stored encoder's
``last_hidden_state``, which includes the final layer norm, already is "penultimate layer, then final layer norm".
The layer is therefore counted on the stored encoder: clip skip 1 is ``last_hidden_state``, clip skip ``k`` is
``hidden_states[-k]`` followed by the final layer norm, as A1111 does for SD 1.

torch is imported only inside the functions that need it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bridge.chunks import CHUNK_TOKENS, COMMA_BACKTRACK, chunk_spans
from bridge.syntax import NetworkTag, Text, parse
from bridge.syntax import attention as parse_attention
from bridge.syntax import render as render_nodes

if TYPE_CHECKING:
    import torch

__all__ = [
    "CHUNK_TOKENS",
    "COMMA_BACKTRACK",
    "PromptChunk",
    "encode_weighted",
    "encode_weighted_xl",
    "negative_texts",
    "prompt_chunks",
    "schedule_callback",
    "schedule_entries",
    "schedule_step",
]

BREAK = ("BREAK", -1)  # how attention() marks a chunk break
COMMA_TOKEN = ",</w>"  # the comma in CLIP's vocabulary (A1111: self.comma_token)


@dataclass
class PromptChunk:
    """One 77-token chunk: token ids (start, 75 tokens or end-token padding, end) and a weight per token."""

    tokens: list[int]
    weights: list[float]


def prompt_chunks(tokenizer: Any, text: str, *, comma_backtrack: int = COMMA_BACKTRACK) -> list[PromptChunk]:
    """Split ``text`` (a prompt as it reaches the text encoder: no tags, editing resolved) into A1111's chunks.

    Emphasis comes from :func:`bridge.syntax.attention`. Each piece is tokenized on its own by ``tokenizer`` (the
    pipeline's); the ids between BREAKs go to :func:`bridge.chunks.chunk_spans`, the same chunker that counts chunks
    for the bridge. Chunks are padded with the end token and wrapped in start/end tokens; the model's own pad token
    (SD 2: ``"!"``) is applied later, by :func:`encode_weighted`. An empty text gives one chunk.
    """
    start, end = tokenizer.bos_token_id, tokenizer.eos_token_id
    comma = tokenizer.convert_tokens_to_ids(COMMA_TOKEN)
    pieces = parse_attention(text)
    token_lists = tokenizer([piece for piece, _ in pieces], add_special_tokens=False, verbose=False)["input_ids"]
    ids: list[list[int]] = [[]]  # per run of text between BREAKs
    weights: list[list[float]] = [[]]
    for piece_ids, (piece, weight) in zip(token_lists, pieces, strict=True):
        if (piece, weight) == BREAK:
            ids.append([])
            weights.append([])
            continue
        ids[-1].extend(piece_ids)
        weights[-1].extend([weight] * len(piece_ids))
    chunks = []
    for span in chunk_spans(ids, comma, comma_backtrack=comma_backtrack):
        padding = CHUNK_TOKENS - (span.end - span.start)
        chunks.append(PromptChunk(
            [start, *ids[span.run][span.start : span.end], *[end] * padding, end],
            [1.0, *weights[span.run][span.start : span.end], *[1.0] * padding, 1.0],
        ))
    return chunks


def _final_layer_norm(text_encoder: Any) -> Any:
    # transformers 4.x nests the CLIP text tower in `text_model`; 5.x does not
    return getattr(text_encoder, "text_model", text_encoder).final_layer_norm


def _hidden_states(text_encoder: Any, tokens: torch.Tensor, clip_skip: int) -> torch.Tensor:
    """A1111's encode_with_transformers: the last layer, or ``hidden_states[-clip_skip]`` + the final layer norm."""
    if clip_skip <= 1:
        return text_encoder(tokens).last_hidden_state
    hidden = text_encoder(tokens, output_hidden_states=True).hidden_states[-clip_skip]
    return _final_layer_norm(text_encoder)(hidden)


def _weighted_chunks(
    text_encoder: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    pad_token_id: int | None,
    comma_backtrack: int,
    encode: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]],
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A1111's emphasis on one text encoder: ``(texts, chunks * 77, width)`` and the pooled output of the first chunk.

    ``encode(tokens)`` returns the hidden states to weight and the pooled output (or None). For each chunk, tokens
    after the first end token become ``pad_token_id`` (default: the tokenizer's), the hidden states are multiplied by
    each token's weight and rescaled so their mean over the batch is what it was; the pooled output is not weighted.
    """
    import torch

    if not texts:
        raise ValueError("encoding needs at least one text")
    pad = tokenizer.pad_token_id if pad_token_id is None else pad_token_id
    per_text = [prompt_chunks(tokenizer, text, comma_backtrack=comma_backtrack) for text in texts]
    count = max(len(chunks) for chunks in per_text)
    empty = prompt_chunks(tokenizer, "")[0]
    per_text = [chunks + [empty] * (count - len(chunks)) for chunks in per_text]
    device = text_encoder.device
    encoded = []
    first_pooled = None
    with torch.no_grad():
        for index in range(count):
            tokens = torch.tensor([chunks[index].tokens for chunks in per_text], device=device)
            if pad != tokenizer.eos_token_id:
                is_end = (tokens == tokenizer.eos_token_id).int()
                tokens = tokens.masked_fill(is_end.cumsum(dim=1) - is_end > 0, pad)  # after the first end token
            weights = torch.tensor([chunks[index].weights for chunks in per_text], device=device)
            z, pooled = encode(tokens)
            z = z.float()
            original_mean = z.mean()
            z = z * weights[..., None]
            z = z * (original_mean / z.mean())
            encoded.append(z.to(text_encoder.dtype))
            if index == 0:
                first_pooled = pooled
    return torch.cat(encoded, dim=1), first_pooled


def encode_weighted(
    text_encoder: Any,
    tokenizer: Any,
    texts: str | Sequence[str],
    *,
    clip_skip: int = 1,
    pad_token_id: int | None = None,
    comma_backtrack: int = COMMA_BACKTRACK,
) -> torch.Tensor:
    """Encode prompt text(s) with emphasis as A1111 does: ``(len(texts), chunks * 77, width)``.

    ``texts`` are prompts as they reach the text encoder (:meth:`bridge.syntax.Clause.text_at`); several texts are one
    A1111 batch, as the schedule entries of one prompt are: all are padded to the same number of chunks with empty
    chunks, and the emphasis mean is taken over the batch, per chunk. For each chunk: tokens after the first end token
    become ``pad_token_id`` (default: the tokenizer's pad token; SD 1 pads with the end token, SD 2 with ``"!"``),
    the encoder's hidden states at layer ``clip_skip`` (see the module docstring) are multiplied by each token's
    weight, then rescaled so their mean is what it was before weighting. Chunks are concatenated along the sequence.
    """
    texts = [texts] if isinstance(texts, str) else list(texts)
    embeddings, _ = _weighted_chunks(
        text_encoder, tokenizer, texts, pad_token_id=pad_token_id, comma_backtrack=comma_backtrack,
        encode=lambda tokens: (_hidden_states(text_encoder, tokens, clip_skip), None),
    )
    return embeddings


def encode_weighted_xl(
    text_encoders: Sequence[Any],
    tokenizers: Sequence[Any],
    texts: str | Sequence[str],
    *,
    pad_token_ids: Sequence[int | None] | None = None,
    comma_backtrack: int = COMMA_BACKTRACK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SDXL's conditioning as A1111 computes it: ``(embeddings, pooled)``, ``(len(texts), chunks * 77, widths
    summed)`` and ``(len(texts), projection)``.

    ``text_encoders`` are SDXL's (CLIP ViT-L, OpenCLIP bigG with its projection) or the refiner's one (bigG); the
    last one gives the pooled output. Each encoder is weighted on its own (see the module docstring): its
    ``hidden_states[-2]`` (the penultimate layer, no final layer norm) times each token's weight, its own mean
    restored; the encoders' results are concatenated along the width. The pooled output is the last encoder's
    projected end-token state of the first chunk, unweighted. ``pad_token_ids`` default to each tokenizer's pad token
    (SDXL: the end token for ViT-L, ``"!"`` for bigG).
    """
    import torch

    texts = [texts] if isinstance(texts, str) else list(texts)
    pads = list(pad_token_ids) if pad_token_ids is not None else [None] * len(text_encoders)
    if not len(text_encoders) == len(tokenizers) == len(pads) or not text_encoders:
        raise ValueError(f"encode_weighted_xl needs as many tokenizers and pad ids as text encoders (one or more) but "
                         f"got {len(text_encoders)} encoders, {len(tokenizers)} tokenizers, {len(pads)} pad ids")
    parts = []
    pooled = None
    for text_encoder, tokenizer, pad in zip(text_encoders, tokenizers, pads, strict=True):

        def penultimate(tokens: torch.Tensor, text_encoder: Any = text_encoder) -> tuple[torch.Tensor, Any]:
            outputs = text_encoder(tokens, output_hidden_states=True)
            return outputs.hidden_states[-2], getattr(outputs, "text_embeds", None)

        embeddings, pooled = _weighted_chunks(
            text_encoder, tokenizer, texts, pad_token_id=pad, comma_backtrack=comma_backtrack, encode=penultimate
        )
        parts.append(embeddings)
    if pooled is None:
        raise ValueError("the last SDXL text encoder must have a text projection (CLIPTextModelWithProjection): "
                         "its pooled output conditions the UNet")
    return torch.cat(parts, dim=-1), pooled.to(parts[-1].dtype)


def schedule_step(iteration: int, iterations: int, steps: int) -> int:
    """The A1111 step (1-based) whose prompt text applies at pipeline iteration ``iteration`` (0-based).

    A1111's denoiser counts from 0 and picks the first schedule entry ending at or after its count, so its step 0
    uses step 1's text and step ``i`` uses step ``i``'s. Second-order samplers (Heun, DPM2, DPM2 a) call the model
    about twice per step and run more iterations than steps: A1111's count runs past its schedule, after which it
    falls back to the first entry; here the schedule is spread over all iterations (iteration ``i`` of ``n`` uses
    step ``i * steps // n``).

    >>> [schedule_step(i, 4, 4) for i in range(4)]
    [1, 1, 2, 3]
    """
    return max(1, min(steps, iteration * steps // iterations))


def schedule_entries(texts: list[str]) -> tuple[list[str], tuple[int, ...]]:
    """Schedule entries (runs of equal consecutive texts, one text per step) and the entry index of each step."""
    entries: list[str] = []
    entry_of_step: list[int] = []
    for text in texts:
        if not entries or entries[-1] != text:
            entries.append(text)
        entry_of_step.append(len(entries) - 1)
    return entries, tuple(entry_of_step)


def schedule_callback(
    schedules: Sequence[tuple[int, ...]],
    steps: int,
    embeddings: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    *,
    pooled: Callable[[int], tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> Callable | None:
    """A diffusers ``callback_on_step_end`` that swaps ``prompt_embeds`` for ``embeddings(step)`` (positive,
    negative) when prompt editing or alternation changes the entry of one of ``schedules`` (each: the entry index of
    every step, :func:`schedule_entries`) at the next iteration; None when every schedule has one entry. ``pooled``
    (SDXL) swaps ``add_text_embeds`` the same way."""
    if not any(map(any, schedules)):
        return None

    def entries(step: int) -> tuple[int, ...]:
        return tuple(entry_of_step[step - 1] for entry_of_step in schedules)

    def swap(pipe: Any, iteration: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        import torch

        iterations = len(pipe.scheduler.timesteps)
        # a pipeline that starts part-way (an SDXL refiner after the base) counts its iterations from 0
        iteration += getattr(pipe.scheduler, "begin_index", None) or 0
        if iteration + 1 >= iterations:
            return {}
        upcoming = schedule_step(iteration + 1, iterations, steps)
        if entries(upcoming) == entries(schedule_step(iteration, iterations, steps)):
            return {}
        swapped = {}
        for name, make in (("prompt_embeds", embeddings), ("add_text_embeds", pooled)):
            if make is None:
                continue
            positive, negative = make(upcoming)
            current = tensors[name]
            both = torch.cat([negative, positive]) if pipe.do_classifier_free_guidance else positive
            swapped[name] = both.to(device=current.device, dtype=current.dtype)
        return swapped

    return swap


def negative_texts(negative_prompt: str, steps: int) -> list[str]:
    """The negative prompt's text at steps 1..steps: A1111 schedules it, but reads ``AND`` and tags as words.

    >>> negative_texts("ugly <lora:x:1> AND [blurry:sharp:1]", 2)
    ['ugly <lora:x:1> AND blurry', 'ugly <lora:x:1> AND sharp']
    """
    prompt = parse(negative_prompt)
    for node, container, _ in list(prompt.walk()):
        if isinstance(node, NetworkTag):
            container[container.index(node)] = Text(node.text)
    texts = []
    for step in range(1, steps + 1):
        parts = [render_nodes(prompt.clauses[0].children, step=step, steps=steps) + prompt.clauses[0].weight_text]
        for separator, clause in zip(prompt.separators, prompt.clauses[1:], strict=True):
            parts += [separator, render_nodes(clause.children, step=step, steps=steps) + clause.weight_text]
        texts.append("".join(parts))
    return texts

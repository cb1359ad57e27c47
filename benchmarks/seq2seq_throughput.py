"""How much faster the learned bridge translates prompts in batches than one at a time.

    python benchmarks/seq2seq_throughput.py [--prompts 256] [--single 32] [--batch-size 64] [--max-new-tokens 32]

The model is t5-small-sized and random (d_model 512, 6 + 6 layers, 8 heads, d_ff 2048, vocabulary 32,128; built from
its config, nothing downloaded) with a BPE tokenizer trained on the DiffusionDB corpus; CPU, greedy decoding. In one
run it prints prompts/s of:

- the batched translator: ``Seq2SeqTranslator.translate_batch`` (network policy and placeholders, the rules bridge for
  negative/size/settings, one generation over inputs sorted by length, ``--batch-size`` at a time);
- batched ``generate`` alone, on the same inputs;
- the baseline: one ``generate`` call per prompt (``--single`` prompts of the same list);

and the ratios. Target (issue 7): the batched translator >= 5x the baseline. A random model seldom ends a sequence
early, so outputs run to ``--max-new-tokens`` in every mode and the comparison is like for like. Nothing asserts: it
reports.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bridge.learned.bridge_info import BridgeInfo
from bridge.learned.seq2seq import Seq2SeqTranslator
from bridge.recipe import Recipe
from bridge.testing import t5_from_config, train_tokenizer

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpora" / "diffusiondb_prompts.jsonl"
T5_SMALL = {"d_model": 512, "layers": 6, "heads": 8, "d_ff": 2048}
T5_VOCAB = 32128
TOKENIZER_VOCAB = 8000  # what the corpus supports; the model keeps t5-small's embedding size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=256, help="prompts the batched modes translate")
    parser.add_argument("--single", type=int, default=32, help="prompts the one-at-a-time baseline translates")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    prompts = [json.loads(line)["prompt"].strip() for line in CORPUS.read_text(encoding="utf-8").splitlines()]
    tokenizer = train_tokenizer(prompts, TOKENIZER_VOCAB)
    model = t5_from_config(T5_VOCAB, **T5_SMALL).eval()
    info = BridgeInfo("sd15", "sd2", max_target_tokens=args.max_new_tokens)
    translator = Seq2SeqTranslator(model, tokenizer, info, model_id="random t5-small", batch_size=args.batch_size)
    recipes = [Recipe(prompt=p) for p in prompts[: args.prompts]]
    inputs = [translator.encode(r).input_text for r in recipes]
    parameters = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"model: random T5, {parameters:.0f}M parameters ({T5_SMALL}), CPU, {torch.get_num_threads()} threads, "
          f"greedy, {args.max_new_tokens} new tokens at most")

    translator.generate(inputs[:2], batch_size=2)  # warm-up
    start = time.perf_counter()
    translator.translate_batch(recipes)
    translator_rate = len(recipes) / (time.perf_counter() - start)

    start = time.perf_counter()
    translator.generate(inputs, batch_size=args.batch_size)
    generate_rate = len(inputs) / (time.perf_counter() - start)

    start = time.perf_counter()
    for text in inputs[: args.single]:
        translator.generate([text])
    single_rate = args.single / (time.perf_counter() - start)

    print(f"batched translator (translate_batch, batch {args.batch_size}): {translator_rate:8.1f} prompts/s "
          f"({len(recipes)} prompts)")
    print(f"batched generate:                        {generate_rate:8.1f} prompts/s")
    print(f"one-at-a-time generate (baseline):       {single_rate:8.1f} prompts/s ({args.single} prompts)")
    print(f"ratio batched translator / baseline: {translator_rate / single_rate:.1f}x (target >= 5x); "
          f"batched generate / baseline: {generate_rate / single_rate:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

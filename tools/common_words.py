"""Write bridge/data/common_words.txt: the words SD prompts use most, each with its CLIP BPE token count.

    python tools/common_words.py [--top 3000]

bridge.chunks uses the list for a cheap upper bound on a prompt's token count (a listed word takes its listed count,
any other pre-token at most one token per byte), so a short prompt is known to fit in 75 tokens without loading the
BPE vocabulary. Counted over the shipped corpora (data/corpora), plus every word the SD1 -> SD2 knowledge writes
(default negatives, artist descriptions, replacements); a test checks every listed count.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--top", type=int, default=3000)
    args = parser.parse_args(argv)

    from bridge.datafiles import atomic_write
    from bridge.tokens import clean, count_tokens, pretokens

    corpora = ROOT / "data" / "corpora"
    prompts = [json.loads(line)["prompt"] for line in (corpora / "diffusiondb_prompts.jsonl").open(encoding="utf-8")]
    with (corpora / "parti_prompts.tsv").open(encoding="utf-8") as f:
        prompts += [row["Prompt"] for row in csv.DictReader(f, delimiter="\t")]
    # What the bridge itself writes (default negatives, artist descriptions, replacements) counts as common too.
    from bridge.rules import KnowledgeBase
    from bridge.rules.knowledge import RULES_DIR

    kb = KnowledgeBase.load(RULES_DIR / "sd1_to_sd2.toml")
    written = [n.prompt for n in kb.negatives.values()] + [a.description for a in kb.artists.values()]
    written += [r.params.replacement for r in kb.rules.values() if r.kind == "phrase"]
    counts = Counter(word for p in prompts for word in pretokens(clean(p)) if word.isascii())
    for text in written:
        counts.update({w: 10**6 for w in pretokens(clean(text)) if w.isascii()})
    words = [w for w, _ in counts.most_common(args.top) if len(w) > 1 and count_tokens(w) < len(w)]
    out = ROOT / "bridge" / "data" / "common_words.txt"
    atomic_write(out, "".join(f"{w} {count_tokens(w)}\n" for w in sorted(words)))
    print(f"{len(words)} words -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

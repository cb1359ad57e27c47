"""The whole loop learns what its scorer rewards, in the simulated world of bridge.workflows.simulated (CPU, about a minute):
data/build_pairs.py --simulated -> training/train.py --tiny -> eval/evaluate.py --simulated on held-out prompts.

The world's hidden preference (16 groups of invented style words: one good, one neutral, one bad; subject words must
stay) is unknown to the rules bridge and to the candidate generator, which proposes every group-mate blindly; only the
simulated scorer knows which is better. A tiny T5 trained on the best-of-N pairs must then beat the identity on
held-out prompts (ties count as losses) and keep every placeholder of the protected syntax exactly once.
"""

import csv
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from script_loader import load_script

from bridge.learned.placeholders import PLACEHOLDER_PATTERN
from bridge.learned.seq2seq import Seq2SeqTranslator, split_output
from bridge.load import translate
from bridge.recipe import Recipe
from bridge.workflows.simulated import (
    STYLE_WORDS,
    SimulatedRenderer,
    SimulatedScorer,
    SimulatedWorld,
    decode_image,
    encode_image,
)

REPO = Path(__file__).resolve().parents[1]
TARGET = "sd21-base"
TRAIN_PROMPTS, HELD_OUT_PROMPTS = 1200, 100
TRAIN_STEPS = 1500
MIN_WIN_RATE = 0.8


build_pairs = load_script("build_pairs_script", REPO / "data" / "build_pairs.py")
train = load_script("train_script", REPO / "training" / "train.py")
evaluate = load_script("evaluate_script", REPO / "eval" / "evaluate.py")


# ---- the world itself


def test_the_hidden_preference_is_not_the_rules_bridges_knowledge():
    for word in STYLE_WORDS:
        prompt = f"a red fox in the forest, {word}"
        changed = [c.rule for c in translate(prompt, target=TARGET).changes if c.rule not in ("size",)]
        assert translate(prompt, target=TARGET).prompt == prompt and all(r.startswith("negative") for r in changed)


def test_the_scorer_rewards_good_words_and_punishes_dropped_subjects():
    world = SimulatedWorld()
    prompt = next(p for p in world.prompts(50) if world.best(p) != p)
    best = world.best(prompt)
    assert world.preference(prompt, best) > world.preference(prompt, prompt)
    dropped = best.replace(world.subject_words(prompt)[0], "", 1)
    assert world.preference(prompt, dropped) < world.preference(prompt, prompt)  # a drop costs more than a swap gains
    assert max(world.preference(prompt, p) for p in world.proposals(prompt)) == world.preference(prompt, best)


def test_renders_carry_their_recipe_and_scores_are_deterministic():
    image = encode_image("a (red fox:1.2) in the forest, misty", "blurry", 7)
    assert decode_image(image) == {"prompt": "a (red fox:1.2) in the forest, misty", "negative_prompt": "blurry",
                                   "seed": 7}
    renders = SimulatedRenderer().render(["a red fox in the forest, misty"] * 2)
    first, again = SimulatedScorer().score(["a red fox in the forest, misty"] * 2, [r.image for r in renders])
    assert first == again and first.total == first.source_text_image
    with pytest.raises(ValueError, match="not an image of the simulated renderer"):
        decode_image(encode_image("x", "", 0).rotate(90))


# ---- the loop


@pytest.fixture(scope="module")
def loop(tmp_path_factory, torch_one_thread):
    """Pairs from the simulated world, a tiny T5 trained on them, an evaluation on held-out prompts; seconds taken."""
    root = tmp_path_factory.mktemp("simulated")
    world = SimulatedWorld()
    prompts = world.prompts(TRAIN_PROMPTS + 3 * HELD_OUT_PROMPTS, seed=1)
    training = prompts[:TRAIN_PROMPTS]
    # held out: never trained on, and with something to improve (a prompt already at its best can only tie)
    held_out = [p for p in prompts[TRAIN_PROMPTS:] if world.best(p) != p][:HELD_OUT_PROMPTS]
    (root / "train.txt").write_text("\n".join(training) + "\n", encoding="utf-8")
    (root / "held_out.txt").write_text("\n".join(held_out) + "\n", encoding="utf-8")
    world.write_proposals(training, root / "candidates.jsonl")
    seconds = {}
    started = time.perf_counter()
    assert build_pairs.main(["--simulated", "--corpus", str(root / "train.txt"), "--candidates",
                             str(root / "candidates.jsonl"), "--variants", "none", "--no-require-sd1-style",
                             "--target", TARGET, "--margin", "0.01", "--out", str(root / "pairs")]) == 0
    seconds["build"] = time.perf_counter() - started
    started = time.perf_counter()
    assert train.main(["--tiny", "--data", str(root / "pairs"), "--target", TARGET, "--steps", str(TRAIN_STEPS),
                       "--eval-every", "0", "--save-every", "0", "--log-every", "200",
                       "--out", str(root / "bridge")]) == 0
    seconds["train"] = time.perf_counter() - started
    started = time.perf_counter()
    assert evaluate.main(["--simulated", "--prompts", str(root / "held_out.txt"), "--learned", str(root / "bridge"),
                          "--translators", "identity", "--target", TARGET, "--out", str(root / "eval")]) == 0
    seconds["evaluate"] = time.perf_counter() - started
    print(f"simulated world: {seconds}")
    return root, world, training, held_out


def test_the_pairs_are_what_the_hidden_preference_wants(loop):
    root, world, training, _ = loop
    import pyarrow.parquet as pq

    rows = [r for path in sorted((root / "pairs" / "data").glob("*.parquet")) for r in pq.read_table(path).to_pylist()]
    assert sorted(r["source_prompt"] for r in rows) == sorted(training)
    kept = [r for r in rows if r["kept"]]
    assert len(kept) > len(rows) / 2
    assert all(r["target_prompt"] == world.best(r["source_prompt"]) and r["candidate"].startswith("user:")
               for r in kept)
    assert all(r["source_prompt"] == world.best(r["source_prompt"]) for r in rows if not r["kept"])


def test_the_trained_bridge_beats_the_identity_on_held_out_prompts(loop):
    root, _, training, held_out = loop
    assert not set(held_out) & set(training)
    with open(root / "eval" / "rows.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        scores[row["prompt"]][row["translator"]].append(float(row["score"]))
    assert set(scores) == set(held_out)
    wins = sum(sum(s["learned"]) > sum(s["identity"]) for s in scores.values())  # a tie is a loss here
    win_rate = wins / len(held_out)
    print(f"win rate vs identity (ties lose): {win_rate:.2f}")
    assert win_rate >= MIN_WIN_RATE


def test_the_raw_output_keeps_every_placeholder_exactly_once(loop):
    root, _, _, held_out = loop
    translator = Seq2SeqTranslator.from_pretrained(root / "bridge", device="cpu")
    examples = [translator.encode(Recipe(prompt=p)) for p in held_out]
    raws = [r[0] for r in translator.generate([e.input_text for e in examples], num_beams=translator.info.num_beams)]
    with_syntax = 0
    for example, raw in zip(examples, raws, strict=True):
        prompt, _ = split_output(raw)
        expected = Counter(list(example.prompt.slots))  # each placeholder of the input, once
        with_syntax += bool(expected)
        found = Counter(m.group(0) for m in PLACEHOLDER_PATTERN.finditer(prompt))
        assert found == expected, (example.input_text, raw)
        assert example.problems(raw) == []
    assert with_syntax >= len(held_out) // 5  # the check means something: many held-out prompts have syntax

"""benchmarks/translation_quality.py: each detector on made-up pairs (one that is a defect, one that is not), the
corpus-level consistency passes, and one run of main() on a tiny corpus. Nothing here depends on what the rules bridge
currently outputs: the detectors get hand-written translations, and the end-to-end run checks only the report's shape.
"""

import json
from pathlib import Path

import pytest
from script_loader import load_script

REPO = Path(__file__).resolve().parents[1]
quality = load_script("translation_quality_script", REPO / "benchmarks" / "translation_quality.py")
quality.TOKENIZER = "bridge"  # the stdlib tokenizer: no torch import in the tests

ARTISTS = quality.Artists(["Greg Rutkowski", "Alphonse Mucha", "Mucha", "Annie Leibovitz", "Wlop", "Frank Frazetta"])
PAINTING_NEGATIVE = "photo, photograph, 3d render, watermark, text, ugly, deformed, blurry"
PHOTO_NEGATIVE = "painting, drawing, illustration, cartoon, 3d render, b&w, blurry, text"


# --------------------------------------------------------------------------------------------------------------------
# text helpers


def test_phrases_split_on_the_delimiters_but_not_inside_numbers():
    assert quality.phrases("a, b; c! d | e + f. g BREAK h") == ["a", " b", " c", " d ", " e ", " f", " g ", " h"]
    assert len(quality.phrases("f / 1. 8, 8 k.")) == 3  # "f / 1. 8", " 8 k", ""


def test_normalize_phrase():
    assert quality.normalize_phrase(" (8 K:1.2) ") == "8k"
    assert quality.normalize_phrase("[35 mm]") == "35mm"
    assert quality.normalize_phrase("  Trending  on ArtStation!! ") == "trending on artstation"


def test_artists_found_by_their_longest_name():
    assert ARTISTS.find("art by Alphonse Mucha and greg rutkowski") == {"alphonse mucha", "greg rutkowski"}
    assert ARTISTS.find("in the style of mucha") == {"mucha"}
    assert ARTISTS.find("a castle on a hill") == frozenset()


def test_gross_inserted_tokens_counts_insertions_not_net_growth_nor_weights():
    assert quality.gross_inserted_tokens("a castle", "a castle") == 0
    assert quality.gross_inserted_tokens("a castle, octane render", "a castle, 3d render") == 2  # "3", "d"
    # a phrase swapped for one as long: no net growth, but the new words are inserted tokens
    assert quality.gross_inserted_tokens("a castle, by someone", "a castle, moody fantasy") == 2
    assert quality.gross_inserted_tokens("a ((fractal)) hill", "a (fractal:1.21) hill") == 0


# --------------------------------------------------------------------------------------------------------------------
# one detector per kind: a defect, and a look-alike that is none


def test_spill():
    original = "a small red boat on a calm lake at dawn"
    assert quality.detect_spill(original, original + ", " + "misty glowing light " * 25)
    assert quality.detect_spill(original, original + ", soft light") is None
    long = "word " * 100  # two chunks already
    assert quality.detect_spill(long, long + "soft light") is None


def test_growth():
    original = "a castle on a hill, by someone"
    inserted = ("epic high fantasy digital painting, dramatic cinematic volumetric lighting, "
                "painterly textured brushwork, muted earthy palette")
    assert quality.detect_growth(original, "a castle on a hill, " + inserted)
    assert quality.detect_growth(original, "a castle on a hill, epic fantasy") is None


def test_duplicate():
    assert "'digital painting' x2" in quality.detect_duplicate(
        "a castle, digital painting, by someone", "a castle, digital painting, epic fantasy digital painting")
    assert quality.detect_duplicate("a knight, manga, illustration, by someone",
                                    "a knight, manga, illustration, anime style illustration")
    assert quality.detect_duplicate("a lake, by someone, by someone else",
                                    "a lake, misty watercolor landscape, misty watercolor landscape")
    # the user wrote it twice; a modifier shared at the start of a phrase; a fragment of two phrases
    assert quality.detect_duplicate("digital painting, digital painting, 8k", "digital painting, digital painting") \
        is None
    assert quality.detect_duplicate("a knight, intricate, by someone",
                                    "a knight, intricate, intricate ink illustration") is None
    assert quality.detect_duplicate("a castle, by someone and someone else",
                                    "a castle, painterly fantasy digital concept art, epic fantasy digital painting") \
        is None
    # a phrase the user wrote twice, shortened the same way in both places
    assert quality.detect_duplicate("a girl, art by someone and Greg Rutkowski, 8k, art by someone and Greg Rutkowski",
                                    "a girl, art by Greg Rutkowski, 8k, art by Greg Rutkowski") is None
    assert quality.detect_duplicate("a girl, art by someone and Greg Rutkowski, 8k",
                                    "a girl, art by Greg Rutkowski, 8k, art by Greg Rutkowski")


def test_broken_phrase():
    assert quality.detect_broken_phrase("a lake, oil painting by someone", "a lake, oil, painting, soft light") \
        == "cut by a delimiter: 'oil, painting'"
    assert quality.detect_broken_phrase("a lake, line art by someone", "a lake, line, art by soft light")
    assert quality.detect_broken_phrase("a lake, oil painting by someone", "a lake, oil painting, soft light") is None
    assert quality.detect_broken_phrase("a lake, oil, painting, 8k", "a lake, oil, painting") is None
    # a delimiter before "and" or "by" starts an item or a credit: nothing is cut from its noun
    assert quality.detect_broken_phrase("a lake, by X and Y, and Z", "a lake, by X, and Z") is None
    assert quality.detect_broken_phrase("a lake, art by X Y by Z, by W", "a lake, art by X Y, by W") is None


def test_dangling():
    assert quality.detect_dangling("a castle, by someone", "a castle, by, epic fantasy") == "phrase ends with 'by'"
    assert quality.detect_dangling("a castle in the style of someone", "a castle in the style of, soft light") \
        == "phrase ends with 'the style of'"
    assert quality.detect_dangling("a castle, 8k, a hill", "a castle, , a hill") == "empty phrase (doubled separator)"
    assert quality.detect_dangling("a cat, 8k", "a cat,") == "separator at the end"
    assert quality.detect_dangling("a cat, (someone)", "a cat, ()") == "empty brackets"
    assert quality.detect_dangling("a castle, and someone", "a castle, and") is not None
    assert quality.detect_dangling("a castle, X and Y", "a castle, and Y") == "phrase starts with 'and'"
    assert quality.detect_dangling("a tower, X by the sea", "a tower, by the sea") == "phrase starts with 'by'"
    assert quality.detect_dangling("a tower, X by jo lee", "a tower, by jo lee") is None  # a credit
    # what the user wrote themselves
    assert quality.detect_dangling("a castle, art by, 8k", "a castle, art by") is None
    assert quality.detect_dangling("a castle, , 8k, hill", "a castle, , hill") is None
    assert quality.detect_dangling("a cat, 8k,", "a cat,") is None


def test_subject_clash():
    assert "people features" in quality.detect_subject_clash(
        "a misty mountain lake at dawn, by someone", "a misty mountain lake at dawn, elegant figures, flowing hair")
    assert quality.detect_subject_clash("a dense jungle temple, by someone",
                                        "a dense jungle temple, vast desert landscapes")
    assert quality.detect_subject_clash("portrait of an old sailor, by someone",
                                        "portrait of an old sailor, sweeping landscape")
    # someone is there; no scene; a desert the user asked for
    assert quality.detect_subject_clash("a woman by a mountain lake, by someone",
                                        "a woman by a mountain lake, elegant figures, flowing hair") is None
    assert quality.detect_subject_clash("a lake, by someone", "a lake, moody light") is None
    assert quality.detect_subject_clash("a jungle by the desert, by someone",
                                        "a jungle by the desert, vast desert landscapes") is None


def test_medium_clash():
    assert "'3d'" in quality.detect_medium_clash("photo of a red car, octane render", "photo of a red car, 3d render")
    assert quality.detect_medium_clash("oil painting of a ship, unreal engine", "oil painting of a ship, 3d render")
    assert quality.detect_medium_clash("photo of a woman, by someone", "photo of a woman, digital painting")
    assert quality.detect_medium_clash("a pencil drawing of a cat, 8k", "a pencil drawing of a cat, 35mm photograph")
    # no medium asked; the user asked for both; the user asked for a 3d render
    assert quality.detect_medium_clash("a robot, octane render", "a robot, 3d render") is None
    assert quality.detect_medium_clash("photo of a woman, oil painting, by someone",
                                       "photo of a woman, oil painting, digital painting") is None
    assert quality.detect_medium_clash("a 3 d model of a car, photo, octane", "a 3 d model of a car, photo, 3d render") \
        is None


def test_negative_clash():
    negative = "text, ugly, deformed, photo, blurry, b&w"
    assert "'text'" in quality.detect_negative_clash("a neon sign saying open", "a neon sign saying open", "", negative)
    assert "'ugly', 'deformed'" in quality.detect_negative_clash("an eldritch monster", "an eldritch monster", "",
                                                                 negative)
    assert "'photo'" in quality.detect_negative_clash("a knight, film still", "a knight, film still", "", negative)
    assert "'blurry'" in quality.detect_negative_clash("a cat, motion blur", "a cat, motion blur", "", negative)
    # bokeh blurs the background: a negative "blurry" keeps the subject sharp and is no clash
    assert quality.detect_negative_clash("a cat, bokeh", "a cat, bokeh", "", negative) is None
    assert "'b&w'" in quality.detect_negative_clash("a noir detective", "a noir detective", "", negative)
    # nothing asked for (a "plus sign" has no text, four eyes are no limbs); the user's own term; nothing added
    assert quality.detect_negative_clash("an icon with a plus sign", "an icon with a plus sign", "", negative) is None
    assert quality.detect_negative_clash("a cat with four eyes", "a cat with four eyes", "", "extra limbs") is None
    assert quality.detect_negative_clash("a cat with four eyes", "a cat with four eyes", "", "extra eyes")
    assert quality.detect_negative_clash("a castle on a hill", "a castle on a hill", "", negative) is None
    assert quality.detect_negative_clash("a neon sign", "a neon sign", "text", "text, blurry") is None
    assert quality.detect_negative_clash("a neon sign", "a neon sign", "text", "text") is None


def test_negative_kind_from_own_words():
    detect = quality.detect_negative_kind
    assert "painting-like" in detect("a castle on a hill", "a castle on a hill, digital painting", "",
                                     PAINTING_NEGATIVE, artists=ARTISTS)
    assert "photo-like" in detect("a woman in a red coat", "a woman in a red coat, 35mm photograph", "",
                                  PHOTO_NEGATIVE, artists=ARTISTS)
    # a named artist, the user's own medium word, a "by X" the bridge rewrote, nothing of the kind inserted
    assert detect("a castle, by greg rutkowski", "a castle, digital painting", "", PAINTING_NEGATIVE,
                  artists=ARTISTS) is None
    assert detect("a robot by frazetta", "a robot by frazetta, oil painting", "", PAINTING_NEGATIVE,
                  artists=ARTISTS) is None  # a surname after "by"
    assert detect("a castle, concept art", "a castle, concept art, digital painting", "", PAINTING_NEGATIVE,
                  artists=ARTISTS) is None
    assert detect("a castle by someone unknown", "a castle, digital painting", "", PAINTING_NEGATIVE,
                  artists=ARTISTS) is None
    assert detect("a castle on a hill", "a castle on a hill", "", PAINTING_NEGATIVE, artists=ARTISTS) is None
    assert detect("a woman, annie leibovitz", "a woman, 35mm photograph", "", PHOTO_NEGATIVE, artists=ARTISTS) is None


# --------------------------------------------------------------------------------------------------------------------
# corpus passes


def test_missed_artists_by_consistency():
    pairs = [
        ("a cat, by greg rutkowski", "a cat, epic fantasy"),  # removed here ...
        ("a dark forest. art by greg rutkowski. 8 k.", "a dark forest. art by greg rutkowski. 8 k."),  # ... kept here
        ("a knight by wlop", "a knight by wlop"),  # kept everywhere: a "keep" artist
        ("a queen, wlop", "a queen, wlop"),
    ]
    assert quality.detect_missed_artists(pairs, ARTISTS) == {1: "'greg rutkowski' kept here, removed elsewhere"}
    # "mucha" inside "alphonse mucha" is not removed on its own when "alphonse mucha" goes
    pairs = [("a girl, alphonse mucha", "a girl, art nouveau"), ("a girl, mucha", "a girl, mucha")]
    assert quality.detect_missed_artists(pairs, ARTISTS) == {}


def test_leftover_variants_by_consistency():
    pairs = [("a cat, 8k", "a cat"), ("a dog, (8 K:1.2).", "a dog, (8 K:1.2)."), ("a cow, 8k", "a cow, 8k")]
    assert quality.detect_leftover_variants(pairs) == {1: "'8k' kept here, removed elsewhere",
                                                       2: "'8k' kept here, removed elsewhere"}
    # a subject that contains the tag, a phrase over four words, a tag nobody removes
    pairs = [("a cat, 4k", "a cat"), ("a 4k tv on a table", "a 4k tv on a table"),
             ("a big old red barn, x", "x"), ("a barn, a big old red barn", "a barn, a big old red barn"),
             ("a hill, sharp focus", "a hill, sharp focus")]
    assert quality.detect_leftover_variants(pairs) == {}


# --------------------------------------------------------------------------------------------------------------------
# end to end


def test_main_on_a_tiny_corpus(tmp_path, capsys):
    corpora = tmp_path / "corpora"
    corpora.mkdir()
    prompts = ["a castle on a hill, by greg rutkowski, 8k", "a red fox in the snow, photo", "portrait of a knight"]
    (corpora / "diffusiondb_prompts.jsonl").write_text(
        "".join(json.dumps({"prompt": p}) + "\n" for p in prompts), encoding="utf-8")
    (corpora / "parti_prompts.tsv").write_text("Prompt\tCategory\na bowl of fruit\tFood\nbond\tAbstract\n",
                                               encoding="utf-8")
    artists = tmp_path / "artists.txt"
    artists.write_text("Greg Rutkowski\n", encoding="utf-8")
    out = tmp_path / "counts.json"
    code = quality.main(["--corpora-dir", str(corpora), "--data", str(tmp_path / "none"), "--artists", str(artists),
                         "--targets", "sd2", "--samples", "1", "--tokenizer", "bridge", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "diffusiondb -> sd2" in printed and "parti -> sd2" in printed
    assert "target" in printed and ("✓" in printed or "✗" in printed)
    counts = json.loads(out.read_text(encoding="utf-8"))
    assert set(counts) == {"diffusiondb", "parti"}
    db = counts["diffusiondb"]["sd2"]
    assert db["prompts"] == 3 and db["translated"] + db["errors"] == 3
    assert set(db["kinds"]) == set(quality.KINDS)
    assert all(0 <= n <= db["translated"] for n in db["kinds"].values())
    assert 0 <= db["noop"] <= db["translated"] and db["gross_tokens_max"] >= 0


def test_main_without_corpora(tmp_path, capsys):
    assert quality.main(["--corpora-dir", str(tmp_path), "--data", str(tmp_path), "--tokenizer", "bridge"]) == 1
    with pytest.raises(SystemExit):
        quality.main(["--corpus", "nope"])

"""bridge.tokens: CLIP BPE token counts equal to open_clip's, BPE merges as the reference does, a light import."""

import doctest
import fnmatch
import html
import itertools
import json
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import bridge.tokens
from bridge.chunks import CHUNK_TOKENS
from bridge.tokens import VOCAB_PATH, clean, count_tokens, tokenize

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def open_clip_tokens():
    """open_clip's tokenizer (what A1111 uses for SD 2.x), as a function text -> token strings."""
    tokenizer_module = pytest.importorskip("open_clip.tokenizer")
    reference = tokenizer_module.SimpleTokenizer()
    return lambda text: [reference.decoder[i] for i in reference.encode(text)]


def _ftfy_repairs_more(text: str) -> bool:
    """Whether ftfy.fix_text changes ``text`` beyond the subset bridge.tokens applies (mojibake, C1 controls, ...)."""
    import ftfy

    return ftfy.fix_text(text) != unicodedata.normalize("NFC", text.translate(bridge.tokens._fix_table()))


# --------------------------------------------------------------------------------------------------------------------
# Counts


def test_known_counts():
    assert count_tokens("") == 0
    assert count_tokens("   \n ") == 0
    assert tokenize("a castle, 8k") == ["a</w>", "castle</w>", ",</w>", "8</w>", "k</w>"]
    assert tokenize("Greg Rutkowski") == ["greg</w>", "rut", "kowski</w>"]
    assert count_tokens("1024") == 4  # CLIP reads digits one at a time
    assert count_tokens("HIGHLY   detailed") == count_tokens("highly detailed") == 2
    assert count_tokens("&amp;") == count_tokens("&") == 1  # html.unescape
    assert tokenize("it’s") == tokenize("it's") == ["it</w>", "'s</w>"]  # ftfy straightens curly quotes
    assert tokenize("ＡＢＣ") == tokenize("abc")  # ... and full-width forms
    assert tokenize("x²y") == ["x</w>", "Â²</w>", "y</w>"]  # ² is its own pre-token (\p{N}), in byte symbols
    assert count_tokens("<end_of_text>") == 1


def test_counts_equal_open_clip_on_real_prompts(real_prompts, open_clip_tokens):
    pytest.importorskip("ftfy")
    differ = [p for p in real_prompts if tokenize(p) != open_clip_tokens(p)]
    unexplained = [p for p in differ if not _ftfy_repairs_more(p)]
    assert unexplained == []
    assert len(differ) <= 0.01 * len(real_prompts), f"{len(differ)} of {len(real_prompts)} prompts differ"
    assert sum(count_tokens(p) > CHUNK_TOKENS for p in real_prompts) > 100  # the data exercises long prompts too


UNICODE_SAMPLES = "aé’“”‘²½Ⅻ一二日本語テキスト🔥ＡＢ　ﬁĳ\u0301\u200bſİ"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126) | st.sampled_from(UNICODE_SAMPLES)))
def test_tokens_equal_open_clip_on_generated_text(open_clip_tokens, text):
    assume(not _ftfy_repairs_more(text))  # "İ²" is Turkish mojibake to ftfy: it becomes "ݲ"
    assert tokenize(text) == open_clip_tokens(text)
    assert count_tokens(text) == len(tokenize(text))


def test_known_differences_from_open_clip(open_clip_tokens):
    """What is documented as not emulated really differs (so the docstring stays true)."""
    assert open_clip_tokens("cafÃ©") == ["cafÃ©</w>"]  # ftfy repairs the mojibake to "café"
    assert tokenize("cafÃ©") != open_clip_tokens("cafÃ©")


def test_counts_equal_hugging_face_clip_tokenizer(real_prompts, tmp_path):
    """HF's CLIPTokenizer from the same merges agrees wherever its missing cleaning steps change nothing."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("ftfy")
    ranks = bridge.tokens._merge_ranks()
    symbols = bridge.tokens._BYTE_SYMBOLS
    vocab = [*symbols, *(s + "</w>" for s in symbols), *(m.replace(" ", "") for m in ranks)]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (tmp_path / "vocab.json").write_text(json.dumps({v: i for i, v in enumerate(vocab)}), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(ranks) + "\n", encoding="utf-8")
    hf = transformers.CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    import ftfy

    plain = [p for p in real_prompts if ftfy.fix_text(p) == p and html.unescape(p) == p]
    assert len(plain) > 0.95 * len(real_prompts)
    differ = [p for p in plain if hf.convert_ids_to_tokens(hf(p, add_special_tokens=False)["input_ids"]) != tokenize(p)]
    assert differ == []


def test_vocabulary_is_open_clips_file_and_package_data():
    tokenizer_module = pytest.importorskip("open_clip.tokenizer")
    assert VOCAB_PATH.read_bytes() == Path(tokenizer_module.default_bpe()).read_bytes()
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["bridge"]
    relative = VOCAB_PATH.relative_to(REPO / "bridge").as_posix()
    assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns)


# --------------------------------------------------------------------------------------------------------------------
# Import cost


def test_import_reads_no_vocabulary_and_imports_no_heavy_modules():
    code = """
import sys
opened = []
sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == "open" else None)
import bridge.tokens, bridge.chunks
heavy = sorted({"torch", "numpy", "regex", "ftfy", "transformers", "open_clip"} & set(sys.modules))
read_at_import = any(path.endswith("clip_bpe_vocab.txt.gz") for path in opened)
bridge.tokens.count_tokens("a castle")  # common words: counted from the common-word list
read_on_common = any(path.endswith("clip_bpe_vocab.txt.gz") for path in opened)
bridge.tokens.count_tokens("a zorvexian castle")
read_on_count = any(path.endswith("clip_bpe_vocab.txt.gz") for path in opened)
print(heavy, read_at_import, read_on_common, read_on_count)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.split("\n")[0] == "[] False False True"


def test_a_short_prompt_is_checked_without_loading_the_vocabulary():
    code = ("import bridge, bridge.tokens as t; "
            "bridge.translate('a castle on a hill, by greg rutkowski, <lora:detail:0.6>, 8k, trending on artstation');"
            " print(t._merge_ranks.cache_info().currsize)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "0"


# --------------------------------------------------------------------------------------------------------------------
# The steps


def test_module_examples_pass():
    result = doctest.testmod(bridge.tokens)
    assert result.attempted >= 8 and result.failed == 0


def test_common_word_counts_are_exact_so_the_quick_bound_is_safe():
    from bridge.tokens import common_words

    words = common_words()
    assert len(words) > 1000
    assert all(count_tokens(word) == count for word, count in words.items())


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=80)
       | st.lists(st.sampled_from(["it's", "<start_of_text>", "<end", "_x", "a1b", "''s", "!!", " ", "<", "'"]),
                  max_size=20).map("".join))
def test_ascii_pre_tokenizer_splits_as_clip_pattern_does(text):
    from bridge.tokens import _PRETOKEN, _PRETOKEN_ASCII, _PRETOKEN_SPACED, clean

    cleaned = clean(text)
    assert _PRETOKEN_ASCII.findall(cleaned) == _PRETOKEN.findall(cleaned)
    assert [w.removeprefix(" ") for w in _PRETOKEN_SPACED.findall(cleaned)] == _PRETOKEN.findall(cleaned)


def _reference_bpe(word: str) -> tuple[str, ...]:
    """CLIP's BPE as its reference implementation writes it: every pair ranked again after every merge."""
    from bridge.tokens import MERGE_COUNT, _merge_ranks

    ranks = _merge_ranks()
    symbols = [*word[:-1], word[-1] + "</w>"]
    while len(symbols) > 1:
        pairs = [(ranks.get(a + " " + b, MERGE_COUNT), i) for i, (a, b) in enumerate(itertools.pairwise(symbols))]
        rank, i = min(pairs)
        if rank == MERGE_COUNT:
            break
        first, second = symbols[i], symbols[i + 1]
        merged, i = [], 0
        while i < len(symbols):
            if i + 1 < len(symbols) and symbols[i] == first and symbols[i + 1] == second:
                merged.append(first + second)
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return tuple(symbols)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("aaabbnanaeisslltt")), min_size=1, max_size=14)
       | st.text(alphabet=st.sampled_from(list("aaabbnanaeisslltt")), min_size=20, max_size=60)
       | st.sampled_from(["rutkowski", "artstationhq", "mississippi", "aaaaaaaa", "bananarama", "unrealengine5",
                          "a" * 25, "ab" * 40, "supercalifragilisticexpialidociousandsomemore"]))
def test_bpe_merges_as_the_reference_does(word):
    from bridge.tokens import _bpe

    assert _bpe(word) == _reference_bpe(word)


def test_surrogates_are_joined_or_replaced_as_ftfy_does():
    """Text read with surrogateescape or from JSON's "\\ud83c\\udfa8" can hold surrogates: ftfy's fix_surrogates
    joins a pair into its character and makes a lone one U+FFFD, so the count is the character's, never an error."""
    assert clean("a\ud83c\udfa8b") == clean("a🎨b") == "a🎨b"
    assert clean("x\ud800y") == "x\ufffdy"
    assert count_tokens("a\ud83c\udfa8b") == count_tokens("a🎨b")

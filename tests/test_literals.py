"""bridge.rules.literals: the literals a pattern cannot match without, read from the pattern text.

The one promise that matters is soundness: every match contains one of the literals, or the prefilter would hide real
matches. It is checked on hand-written patterns, on every shipped weak-concept pattern against the prompt corpora,
and on thousands of random patterns against every substring of random texts.
"""

import csv
import json
import random
import re
import sys
import time
from pathlib import Path

import pytest

from bridge.rules.literals import required_literals

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
CORPORA = ROOT / "data" / "corpora"


@pytest.mark.parametrize(("pattern", "expected"), [
    # runs of literal characters, escapes and anchors
    ("says", {"says"}),
    (r"\bsays\b", {"says"}),
    ("^abc$", {"abc"}),
    (r"\Aabc\Z", {"abc"}),
    (r"ab\Bcd", {"abcd"}),
    (r"\(foo\)", {"(foo)"}),
    (r"a\.b\*", {"a.b*"}),
    (r"a\tb", {"a\tb"}),
    ("a b-c, d", {"a b-c, d"}),
    (r"\d+px", {"px"}),
    (r"\w\s\S\W\Dok", {"ok"}),
    # the most selective required set wins: longest shortest string, then fewest strings
    ("ab.cdef", {"cdef"}),
    ("(?:ab|cd).ef", {"ef"}),
    (r"\b(?:page|lines?|block)\s+of\s+text\b", {"text"}),
    # groups
    ("(foo)bar", {"foobar"}),
    ("(?:foo)", {"foo"}),
    ("(?P<name>foo)", {"foo"}),
    ("(foo)?", None),
    ("foo(bar)?", {"foo"}),
    ("x(?:bar)?y", {"xy", "xbary"}),
    ("a(?#a comment)b", {"ab"}),
    # alternation
    ("a|b", {"a", "b"}),
    ("foo|", None),
    ("(?:a(?:b|c)|d)e", {"abe", "ace", "de"}),
    (r"(?:\s+|-)word", {"word"}),
    (r"(?:a\s|b)c", {"c"}),
    (r"(?:\w+|x)", None),
    ("sign|signboard|signs", {"sign"}),
    # quantifiers, greedy and lazy
    ("x{0,3}", None),
    ("x{2}", {"xx"}),
    ("ab{2,3}c", {"abbc", "abbbc"}),
    ("x{,2}y", {"y"}),
    ("x{2,}", {"x"}),
    ("x{,}y", {"y"}),
    ("colou?r", {"color", "colour"}),
    ("labell?ed", {"labeled", "labelled"}),
    ("foo+?bar", {"bar"}),
    ("(?:abc)+?", {"abc"}),
    ("(?:abc)*", None),
    ("a(?:bc)??d", {"ad", "abcd"}),
    (r"wr(?:\S+\s+){1,4}?on", {"wr"}),
    ("x{3,5}?y", {"xxxy"}),  # "xxxxy" holds "xxxy"
    # braces that are not quantifiers are literals
    ("a{b", {"a{b"}),
    ("a{}", {"a{}"}),
    ("{a}", {"{a}"}),
    ("a{1,x}", {"a{1,x}"}),
    # character classes
    ("gr[ae]y", {"gray", "grey"}),
    ("[.]com", {".com"}),
    (r"[\]a]b", {"]b", "ab"}),
    ("[]a]b", {"]b", "ab"}),
    ("[^ab]cd", {"cd"}),
    ("[a-z]+ing", {"ing"}),
    (r"[\s:]x", {"x"}),
    ("[-a]z", {"-z", "az"}),
    ("[a-]z", {"-z", "az"}),
    (r"[\b]x", {"\bx"}),
    ("[^]]x", {"x"}),
    # lookarounds consume nothing: they require nothing, and their neighbours stay adjacent
    ("(?<=x)abc(?!d)", {"abc"}),
    ("foo(?=bar)", {"foo"}),
    ("(?=abc)", None),
    ("ab(?<!x)cd", {"abcd"}),
    ("(?<!by )(?<!first )hands?", {"hand"}),
    # flags
    ("(?s)ab.cde", {"cde"}),
    ("(?m)^abc", {"abc"}),
    ("(?i)foo", None),
    pytest.param("foo(?i)", None, marks=pytest.mark.filterwarnings("ignore::DeprecationWarning")),  # 3.10 warns
    ("(?i:foo)barx", {"barx"}),
    ("(?-i:foo)", {"foo"}),
    ("(?s:a.bcd)", {"bcd"}),
    ("(?x)a b", None),
    # what the reader does not understand, or what re rejects, claims nothing
    (r"(a)\1", None),
    ("(?P<x>ab)(?P=x)", None),
    ("(a)?(?(1)b|c)", None),
    (r"\x41bc", None),
    (r"\N{BULLET}", None),
    ("", None),
    ("(", None),
    ("a)", None),
    ("[a", None),
    ("*a", None),
    ("a**", None),
    (r"\q", None),
])
def test_required_literals(pattern, expected):
    assert required_literals(pattern) == (None if expected is None else frozenset(expected))


@pytest.mark.skipif(sys.version_info < (3, 11), reason="possessive quantifiers and atomic groups came in Python 3.11")
def test_possessive_and_atomic():
    assert required_literals("ab*+c") == {"a"}
    assert required_literals("(?>abc)+") == {"abc"}
    assert required_literals("x?+y") == {"y"}


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")  # re's, on the random garbage
def test_odd_input_is_cheap_and_never_raises():
    assert required_literals("(" * 150 + "ab" + ")" * 150) is None  # past the depth limit
    assert required_literals("(?:" * 90 + "ab" + ")" * 90) == {"ab"}
    assert required_literals("(?:x{200}){200}") == {"x" * 200}
    assert required_literals("(?:){100000}ab") == {"ab"}
    assert required_literals("(?:a?){100000}") is None
    assert required_literals("x{0,100000}y") == {"y"}
    start = time.perf_counter()
    assert required_literals("(?:ab|cd|(?:ef|gh)+)ij" * 2000) == {"ij"}
    assert len(required_literals("(?:a|b)" * 5000) or ()) == 64  # runs of six pieces, 2**6 spellings each
    assert time.perf_counter() - start < 2
    rng = random.Random(7)
    for _ in range(3000):
        garbage = "".join(rng.choice("()[]{}|*+?\\^$.-,:=!<>#P?iabx0123") for _ in range(rng.randint(0, 12)))
        required_literals(garbage)


def _shipped_patterns() -> list[str]:
    """Every weak-concept pattern of the knowledge files shipped in bridge/rules, read straight from the TOML."""
    patterns = []
    for path in sorted((ROOT / "bridge" / "rules").rglob("*.toml")):
        for key, tables in tomllib.loads(path.read_text(encoding="utf-8")).items():
            for table in tables if isinstance(tables, list) else []:
                if isinstance(table, dict) and "weak-concept" in (key, table.get("kind")):
                    patterns.extend(p for p in table.get("patterns", []) if p)
    return patterns


def _corpus_prompts() -> list[str]:
    """The DiffusionDB prompts, and the PartiPrompts where a copy is at hand, lower-cased as the stages see them."""
    prompts = []
    with (CORPORA / "diffusiondb_prompts.jsonl").open(encoding="utf-8") as f:
        prompts += [json.loads(line)["prompt"] for line in f if line.strip()]
    for parti in (CORPORA / "parti_prompts.tsv", CORPORA / "PartiPrompts.tsv",
                  Path("/work/shared/data/parti_prompts/PartiPrompts.tsv")):
        if parti.is_file():
            with parti.open(encoding="utf-8", newline="") as f:
                prompts += [row["Prompt"] for row in csv.DictReader(f, delimiter="\t")]
            break
    return [p.lower() for p in prompts]


def test_shipped_patterns_are_prefiltered_soundly():
    patterns = _shipped_patterns()
    prompts = _corpus_prompts()
    assert len(patterns) >= 20 and len(prompts) >= 9000
    prefiltered = matched = 0
    for pattern in patterns:
        needs = required_literals(pattern)
        if needs is None:
            continue
        prefiltered += 1
        compiled = re.compile(pattern)
        for text in prompts:
            for match in compiled.finditer(text):
                matched += 1
                assert any(x in match.group() for x in needs), (pattern, sorted(needs), text)
    assert prefiltered >= len(patterns) - 2
    assert matched > 100  # the corpus does exercise the patterns


def _random_pattern(rng: random.Random, depth: int = 0) -> str:
    """A small random regex of the syntax the reader understands, over the letters "ab" and a few punctuation marks."""
    roll = rng.random()
    if depth > 3 or roll < 0.3:
        atom = rng.choice(["a", "b", "ab", "ba", "aab", "-", " ", r"\.", ".", r"\s", r"\w", r"\d", r"\S", "[ab]",
                           "[^a]", "[a-b]", "[-a]", "[.]", r"[\s-]", "^", "$", r"\b", r"\B"])
    elif roll < 0.45:
        atom = _random_pattern(rng, depth + 1) + _random_pattern(rng, depth + 1)
    elif roll < 0.6:
        atom = _random_pattern(rng, depth + 1) + "|" + _random_pattern(rng, depth + 1)
    elif roll < 0.85:
        opening = rng.choice(["(", "(?:", "(?P<g>", "(?=", "(?!", "(?<=ab)(?:", "(?<!a)(?:", "(?s:", "(?i:"])
        atom = opening.replace("<g>", f"<g{rng.randrange(10**9)}>") + _random_pattern(rng, depth + 1) + ")"
    else:
        atom = "(?:" + _random_pattern(rng, depth + 1) + ")"
    if rng.random() < 0.35:
        atom = "(?:" + atom + ")" + rng.choice(["*", "+", "?", "{2}", "{0,2}", "{1,3}", "{2,}", "{,2}"])
        atom += rng.choice(["", "", "?"])
    return atom


def test_random_patterns_are_sound_on_every_substring():
    """Every substring a random pattern can match (at any place in a random text) holds one of its literals."""
    rng = random.Random(20240601)
    checked = prefiltered = matches = 0
    while checked < 1500:
        pattern = _random_pattern(rng)
        try:
            compiled = re.compile(pattern)
        except re.error:
            continue
        checked += 1
        needs = required_literals(pattern)
        if needs is None:
            continue
        prefiltered += 1
        assert needs and "" not in needs, pattern
        for _ in range(8):
            text = "".join(rng.choice("aaAb -.1") for _ in range(rng.randint(0, 9)))
            for start in range(len(text) + 1):
                for end in range(start, len(text) + 1):
                    if compiled.fullmatch(text, start, end) is not None:
                        matches += 1
                        assert any(x in text[start:end] for x in needs), (pattern, sorted(needs), text, start, end)
    assert prefiltered > 300 and matches > 1000

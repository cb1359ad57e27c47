"""bridge.dialects: compel and ComfyUI prompts through the one A1111 parser, with the same per-token weights."""

import math
import sys

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bridge.dialects import DIALECTS, Converted, comfy_weights, compel_weights, from_a1111, to_a1111
from bridge.dialects.common import MAX_WEIGHT
from bridge.syntax import PromptSyntaxError, attention, parse

READERS = {"compel": compel_weights, "comfyui": comfy_weights}


def chars(pieces: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Each non-space character, lowercased as CLIP reads it, with its weight rounded as written (2 decimals): equal
    neighbours merged and whitespace-only pieces ignored, whatever the piece boundaries (compel rejoins fragments with
    spaces)."""
    return [(c.lower(), round(w, 2)) for text, w in pieces for c in text if not c.isspace()]


def a1111_pieces(text: str) -> list[tuple[str, float]]:
    """What A1111 encodes at step 1, tags removed, BREAKs left out (they carry no text)."""
    return [
        (t, w) for clause in parse(text).clauses for t, w in attention(clause.text_at()) if (t, w) != ("BREAK", -1)
    ]


# --------------------------------------------------------------------------------------------------------------------
# The API


@pytest.mark.parametrize("convert", [from_a1111, to_a1111])
def test_unknown_dialect_names_it_and_the_valid_ones(convert):
    with pytest.raises(ValueError, match=r"'invokeai'.*a1111, compel, comfyui"):
        convert("a cat", "invokeai")


@pytest.mark.parametrize("convert", [from_a1111, to_a1111])
def test_a1111_to_a1111_is_the_identity(convert):
    text = "a ((castle:1.3)) [fog] <lora:x:1> BREAK [day:night:0.5] AND b :0.5"
    assert convert(text, "a1111") == Converted(text, [])
    assert DIALECTS == ("a1111", "compel", "comfyui")


# --------------------------------------------------------------------------------------------------------------------
# ComfyUI


@pytest.mark.parametrize(
    "text,expected",
    [
        ("((x:1.5))", [("x", 1.5)]),  # the inner weight replaces the outer ones
        ("((x:1.5):2)", [("x", 1.5)]),
        ("((x))", [("x", 1.1 * 1.1)]),
        ("[x]", [("[x]", 1.0)]),  # square brackets are text
        ("a \\(b\\) \\[c\\]", [("a (b) \\[c\\]", 1.0)]),  # only \( and \) are escapes
        ("(a, b:1.2)", [("a, b", 1.2)]),
        ("(a:b)", [("a:b", 1.1)]),  # not a number: no weight, the text keeps its colon
        ("(:1.5)", [(":1.5", 1.1)]),  # a colon first is not a weight
        ("(x: 1e-3 )", [("x", 0.001)]),  # whatever Python's float() accepts
        ("(a(b)", [("a", 1.1), ("(b", 1.1)]),  # matched by depth: the unclosed inner ( is text
        ("(unclosed", [("(unclosed", 1.0)]),
        (")((x))", [(")(", 1.0), ("x", 1.1), (")", 1.0)]),  # a stray ) shifts the depth
        ("", []),
    ],
)
def test_comfy_weights(text, expected):
    got = comfy_weights(text)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert all(math.isclose(w, e) for (_, w), (_, e) in zip(got, expected))


def _comfy_reference(text):
    """ComfyUI's own reading (comfy/sd1_clip.py: escape_important, parse_parentheses, token_weights,
    unescape_important), transcribed: recursive and quadratic in the nesting, for the tests only."""

    def parse_parentheses(string):
        result, current_item, nesting_level = [], "", 0
        for char in string:
            if char == "(":
                if current_item and nesting_level == 0:
                    result.append(current_item)
                    current_item = "("
                elif nesting_level == 0:
                    current_item = "("
                else:
                    current_item += char
                nesting_level += 1
            elif char == ")":
                nesting_level -= 1
                if nesting_level == 0:
                    result.append(current_item + ")")
                    current_item = ""
                else:
                    current_item += char
            else:
                current_item += char
        if current_item != "":
            result.append(current_item)
        return result

    def token_weights(string, current_weight):
        out = []
        for x in parse_parentheses(string):
            weight = current_weight
            if len(x) >= 2 and x[-1] == ")" and x[0] == "(":
                x = x[1:-1]
                xx = x.rfind(":")
                weight *= 1.1
                if xx > 0:
                    try:
                        weight = float(x[xx + 1:])
                        x = x[:xx]
                    except ValueError:
                        pass
                out += token_weights(x, weight)
            else:
                out += [(x, current_weight)]
        return out

    escaped = text.replace("\\)", "\0\1").replace("\\(", "\0\2")
    return [(t.replace("\0\1", ")").replace("\0\2", "("), w) for t, w in token_weights(escaped, 1.0)]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(["(", ")", "((", "))", ":", ":1.5", ": 2 ", ":x", "a", " ", "\\(", "\\)", "\\",
                                 ":inf", ":1e3)", "b c"]), max_size=40).map("".join))
def test_comfy_weights_read_as_comfyui_does(text):
    assert comfy_weights(text) == _comfy_reference(text)


@pytest.mark.parametrize("text", [
    "(" * 3000 + "a" + ")" * 3000,  # quadratic for ComfyUI's own reading
    "(a " * 2000 + ":1.2)" * 2000,
    ")" * 50 + "(a (b" * 1000 + ")" * 1500,
    "((a:1)" * 1500,
])
def test_comfy_weights_of_deep_nesting_read_as_comfyui_does(text):
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)  # ComfyUI's own reading recurses once per level (it fails past ~490 levels)
    try:
        expected = _comfy_reference(text)
    finally:
        sys.setrecursionlimit(limit)
    assert comfy_weights(text) == expected


@pytest.mark.parametrize(
    "a1111,comfy",
    [
        ("((a:1.5))", "(a:1.65)"),  # A1111 multiplies through nesting; ComfyUI gets the final weight
        ("[fog]", "(fog:0.91)"),
        ("((x))", "(x:1.21)"),
        ("(a:2.0) (b:0) (c:0.001)", "(a:2) (b:0) (c:0)"),  # weights are written with 2 decimals
        ("a (tall:1.2) man", "a (tall:1.2) man"),
        ("\\(x\\) \\[y\\] \\\\", "\\(x\\) [y] \\"),
        ("(unclosed", "(unclosed:1.1)"),
        ("stray) [x", "stray\\) (x:0.91)"),
        ("(a, b:1.2), (c:-1)", "(a, b:1.2), (c:-1)"),
        ("a BREAK b", "a, b"),
        ("a, BREAK, b", "a, b"),
        ("a AND b :0.5", "a AND b"),
        ("[day:(night:1.2):0.5]", "[day:(night:1.2):0.5]"),
        ("([cat|dog]:1.5)", "([cat|dog]:1.5)"),
        ("a <lora:detail:0.6> cat", "a  cat"),
    ],
)
def test_from_a1111_to_comfy(a1111, comfy):
    assert from_a1111(a1111, "comfyui").text == comfy


@pytest.mark.parametrize(
    "comfy,a1111",
    [
        ("((x:1.5))", "(x:1.5)"),  # inverse: the inner weight, once
        ("[x]", "\\[x\\]"),  # literal in ComfyUI, so escaped in A1111
        ("((x))", "(x:1.21)"),
        ("a \\(b\\) c\\d", "a \\(b\\) c\\\\d"),
        ("(:1.5)", "(:1.5:1.1)"),
        ("sand AND stone BREAK", "sand and stone break"),  # plain words in ComfyUI, operators in A1111
        ("ratio 16:9", "(ratio 16:9:1)"),  # not an AND weight
        ("(x:inf)", "x"),
    ],
)
def test_comfy_to_a1111(comfy, a1111):
    assert to_a1111(comfy, "comfyui").text == a1111


# --------------------------------------------------------------------------------------------------------------------
# compel


@pytest.mark.parametrize(
    "text,expected",
    [
        ("a man picking apricots+", [("a man picking ", 1.0), ("apricots", 1.1)]),  # compel's documentation
        ("a man picking apricots--", [("a man picking ", 1.0), ("apricots", 0.81)]),
        ("(flowers)--- flames+++", [("flowers", 0.9**3), (" ", 1.0), ("flames", 1.1**3)]),
        ("a tall man (picking (apricots)1.3)1.1", [("a tall man ", 1.0), ("picking ", 1.1), ("apricots", 1.43)]),
        ('"pretty flowers"1.3, fire', [("pretty flowers", 1.3), (", fire", 1.0)]),
        ("flames.attend(0.5)", [("flames", 0.5)]),
        ("hamburger ((bun))", [("hamburger bun", 1.0)]),  # parentheses alone group, no weight
        ("(happy camper:0.3)", [("happy camper:0.3", 1.0)]),  # A1111 syntax is text to compel
        ("t-shirt, c++", [("t-shirt, ", 1.0), ("c", 1.21)]),
        ("c\\+\\+ \\(x\\) \\\"q\\\"", [('c++ (x) "q"', 1.0)]),
        ("(a - b)1.2", [("(a - b)1.2", 1.0)]),  # a group that does not parse is literal text
        ("(a)-0.5", [("a", 0.9), ("0.5", 1.0)]),  # signs win over a signed number
        ("middle age,fantasy++ style", [("middle age, ", 1.0), ("fantasy", 1.21), (" style", 1.0)]),
        ('("fire", "(flames)2").and(1, 0.25)', [("fire", 1.0), ("flames", 0.5)]),  # part weights multiply
        ("cat.swap(dog) in the rain", [("cat in the rain", 1.0)]),
        ("", [("", 1.0)]),
    ],
)
def test_compel_weights(text, expected):
    got = compel_weights(text)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert all(math.isclose(w, e) for (_, w), (_, e) in zip(got, expected))


def test_compel_weights_of_a_blend_raise():
    with pytest.raises(ValueError, match="blend"):
        compel_weights('("a", "b").blend(1, 1)')


@pytest.mark.parametrize(
    "a1111,compel",
    [
        ("(red:1.3) t-shirt, [fog], c++", "(red)1.3 t-shirt, (fog)0.91, c+\\+"),
        ("((a:1.5))", "(a)1.65"),
        ("[word]", "(word)0.91"),
        ("(a:1.3)(b:0.8)", "(a)1.3 (b)0.8"),  # compel needs a space to see a new group
        ("x(a:1.2)5", "x (a)1.2 5"),  # ...and after the weight, or "1.25" would be the weight
        ("(a - b:1.2), (k=v:1.1), (\"q\":1.1)", '(a \\- b)1.2, (k\\=v)1.1, (\\"q\\")1.1'),
        ('say "hi" \\(aside\\)', 'say \\"hi\\" \\(aside\\)'),
        ("a - b, -5 -x, well- done", "a - b, -5 -x, well\\- done"),
        ("(a:-1)", "(a)0"),
        ("a BREAK (b:0.5)", '("a", "(b)0.5").and()'),
        ("a :1.5 AND b :0.5", '("a", "b").and(1.5, 0.5)'),
        ("a cat :1.2", "a cat"),
        ("[day:night:0.5]", "[day:night:0.5]"),
        ("<lora:detail:0.6> cat <hypernet:h:1>", "withLora(detail, 0.6) cat "),
    ],
)
def test_from_a1111_to_compel(a1111, compel):
    assert from_a1111(a1111, "compel").text == compel


@pytest.mark.parametrize(
    "compel,a1111",
    [
        ("a castle++ in (thick fog)0.8", "a (castle:1.21) in (thick fog:0.8)"),
        ("(picking (apricots)1.3)1.1", "(picking:1.1) (apricots:1.43)"),
        ("(x:1.3), [y]", "x:1.3, \\[y\\]"),
        ("c++ t-shirt c\\+\\+", "(c:1.21) t-shirt c++"),
        ('("a", "b").and(1, 0.5)', "a BREAK (b:0.5)"),  # the same mechanism as BREAK
        ('("a", "b").blend(0.7, 0.3)', "a :0.7 AND b :0.3"),
        ('("a", "b").blend(1, 3)', "a :0.25 AND b :0.75"),  # compel normalizes blend weights
        ('("a", "b").blend(1, 3, no_normalize)', "a AND b :3"),
        ("cat.swap(dog) in the rain", "cat in the rain"),  # the text compel encodes
        ("withLora(detail, 0.6) cat", "<lora:detail:0.6> cat"),
        ("ratio 16:9", "(ratio 16:9:1)"),
    ],
)
def test_compel_to_a1111(compel, a1111):
    assert to_a1111(compel, "compel").text == a1111


@pytest.mark.parametrize("text", ['("a", "b").and(1)', '("a", "b").blend(1, 2, 3)', '("a", "b").blend(1, 1) c',
                                  '("a", "b").blend(nan, inf)', '("a", "b").and(1e309)', '("a", "b").and(1e309, 1)',
                                  '("a", "b").blend(-inf, 1)', '("a", "b").and(0x10, 1)'])
def test_compel_rejects_what_compel_rejects(text):
    """As the rules bridge keeps a prompt A1111 rejects: kept as written, with a warning that names the problem;
    compel_weights, the low-level reader, raises PromptSyntaxError."""
    converted = to_a1111(text, "compel")
    assert converted.text == text
    assert len(converted.warnings) == 1 and "compel rejects this prompt, so it is kept as written" in (
        converted.warnings[0])
    assert text[text.index(").") + 1:].split("(")[0] in converted.warnings[0]  # .and / .blend named
    with pytest.raises(PromptSyntaxError):
        compel_weights(text)


# --------------------------------------------------------------------------------------------------------------------
# Warnings: every construct that does not carry over exactly is named


WARNING_CASES = [
    (from_a1111, "compel", "(a:1.2)", "weights: compel"),
    (from_a1111, "comfyui", "[a]", "weights: ComfyUI"),
    (from_a1111, "compel", "[day:night:0.5]", "prompt editing [day:night:0.5]"),
    (from_a1111, "comfyui", "[day:night:0.5]", "prompt editing [day:night:0.5]"),
    (from_a1111, "compel", "[cat|dog]", "alternation [cat|dog]"),
    (from_a1111, "comfyui", "[cat|dog]", "alternation [cat|dog]"),
    (from_a1111, "comfyui", "a BREAK b", "BREAK"),
    (from_a1111, "compel", "a AND b", "AND"),
    (from_a1111, "comfyui", "a AND b :0.5", "AND"),
    (from_a1111, "compel", "a cat :1.2", "AND weight :1.2"),
    (from_a1111, "comfyui", "a cat :1.2", "AND weight :1.2"),
    (from_a1111, "compel", "<lora:detail:0.6>", "<lora:detail:0.6>"),
    (from_a1111, "comfyui", "<lora:detail:0.6>", "<lora:detail:0.6>"),
    (from_a1111, "compel", "<hypernet:h:1>", "<hypernet:h:1>"),
    (from_a1111, "compel", "(a:-1)", "negative weight"),
    (from_a1111, "compel", "c++", "'c++'"),
    (to_a1111, "compel", '("a", "b").blend(0.7, 0.3)', ".blend()"),
    (to_a1111, "compel", "cat.swap(dog)", ".swap()"),
    (to_a1111, "compel", "withLora(x, 0.5)", "withLora(x, 0.5)"),
    (to_a1111, "compel", "<lora:x:1> cat", "<lora:x:1>"),
    (to_a1111, "comfyui", "<lora:x:1> cat", "<lora:x:1>"),
    (to_a1111, "compel", "cat+", "weights: compel"),
    (to_a1111, "comfyui", "(cat)", "weights: ComfyUI"),
    (to_a1111, "comfyui", "(cat:nan)", "not a finite number"),
    (to_a1111, "compel", '("a", "b").and() extra', "ignored by compel"),
]


@pytest.mark.parametrize("convert,dialect,text,named", WARNING_CASES)
def test_every_lossy_construct_warns_by_name(convert, dialect, text, named):
    warnings = convert(text, dialect).warnings
    assert any(named in w for w in warnings), warnings


@pytest.mark.parametrize("dialect", ["compel", "comfyui"])
def test_exact_conversions_do_not_warn(dialect):
    assert from_a1111("a cat, t-shirt, 16:9, \\(x\\)", dialect).warnings == []
    assert to_a1111(from_a1111("a cat, t-shirt", dialect).text, dialect).warnings == []


def test_break_into_compel_is_exact():
    converted = from_a1111("a cat BREAK (a hat:1.2)", "compel")
    assert converted.text == '("a cat", "(a hat)1.2").and()'
    assert [w for w in converted.warnings if "BREAK" in w or "AND" in w] == []


# --------------------------------------------------------------------------------------------------------------------
# The same per-token weights, both ways: hand-written tricky prompts, then hypothesis

TRICKY = [
    "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
    "((a:1.5)) [fog] ((x))",
    "\\(x\\) \\[y\\] back\\\\slash",
    "stray) text ] and [unclosed (too",
    "() [] (()) empty groups",
    "(:1.2) (a:0) (b:0.001) (c:2.0) (d:.5) (e:1.)",
    "(a, b, c:1.2), (x.y, z:0.8)",
    "t-shirt, c++, well- done, a - b, -5, +x, x=y",
    '(say "hi":1.1) "quoted"',
    "(t-shirt:1.2) (c++:0.9) (a - b:1.1) (k=v:1.3)",
    "\\\\+x \\\\, y (\\\\-z:1.2)",
    "x(a:1.2)5 (b:1.3)(c:0.8)",
    "ratio 16:9",  # A1111 reads ":9" as an AND weight: dropped with a warning, "ratio 16" keeps weight 1
]


@pytest.mark.parametrize("dialect", ["compel", "comfyui"])
@pytest.mark.parametrize("prompt", TRICKY)
def test_tricky_prompts_keep_their_weights(dialect, prompt):
    expected = chars(a1111_pieces(prompt))
    written = from_a1111(prompt, dialect).text
    assert chars(READERS[dialect](written)) == expected, written
    assert chars(a1111_pieces(to_a1111(written, dialect).text)) == expected


WORDS = st.sampled_from(
    ["cat", "t-shirt", "c++", "a - b", "x=y", "16:9", "1.5", "well-", "+5", '"q"', "a,b", "dot.", "\\(e\\)",
     "\\[s\\]", "\\\\", "--", "-", "+", "=", ".", ",", ":", "a+b+", "e1"]
)
WEIGHTS = st.sampled_from(["0", "0.001", "2.0", "1.3", ".5", "1.", "0.91", "1e-3", "-0.5", "10"])


def _nest(inner):
    return st.one_of(
        st.tuples(st.lists(inner, min_size=1, max_size=3), st.sampled_from([" ", "", ", "])).map(lambda t: t[1].join(t[0])),
        inner.map(lambda s: f"({s})"),
        inner.map(lambda s: f"[{s}]"),
        st.tuples(inner, WEIGHTS).map(lambda t: f"({t[0]}:{t[1]})"),
    )


# nested weights, escapes, unbalanced brackets, empty groups, weights like 0, 1e-3 and 2.0, commas inside groups
a1111_prompts = st.tuples(
    st.sampled_from(["", "(", "[", ")", "]", "((", "()"]),
    st.recursive(WORDS, _nest, max_leaves=10),
    st.sampled_from(["", "(", ")", "]", "[", "[]"]),
).map("".join)


def plain_attention(prompt: str) -> list[tuple[str, float]]:
    """attention(prompt) for prompts without editing, alternation, BREAK, AND and tags (others are assumed away)."""
    assume(not parse(prompt).features() & {"editing", "alternation", "break", "and", "network"})
    try:
        pieces = attention(prompt)
    except PromptSyntaxError:  # A1111 itself refuses these
        pieces = None
    assume(pieces is not None)
    assume(all(abs(w) <= MAX_WEIGHT for _, w in pieces))  # past it a conversion writes MAX_WEIGHT (tested apart)
    return pieces


@pytest.mark.parametrize("dialect", ["compel", "comfyui"])
@given(prompt=a1111_prompts)
@settings(max_examples=150, deadline=None)
def test_written_weights_read_back_as_a1111_weights(dialect, prompt):
    expected = plain_attention(prompt)
    assume(dialect != "compel" or all(w >= 0 for _, w in expected))  # compel cannot write a negative weight
    written = from_a1111(prompt, dialect).text
    assert chars(READERS[dialect](written)) == chars(expected), written


@pytest.mark.parametrize("dialect", ["compel", "comfyui"])
@given(prompt=a1111_prompts)
@settings(max_examples=150, deadline=None)
def test_round_trip_keeps_a1111_attention(dialect, prompt):
    expected = plain_attention(prompt)
    assume(dialect != "compel" or all(w >= 0 for _, w in expected))
    back = to_a1111(from_a1111(prompt, dialect).text, dialect).text
    assert chars(attention(back)) == chars(expected), back


@given(parts=st.lists(a1111_prompts, min_size=2, max_size=3))
@settings(max_examples=80, deadline=None)
def test_break_parts_keep_their_weights_in_compel(parts):
    prompt = " BREAK ".join(parts)
    assume(not parse(prompt).features() & {"editing", "alternation", "and", "network"})
    try:
        expected = a1111_pieces(prompt)
    except PromptSyntaxError:
        expected = [("", -1.0)]  # A1111 itself refuses these: assumed away below
    assume(all(w >= 0 for _, w in expected))
    assume(all(w <= MAX_WEIGHT for _, w in expected))  # past it a conversion writes MAX_WEIGHT (tested apart)
    written = from_a1111(prompt, "compel").text
    assume("\\t" not in written and "\\n" not in written)  # inside quotes, compel reads these as whitespace
    assert chars(compel_weights(written)) == chars(expected), written
    assert chars(a1111_pieces(to_a1111(written, "compel").text)) == chars(expected)


comfy_like = st.lists(
    st.sampled_from(list("ab :()[]\\,.") + ["1.5", ":0", "(x:2)", "\\(", "\\)", "1e-3", "_1", "AND", "BREAK"]),
    max_size=16,
).map("".join)
compel_like = st.lists(
    st.sampled_from(
        list('ab c+-=,.:()"\\[]1|') + ["t-shirt", "c++", "0.5", "1.2", ".and()", "withLora(x, 0.5)", ".swap(d)",
                                      ".attend(2)", "16:9", "AND"]
    ),
    max_size=14,
).map("".join)


@given(text=comfy_like)
@settings(max_examples=200, deadline=None)
def test_comfy_prompts_keep_their_weights_in_a1111(text):
    expected = comfy_weights(text)
    assume(all(math.isfinite(w) and abs(w) <= MAX_WEIGHT for _, w in expected))
    assert chars(a1111_pieces(to_a1111(text, "comfyui").text)) == chars(expected)


@given(text=compel_like)
@settings(max_examples=200, deadline=None)
def test_compel_prompts_keep_their_weights_in_a1111(text):
    try:
        expected = compel_weights(text)
    except ValueError:  # a .blend() has no per-token weights; compel rejects some operator arguments
        expected = None
    # past MAX_WEIGHT a weight is written as +-MAX_WEIGHT with a warning (documented; tested apart), as for ComfyUI
    assume(expected is not None and all(math.isfinite(w) and abs(w) <= MAX_WEIGHT for _, w in expected))
    assert chars(a1111_pieces(to_a1111(text, "compel").text)) == chars(expected)


@pytest.mark.parametrize("dialect", ["compel", "comfyui"])
@given(text=st.one_of(st.text(max_size=60), a1111_prompts))
@settings(max_examples=150, deadline=None)
def test_any_prompt_converts_both_ways(dialect, text):
    try:
        a1111_pieces(text)
        attention(text)
    except PromptSyntaxError:  # A1111 itself refuses these
        assume(False)
    written = from_a1111(text, dialect)
    assert isinstance(written.text, str)
    assert isinstance(to_a1111(written.text, dialect).text, str)


# ComfyUI's embedding:NAME ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("comfy", "a1111", "names"),
    [
        ("a castle, embedding:easynegative", "a castle, easynegative", {"easynegative": "easynegative"}),
        ("embedding:easynegative, blurry", "easynegative, blurry", {"easynegative": "easynegative"}),
        ("a (embedding:bad_hands:1.2) x", "a (bad_hands:1.2) x", {"bad_hands": "bad_hands"}),
        ("x\nembedding:sub/neg.safetensors", "x\nneg", {"neg": "sub/neg.safetensors"}),
        ("a,embedding:neg", "a,embedding:neg", {}),  # not a word start: ComfyUI tokenizes it as text
        ("(a)embedding:neg", "(a:1.1)neg", {"neg": "neg"}),  # a segment starts a word
    ],
)
def test_comfy_embedding_words_read_as_a1111_names(comfy, a1111, names):
    """ComfyUI comfy/sd1_clip.py, SDTokenizer.tokenize_with_weights: every weighted segment from token_weights is
    split at spaces (newlines made spaces); a word starting with embedding_identifier "embedding:" names a file that
    load_embed looks up with the extensions .safetensors/.pt/.bin, and _try_get_embedding strips commas around it.
    A1111 names an embedding by its file stem, as a plain word."""
    converted = to_a1111(comfy, "comfyui")
    assert (converted.text, converted.embeddings) == (a1111, names)


def test_comfy_embedding_without_a_name_is_dropped_and_a_path_is_warned():
    """load_embed finds no file for an empty name; tokenize_with_weights then logs and skips the word."""
    assert to_a1111("a embedding: b", "comfyui").text == "a  b"
    converted = to_a1111("embedding:sub/neg.pt", "comfyui")
    assert converted.text == "neg" and any("file name alone" in w for w in converted.warnings)


def test_comfy_embedding_prefix_written_back_for_names_that_stay():
    """The names read from embedding: words get their prefix back writing ComfyUI; each must start a word (a space
    is added after a comma), other words and other dialects are left alone."""
    names = {"easynegative": "easynegative", "neg": "sub/neg.pt"}
    assert from_a1111("a castle, easynegative", "comfyui", names).text == "a castle, embedding:easynegative"
    assert from_a1111("a,(neg:1.2), negative", "comfyui", names).text == "a,(embedding:sub/neg.pt:1.2), negative"
    assert from_a1111("a castle,easynegative", "comfyui", names).text == "a castle, embedding:easynegative"
    assert from_a1111("a castle, easynegative", "comfyui").text == "a castle, easynegative"
    assert from_a1111("a castle, easynegative", "compel", names).text == "a castle, easynegative"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "castle,", "embedding:neg", "embedding:neg,", "(embedding:bad:1.3)",
                                 "(b:0.8)", "\n"]), max_size=8))
def test_comfy_embedding_round_trip_keeps_words_and_weights(words):
    """ComfyUI -> A1111 -> ComfyUI gives every word, embeddings included, the weight ComfyUI gave it."""
    text = " ".join(words)
    converted = to_a1111(text, "comfyui")
    back = from_a1111(converted.text, "comfyui", converted.embeddings).text
    assert chars(comfy_weights(back)) == chars(comfy_weights(text))


# ComfyUI: parts and weight rescaling ----------------------------------------------------------------------------------


def test_comfy_parts_split_at_break_and_and():
    from bridge.dialects import from_a1111_parts

    clauses, warnings = from_a1111_parts("a ((castle)) BREAK BREAK fog, <lora:x:1> AND dog :0.5")
    assert clauses == [["a (castle:1.21)", "fog,"], ["dog"]]
    assert any("AND weight :0.5" in w for w in warnings) and any("LoraLoader" in w for w in warnings)
    assert not any(w.startswith(("BREAK", "AND:")) for w in warnings)


def test_comfy_rescale_uses_each_chunks_own_factor():
    """A1111 restores each 77-position chunk's mean: the factor is 77 / (77 + sum(w - 1)) over that chunk's tokens,
    so a weight after BREAK, in a chunk of its own, is barely touched; 'as written' is unchanged."""
    text = ", ".join(["(castle:1.5)"] * 20) + " BREAK (fog:1.5)"
    assert from_a1111(text, "comfyui").text == ", ".join(["(castle:1.5)"] * 20) + ", (fog:1.5)"
    rescaled = from_a1111(text, "comfyui", rescale=True).text
    assert rescaled == ", ".join(["(castle:1.33)"] * 20) + ", (fog:1.49)"  # 77/87*1.5, 77/77.5*1.5
    assert from_a1111("[fog], " + "(castle:0.5), " * 10, "comfyui", rescale=True).text.startswith(
        "(fog:0.97), (castle:0.54)")  # below 1 a weight moves toward 1: 77 / (77 - 5.09)
    with pytest.raises(ValueError, match="not compel"):
        from_a1111("(a:1.2)", "compel", rescale=True)

"""bridge.syntax: A1111 prompt grammar, exact round trip, edits, and attention weights."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.syntax import (
    Alternation,
    Break,
    Editing,
    Emphasis,
    NetworkTag,
    PromptSyntaxError,
    Text,
    _parse_syntax,
    attention,
    features,
    format_weight,
    parse,
    render,
    walk,
)

# Outputs of A1111's parse_prompt_attention for these inputs, as its own documentation lists them.
A1111_DOCUMENTED = [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    (
        "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
        [("a ", 1.0), ("house", 1.5730000000000004), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55),
         (", sun, ", 1.1), ("sky", 1.4641000000000006), (".", 1.1)],
    ),
]


@pytest.mark.parametrize("text,expected", A1111_DOCUMENTED)
def test_attention_matches_a1111_documented_outputs(text, expected):
    assert attention(text) == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        ("", [("", 1.0)]),
        ("[fog]", [("fog", 1 / 1.1)]),
        ("((a:1.5))", [("a", 1.5 * 1.1)]),
        ("[[a]]", [("a", (1 / 1.1) * (1 / 1.1))]),
        ("a) b", [("a) b", 1.0)]),
        ("a] b", [("a] b", 1.0)]),
        ("(x:-3)", [("x", -3.0)]),
        ("(x:nan)", [("x:nan", 1.1)]),  # not a number to A1111's weight pattern: literal text, ( ) still x1.1
        ("(x:inf)", [("x:inf", 1.1)]),
        ("(x:1e309)", [("x:1e309", 1.1)]),
        ("a:1.2)", [("a:1.2)", 1.0)]),  # a weight with no open ( is text
        ("one BREAK two", [("one", 1.0), ("BREAK", -1), ("two", 1.0)]),
        ("BREAK", [("", 1.0), ("BREAK", -1), ("", 1.0)]),
        ("(BREAK)", [("", 1.1), ("BREAK", -1.1), ("", 1.1)]),
        ("a BREAKING news", [("a BREAKING news", 1.0)]),
        ("a \\ b", [("a  b", 1.0)]),  # a lone backslash is dropped
        ("\\\\(x)", [("\\", 1.0), ("x", 1.1)]),
        ("([a)]", [("a", 1.1 * (1 / 1.1))]),  # one stack per bracket kind: ) closes ( across an open [
        ("[a:b:0.5]", [("a:b:0.5", 1 / 1.1)]),  # attention() alone does no scheduling
    ],
)
def test_attention_quirks(text, expected):
    assert attention(text) == expected


def test_attention_raises_on_malformed_weight_naming_it():
    with pytest.raises(PromptSyntaxError, match="1.2.3"):
        attention("((a:1.2.3))")
    assert issubclass(PromptSyntaxError, ValueError)


def _reference_attention(text):
    """The straightforward per-entry algorithm A1111 documents (quadratic), to check the segment-based one."""
    import re

    token = re.compile(r"\\[()\[\]\\]|\\|[(\[]|:\s*([+-]?[.\d]+)\s*\)|[)\]]|[^\\()\[\]:]+|:")
    res, rounds, squares = [], [], []

    def multiply(start, m):
        for p in range(start, len(res)):
            res[p][1] *= m

    for m in token.finditer(text):
        tok, weight = m.group(0), m.group(1)
        if tok.startswith("\\"):
            res.append([tok[1:], 1.0])
        elif tok == "(":
            rounds.append(len(res))
        elif tok == "[":
            squares.append(len(res))
        elif weight is not None and rounds:
            multiply(rounds.pop(), float(weight))
        elif tok == ")" and rounds:
            multiply(rounds.pop(), 1.1)
        elif tok == "]" and squares:
            multiply(squares.pop(), 1 / 1.1)
        else:
            for i, part in enumerate(re.split(r"\s*\bBREAK\b\s*", tok)):
                if i:
                    res.append(["BREAK", -1])
                res.append([part, 1.0])
    for p in rounds:
        multiply(p, 1.1)
    for p in squares:
        multiply(p, 1 / 1.1)
    if not res:
        return [("", 1.0)]
    i = 0
    while i + 1 < len(res):
        if res[i][1] == res[i + 1][1]:
            res[i][0] += res[i + 1].pop(0)
            res.pop(i + 1)
        else:
            i += 1
    return [tuple(r) for r in res]


@given(prompt_like_attention := st.lists(st.sampled_from(["(", ")", "[", "]", ":", "a", "b", " ", "1.5", "0.5", "\\",
                                                         "BREAK", ":2)", "\\("]), max_size=60).map("".join))
@settings(max_examples=500, deadline=None)
def test_attention_equals_the_reference_algorithm(text):
    try:
        expected = _reference_attention(text)
    except ValueError:
        with pytest.raises(PromptSyntaxError):
            attention(text)
        return
    assert attention(text) == expected


def test_attention_many_unclosed_brackets_is_exact():
    text = "(a [b " * 600  # 720,000 multiplications A1111's way: under EXACT_MULTIPLICATIONS
    assert attention(text) == _reference_attention(text)


def _close_to(found, expected):
    """Pieces equal and weights within a few ulps (the products past EXACT_MULTIPLICATIONS), or both infinite."""
    assert [piece for piece, _ in found] == [piece for piece, _ in expected]
    assert [w for _, w in found] == pytest.approx([w for _, w in expected], rel=1e-12)


@pytest.mark.parametrize("text", [
    "(a [b " * 1500,  # unclosed brackets of both kinds: 4.5 million multiplications A1111's way
    "(a " * 1500 + ":1.05)" * 1500,  # nested weights around many pieces
    "[x (y " * 1000 + "z" + ")]" * 1000,
    "((a:0.5) b [c] " * 800 + ")" * 1600,
])
def test_attention_past_the_exact_budget_is_the_same_product(text):
    _close_to(attention(text), _reference_attention(text))


def test_attention_with_one_multiplier_is_exact_past_the_budget():
    text = "(a" * 3000  # 4.5 million multiplications, every one by 1.1: the outer-first product is A1111's float
    assert attention(text) == _reference_attention(text)
    assert len(attention("(a" * 50_000)) > 1  # linear time: this took minutes when it was quadratic


ROUND_TRIP_CASES = [
    "",
    "   ",
    "a castle, by greg rutkowski, <lora:detail:0.6>, 8k",
    "((a:1.2.3))",
    "(a:b:c)",
    "([a)]",
    "[a:b:0.5] [to:5] [from::3] [[x|y]:z:0.2]",
    "[a|b|c] and [|] and [a|]",
    "a|b [x:y:3]",
    "trailing backslash \\",
    "a AND b :1.2 AND c:0.5",
    "(a AND b)",
    "<lora:name:0.8:0.5> <hypernet:h:1> <lyco:l:0.4> <notatag>",
    "first BREAK second BREAKING (BREAK)",
    "\x00\x01 control \t\n characters",
    "unicode: ✨ café 日本語 (ümlaut:1.1)",
]


@pytest.mark.parametrize("text", ROUND_TRIP_CASES)
def test_round_trip_examples(text):
    assert str(parse(text)) == text


SYNTAX_ALPHABET = st.sampled_from(
    ["(", ")", "[", "]", ":", "|", "\\", "<", ">", "a", "b", " ", ",", "1.2", "0.5", "3", "BREAK", "AND", "lora",
     "<lora:x:0.5>", "\n", "é", "-"]
)
prompt_like = st.lists(SYNTAX_ALPHABET, max_size=40).map("".join)


@given(st.one_of(st.text(max_size=200), prompt_like))
@settings(max_examples=400, deadline=None)
def test_round_trip_any_string(text):
    assert str(parse(text)) == text


@given(prompt_like, st.data())
@settings(max_examples=300, deadline=None)
def test_editing_one_text_node_leaves_every_other_span_byte_identical(text, data):
    prompt = parse(text)
    texts = [(node, container) for node, container, _ in prompt.walk() if isinstance(node, Text)]
    if not texts:
        return
    node, _ = data.draw(st.sampled_from(texts))
    original = node.text
    node.text = "\uffffSENTINEL\uffff"
    rendered = str(prompt)
    assert rendered.count(node.text) == 1
    assert rendered.replace(node.text, original) == text


@given(prompt_like, st.data())
@settings(max_examples=200, deadline=None)
def test_removing_a_tag_removes_exactly_its_text(text, data):
    prompt = parse(text)
    tags = [(node, container) for node, container, _ in prompt.walk() if isinstance(node, NetworkTag)]
    if not tags:
        return
    node, container = data.draw(st.sampled_from(tags))
    raw = node.text
    node.text = "\uffff"
    marked = str(prompt)
    container.remove(node)
    assert str(prompt) == marked.replace("\uffff", "")
    assert marked.replace("\uffff", raw) == text


# Well-nested prompts (no scheduling): the weights the tree gives structurally equal A1111's attention().
_words = st.sampled_from(["cat", "a dog", "red", ", ", " ", "sky", "x"])


def _nested(children):
    return st.one_of(
        children.map(lambda c: f"({c})"),
        children.map(lambda c: f"[{c}]"),
        st.tuples(children, st.sampled_from(["1.3", "0.5", "2", "0.8", "1.25"])).map(lambda t: f"({t[0]}:{t[1]})"),
        st.lists(children, min_size=2, max_size=3).map("".join),
    )


well_nested = st.recursive(_words, _nested, max_leaves=12)


@given(well_nested)
@settings(max_examples=300, deadline=None)
def test_tree_weights_equal_attention_on_well_nested_prompts(text):
    prompt = parse(text)
    structural: list[list] = []
    for node, _, multiplier in prompt.walk():
        if isinstance(node, Text):
            if structural and math.isclose(structural[-1][1], multiplier, rel_tol=1e-9):
                structural[-1][0] += node.value
            else:
                structural.append([node.value, multiplier])
    expected = attention(text)
    assert [t for t, _ in structural] == [t for t, _ in expected]
    for (_, got), (_, want) in zip(structural, expected):
        assert math.isclose(got, want, rel_tol=1e-9)
    assert prompt.attention() == [expected]


def test_tree_shapes():
    prompt = parse("a (castle:1.3), [day:night:0.5] [cat|dog] <lora:detail:0.6> BREAK ((tall))")
    nodes = prompt.clauses[0].children
    kinds = [type(n).__name__ for n in nodes]
    assert kinds == ["Text", "Emphasis", "Text", "Editing", "Text", "Alternation", "Text", "NetworkTag", "Text",
                     "Break", "Text", "Emphasis"]
    castle = nodes[1]
    assert castle.explicit_weight == "1.3" and castle.multiplier == 1.3
    editing = nodes[3]
    assert isinstance(editing, Editing)
    assert render(editing.before) == "day" and render(editing.after) == "night" and editing.when == "0.5"
    assert editing.switch_step(20) == 10
    alternation = nodes[5]
    assert isinstance(alternation, Alternation) and [render(o) for o in alternation.options] == ["cat", "dog"]
    tag = nodes[7]
    assert (tag.kind, tag.name, tag.args) == ("lora", "detail", ["0.6"])
    assert isinstance(nodes[9], Break)
    tall = nodes[11]
    assert isinstance(tall.children[0], Emphasis) and tall.open == "("


def test_editing_forms():
    to_only, from_only = parse("[to:5] [from::3]").clauses[0].children[::2]
    assert to_only.before is None and render(to_only.after) == "to" and to_only.switch_step(20) == 5
    assert render(from_only.before) == "from" and from_only.after == [] and from_only.switch_step(20) == 3


def test_scheduling_resolves_per_step():
    prompt = parse("a [day:night:0.5] [cat|dog] <lora:x:1>")
    assert prompt.clauses[0].text_at(1, 20) == "a day cat "
    assert prompt.clauses[0].text_at(10, 20) == "a day dog "
    assert prompt.clauses[0].text_at(11, 20) == "a night cat "


def test_a_stray_pipe_turns_scheduling_off_for_the_clause_as_a1111_does():
    prompt = parse("a|b [x:y:3]")
    assert prompt.clauses[0].scheduled is False
    assert not any(isinstance(n, Editing) for n, _, _ in prompt.walk())
    assert prompt.clauses[0].text_at(10) == "a|b [x:y:3]"


def test_and_clauses_and_weights():
    prompt = parse("a forest AND a river :0.7")
    assert [str(c) for c in prompt.clauses] == ["a forest ", " a river :0.7"]
    assert [c.weight for c in prompt.clauses] == [1.0, 0.7]
    assert parse("<lora:AND:1>").clauses[0].children[0].name == "AND"  # AND inside a tag does not split


def test_nested_editing_and_weight_scheduling():
    prompt = parse("(cat:[1.0:1.5:10])")
    assert prompt.clauses[0].text_at(5) == "(cat:1.0)"
    assert prompt.attention(step=15) == [[("cat", 1.5)]]


def test_ten_thousand_nested_brackets_do_not_recurse():
    for text in ("(" * 10_000 + "a" + ")" * 10_000, "[" * 10_000 + "a", "(" * 10_000, "[a:" * 10_000):
        prompt = parse(text)
        assert str(prompt) == text
        assert sum(1 for _ in prompt.walk()) > 0
        attention(text)


def test_large_prompt_round_trips_quickly():
    text = "a castle on a hill, (highly detailed:1.2), [fog], " * 20_000  # ~1 MB
    assert str(parse(text)) == text


def test_text_value_resolves_escapes():
    (node,) = parse("\\(a\\) \\\\ b").clauses[0].children
    assert node.value == "(a) \\ b"


def test_set_weight_and_format_weight():
    prompt = parse("((castle))")
    outer = prompt.clauses[0].children[0]
    outer.children = outer.children[0].children
    outer.set_weight(1.21)
    assert str(prompt) == "(castle:1.21)"
    assert format_weight(1.0) == "1" and format_weight(0.855) in ("0.85", "0.86") and format_weight(-0.0) == "0"
    with pytest.raises(ValueError, match="finite"):
        format_weight(float("nan"))


def test_features():
    assert features("plain words") == set()
    assert features("a (b:1.2) BREAK <lora:x:1>") == {"emphasis", "break", "network"}
    assert features("[a:b:3] [c|d] x AND y") == {"editing", "alternation", "and"}


def test_walk_multipliers():
    prompt = parse("((a) [b])")
    found = {n.text: m for n, _, m in walk(prompt.clauses[0].children) if isinstance(n, Text)}
    assert found["a"] == pytest.approx(1.21)
    assert found["b"] == pytest.approx(1.1 / 1.1)


def _shape(value):
    """A comparable form of a parse tree (the node classes compare by identity)."""
    if isinstance(value, list):
        return [_shape(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return (type(value).__name__, *(_shape(getattr(value, f)) for f in value.__dataclass_fields__))
    return value


@given(st.one_of(st.text(max_size=200), prompt_like, st.lists(st.sampled_from(["a", " ", ",", "é", "AN", "BREA", "k",
                                                                             "\n", ">", "{", "}"])).map("".join)))
@settings(max_examples=400, deadline=None)
def test_plain_text_shortcuts_give_what_the_full_parsers_give(text):
    assert _shape(parse(text)) == _shape(_parse_syntax(text))
    try:
        expected = _reference_attention(text)
    except ValueError:
        return
    assert attention(text) == expected


def test_plain_text_is_one_clause_of_one_text_node():
    assert _shape(parse("a castle on a hill, 8k")) == ("Prompt", [("Clause", [("Text", "a castle on a hill, 8k")],
                                                                   "", True)], [])
    assert _shape(parse("")) == _shape(_parse_syntax(""))
    assert attention("a castle, 8k") == [("a castle, 8k", 1.0)]


@given(st.text(alphabet=st.sampled_from(list("ab ()[]\\:,")), max_size=20))
@settings(max_examples=200, deadline=None)
def test_escaped_text_reads_back_as_itself(text):
    from bridge.syntax import escape

    escaped = escape(text)
    assert Text(escaped).value == text
    assert "".join(piece for piece, _ in attention(escaped)) == text

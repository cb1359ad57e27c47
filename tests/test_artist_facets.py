"""Data checks on the artist facets (sd1_artists.toml) and the media and subject word lists they refer to.

The files are read directly with tomllib: these tests hold the data to its format whatever the loader does with it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bridge.tokens import count_tokens

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the backport (a dependency there)
    import tomli as tomllib

KNOWLEDGE = Path(__file__).resolve().parent.parent / "bridge" / "rules" / "data" / "knowledge"
ARTIST_KEYS = {"name", "aliases", "count", "action", "fact", "medium", "style", "light", "palette", "subject_features"}
CORE_PEOPLE = ("woman", "man", "girl", "boy", "portrait", "face", "person", "people")
MAX_TOKENS = 5  # "about 4 CLIP tokens" per phrase; a long word such as "chiaroscuro" takes 4 on its own


def _load(name: str) -> dict:
    with open(KNOWLEDGE / name, "rb") as f:
        return tomllib.load(f)


@pytest.fixture(scope="module")
def artists() -> list[dict]:
    return _load("sd1_artists.toml")["artist"]


@pytest.fixture(scope="module")
def media() -> dict[str, list[str]]:
    return _load("media.toml")["media"]


@pytest.fixture(scope="module")
def subjects() -> dict[str, list[str]]:
    return _load("subjects.toml")["subjects"]


def _phrases(artist: dict) -> list[tuple[str, str]]:
    """Every facet phrase of an artist as (facet, phrase)."""
    found = [(key, artist[key]) for key in ("medium", "light", "palette") if key in artist]
    found += [("style", s) for s in artist.get("style", [])]
    found += [("subject_features", f.get("phrase")) for f in artist.get("subject_features", [])]
    return found


def _contains(text: str, name: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(name) + r"(?!\w)", text) is not None


def _words(text: str) -> tuple[str, ...]:
    """Words as the bridge matches them (bridge.rules.phrases): hyphens are words of their own, spacing does not count."""
    return tuple(re.findall(r"\w+|[^\w\s]", text.lower()))


def _holds(text: str, part: str) -> bool:
    words, sub = _words(text), _words(part)
    return any(words[i:i + len(sub)] == sub for i in range(len(words) - len(sub) + 1))


def test_no_descriptions_and_only_known_keys(artists):
    assert len(artists) == len({a["name"] for a in artists}) >= 160
    for a in artists:
        assert "description" not in a, f"{a['name']}: 'description' was replaced by facets"
        assert set(a) <= ARTIST_KEYS, f"{a['name']}: unknown keys {sorted(set(a) - ARTIST_KEYS)}"


def test_facet_types(artists):
    for a in artists:
        for key in ("medium", "light", "palette"):
            assert isinstance(a.get(key, ""), str), f"{a['name']}: {key} must be one phrase"
        style = a.get("style", ["x"])
        assert isinstance(style, list) and all(isinstance(s, str) for s in style), a["name"]
        assert 1 <= len(style) <= 2, f"{a['name']}: style has 1-2 phrases, got {style}"
        for feature in a.get("subject_features", []):
            assert isinstance(feature, dict) and set(feature) == {"phrase", "subject"}, f"{a['name']}: {feature}"


def test_every_non_keep_artist_describes_something(artists):
    for a in artists:
        if a["action"] != "keep":
            assert a.get("medium") or a.get("style"), f"{a['name']} ({a['action']}) needs a medium or a style"


def test_every_medium_is_in_exactly_one_family(artists, media):
    for a in artists:
        if "medium" in a:
            families = [family for family, words in media.items() if a["medium"] in words]
            assert len(families) == 1, f"{a['name']}: medium {a['medium']!r} is in families {families}"


def test_facet_phrases_are_short_lower_case_and_without_commas(artists):
    for a in artists:
        for facet, phrase in _phrases(a):
            where = f"{a['name']}.{facet}: {phrase!r}"
            assert isinstance(phrase, str) and phrase == phrase.strip() and phrase, where
            assert 1 <= len(phrase.split()) <= 3, f"{where} must be 1-3 words"
            assert phrase == phrase.lower(), f"{where} must be lower case"
            assert "," not in phrase, f"{where} must not hold a comma (the engine joins phrases with commas)"
            assert count_tokens(phrase) <= MAX_TOKENS, f"{where} is {count_tokens(phrase)} CLIP tokens"


def test_no_phrase_repeats_within_an_artist(artists):
    for a in artists:
        phrases = [p for _, p in _phrases(a)]
        assert len(phrases) == len(set(phrases)), f"{a['name']}: {phrases}"


def test_only_the_medium_names_a_medium(artists, media):
    """The bridge counts any facet that contains a media entry as a medium and keeps one medium at most, so a style,
    light, palette or subject phrase holding one ("soft watercolor shading") would nearly always be left out."""
    entries = [w for words in media.values() for w in words]
    for a in artists:
        for facet, phrase in _phrases(a):
            if facet != "medium":
                held = [w for w in entries if _holds(phrase, w)]
                assert not held, f"{a['name']}.{facet}: {phrase!r} holds the media entries {held}"


def test_subject_kinds_exist(artists, subjects):
    for a in artists:
        for feature in a.get("subject_features", []):
            assert feature["subject"] in subjects, f"{a['name']}: unknown subject kind {feature['subject']!r}"


def test_no_facet_names_the_artist(artists):
    for a in artists:
        names = [a["name"], *a.get("aliases", [])]
        for facet, phrase in _phrases(a):
            for name in names:
                assert not _contains(phrase, name.lower()), f"{a['name']}.{facet}: {phrase!r} names {name!r}"


def test_subject_lists(subjects):
    assert set(subjects) == {"people", "landscape", "architecture", "creature"}
    assert set(CORE_PEOPLE) <= set(subjects["people"])
    seen: dict[str, str] = {}
    for kind, words in subjects.items():
        assert len(words) == len(set(words)), f"{kind} lists a word twice"
        for word in words:
            assert re.fullmatch(r"[a-z0-9]+", word), f"subjects.{kind}: {word!r} must be one lower-case word"
            assert word not in seen, f"{word!r} is in both {seen[word]} and {kind}"
            seen[word] = kind


def test_media_lists(media, subjects):
    subject_words = {w for words in subjects.values() for w in words}
    seen: dict[str, str] = {}
    for family, words in media.items():
        for word in words:
            assert word == word.lower().strip() and word and "," not in word, f"media.{family}: {word!r}"
            assert word not in seen, f"{word!r} is in both media families {seen[word]} and {family}"
            seen[word] = family
            assert word not in subject_words, f"{word!r} is both a medium ({family}) and a subject word"
    # "photo" would match "photorealistic" only as a prefix: matching is on word boundaries, so nothing may rely on it
    assert "photo" in media["photo"] and "photorealistic" not in seen

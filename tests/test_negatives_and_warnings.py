"""Default negatives never fight the prompt (negative_wordings.toml, the photo `detect` words), and the weak-concept
warnings fire where they should and nowhere else (sd2_weak_concepts.toml: celebrities, hands)."""

import csv
from pathlib import Path

import pytest

from bridge.load import translate
from bridge.rules import KnowledgeBase
from bridge.rules.engine import build_plan
from bridge.rules.knowledge import RULES_DIR
from bridge.rules.matching import PhraseSet
from bridge.rules.stages import phrase_key
from bridge.translation import TranslationOptions

CORPORA = Path(__file__).resolve().parent.parent / "data" / "corpora"
KBS = {"sd2": KnowledgeBase.load(RULES_DIR / "sd1_to_sd2.toml"), "sdxl": KnowledgeBase.load(RULES_DIR / "sd1_to_sdxl.toml")}
# a word that picks each kind of negative (the kinds are tried in file order: anime, photo, painting, then default)
MARKERS = {"anime": "anime", "photo": "photo", "painting": "oil painting", "default": ""}
WORDINGS = sorted({(key, wording) for key, wordings in KBS["sd2"].asked_as.items() for wording in wordings})


def _phrases(negative) -> set[str]:
    return {phrase_key(p) for p in negative.prompt.split(",") if p.strip()}


def _kind_for(key: str, target: str) -> str | None:
    """The first kind (in the order they are tried) whose default negative has the phrase ``key``."""
    return next((kind for kind, negative in KBS[target].negatives.items() if key in _phrases(negative)), None)


def _added_negative(prompt: str, target: str) -> tuple[str, list[str]]:
    """The kind of default negative the bridge chose for ``prompt`` and the phrases it added."""
    t = translate(prompt, source="sd15", target=target)
    added = [c for c in t.changes if c.rule.startswith("negative.") and c.after]
    assert len(added) == 1, (prompt, [(c.rule, c.after) for c in t.changes])
    return added[0].rule.removeprefix("negative."), [phrase_key(p) for p in t.negative_prompt.split(",") if p.strip()]


def test_the_wordings_are_of_the_default_negatives_and_the_lists_stay_short():
    assert len(WORDINGS) > 300
    for target, kb in KBS.items():
        for negative in kb.negatives.values():
            assert len(_phrases(negative)) < 20, (target, negative.kind)
    assert {key for key, _ in WORDINGS} >= {"text", "ugly", "deformed", "disfigured", "photo", "photograph", "b&w"}


CASES = [(target, key, wording) for target in KBS for key, wording in WORDINGS if _kind_for(key, target)]


@pytest.mark.parametrize("target,key,wording", CASES, ids=[f"{t}-{k}={w}" for t, k, w in CASES])
def test_a_prompt_that_asks_for_a_phrase_in_other_words_does_not_get_it_in_its_negative(target, key, wording):
    kind = _kind_for(key, target)
    marker = MARKERS[kind]
    without = "a harbour at dawn" + (f", {marker}" if marker else "")
    with_wording = f"a harbour at dawn, {wording}" + (f", {marker}" if marker else "")
    chosen, phrases = _added_negative(without, target)
    assert chosen == kind and key in phrases  # so the check below can fail
    chosen, phrases = _added_negative(with_wording, target)
    assert key not in phrases, (with_wording, chosen)


@pytest.mark.parametrize("target", ["sd2", "sdxl"])
def test_every_wording_is_found_as_itself_by_every_negative_that_has_its_phrase(target):
    """The plan's finder sees each wording whole (not hidden inside a longer one) and maps it to its phrase: the
    translation test above cannot tell when a wording also switches the kind of negative."""
    plan = build_plan(KBS[target], TranslationOptions())
    checked = 0
    for negative in plan.negatives:
        keys = {key for _, key in negative.phrases}
        for key, wording in WORDINGS:
            if key in keys:
                found = negative.finder.find(PhraseSet.words(f"a harbour at dawn, {wording}, at dusk"))
                assert any(key in negative.asked_as[f] for f in found), (target, negative.spec.kind, key, wording)
                checked += 1
    assert checked > 200


@pytest.mark.parametrize("prompt,left_out", [
    ("a neon sign saying open, photo", "text"),
    ("a logo for a coffee shop", "text"),
    ("a poster that says welcome home", "text"),
    ("a billboard on a highway at night", "text"),
    ("a book cover with the title in gold", "text"),
    ("a comic panel with a speech bubble", "text"),
    ("a zombie in a ruined mall", "ugly"),
    ("an eldritch horror rising from the sea, oil painting", "deformed"),
    ("a demonic creature in a cave, photo", "disfigured"),
    ("anime girl, dslr", "photo"),
    ("anime girl, live action", "photo"),
    ("sumi-e of a heron", "b&w"),
    ("a photo of a pen and ink drawing of a heron", "b&w"),
    ("a charcoal sketch of a man, photo", "b&w"),
    ("a photo of the simpsons characters", "cartoon"),
    ("a painting of a knight, film grain", "grainy"),
    ("a photo of a dancer, soft focus", "blurry"),
    ("a harbour at dawn, film noir", "b&w"),
    ("a cute goblin girl, anime", "ugly"),
    ("anime film still, a girl in her room", "photo"),
    ("a castle, oil painting, 85mm lens", "photo"),
    ("a movie poster for a western, illustration", "text"),
    ("a robot, photo, octane render", "cgi"),
    ("a princess, disney, photo", "cartoon"),
])
def test_real_prompts_do_not_get_what_they_ask_for_in_their_negative(prompt, left_out):
    assert left_out not in _added_negative(prompt, "sd2")[1]


@pytest.mark.parametrize("prompt,kept", [
    ("a peace sign painted on a wall, photo", "text"),
    ("a deer crossing sign, photo", "text"),
    ("a field of grain, photo", "ugly"),
    ("portrait photo of a woman, bokeh", "blurry"),  # bokeh blurs the background, the subject stays sharp
])
def test_words_that_often_mean_something_else_leave_the_negative_alone(prompt, kept):
    assert kept in _added_negative(prompt, "sd2")[1]


NEW_PHOTO_DETECT = [
    "film still", "film stills", "movie still", "movie stills", "cinematic still", "live action", "live-action",
    "photographed", "polaroids", "kodak", "portra", "ektachrome", "fujifilm", "mamiya", "sony a7", "sony alpha",
    "gopro", "daguerreotype", "daguerreotypes", "tintype", "tintypes", "ambrotype", "wet plate", "wet-plate",
    "wetplate", "collodion",
]


@pytest.mark.parametrize("word", NEW_PHOTO_DETECT)
def test_film_stills_cameras_and_photographic_processes_get_the_photo_negative(word):
    assert _added_negative(f"a harbour at dawn, {word}", "sd2")[0] == "photo"
    assert _added_negative("a harbour at dawn", "sd2")[0] == "default"


@pytest.mark.parametrize("word", ["film still", "movie still", "cinematic still", "live action", "photos", "polaroid"])
def test_sdxl_film_stills_get_the_photo_negative(word):
    assert _added_negative(f"a harbour at dawn, {word}", "sdxl")[0] == "photo"
    assert _added_negative("a harbour at dawn", "sdxl")[0] == "default"


def test_an_anime_film_still_keeps_the_anime_negative():
    assert _added_negative("anime film still of a girl in her room", "sd2")[0] == "anime"


# --------------------------------------------------------------------------------------------------------------------
# warnings

def _warns(prompt: str, rule: str) -> bool:
    return any(f"rule {rule})" in w for w in translate(prompt).warnings)


CELEBRITY = next(r for r in KBS["sd2"].rules.values() if r.id == "weak.celebrity")


@pytest.mark.parametrize("name", CELEBRITY.params.names)
def test_every_celebrity_name_warns(name):
    assert _warns(f"portrait of {name.title()} as a medieval knight, oil painting", "weak.celebrity")


@pytest.mark.parametrize("prompt", [
    "Salma Hayek as a barbarian warrior princess",  # named in 2 corpus prompts
    "a film still of Samuel L. Jackson as a zombie",
    "Will Smith in Men in Black",
    "a statue of Abraham Lincoln on the moon",
    "Denzel Washington as Legolas",
    "Dwayne 'The Rock' Johnson lifting a car",
    "portrait of Beyoncé on stage",
])
def test_a_celebrity_prompt_warns(prompt):
    assert _warns(prompt, "weak.celebrity")


@pytest.mark.parametrize("prompt", [
    "a painting of the madonna and child, by raphael",
    "a prince on a white horse",
    "diana prince looking at her reflection",
    "a drake swimming in a pond",
    "a seal on a rock",
    "a pink flamingo",
    "a bee sting",
    "the queen of hearts",
    "the rock formations of monument valley",
    "the jordan river at dawn",
    "the washington monument at night",
    "lincoln cathedral in the fog",
    "walter white face to face with rick grimes",
    "a king charles spaniel on a sofa",
    "a union jack, black background",
])
def test_ambiguous_names_do_not_warn_in_their_common_sense(prompt):
    assert not _warns(prompt, "weak.celebrity")


def _parti() -> list[str]:
    with (CORPORA / "parti_prompts.tsv").open(encoding="utf-8") as f:
        return [row["Prompt"] for row in csv.DictReader(f, delimiter="\t") if row["Prompt"].strip()]


def test_the_celebrity_warning_fires_at_most_once_on_partiprompts():
    fired = [p for p in _parti() if _warns(p, "weak.celebrity")]
    assert len(fired) <= 1, fired
    assert all("Abraham Lincoln" in p for p in fired)


def test_a_name_that_is_another_persons_does_not_count_for_the_celebrity():
    from tools.count_artists import count_celebrities

    groups = {"grimes": ["grimes"], "elon musk": ["elon musk"]}
    found = count_celebrities(["walter white face to face with rick grimes", "grimes and elon musk as mickey mouse"],
                              groups)
    assert found == {"grimes": ["grimes and elon musk as mickey mouse"],
                     "elon musk": ["grimes and elon musk as mickey mouse"]}


def test_every_celebrity_candidate_named_in_two_corpus_prompts_is_listed():
    from tools import count_artists

    if not (count_artists.DEFAULT_DATA / count_artists.PROMPTS_DIR).is_dir():
        pytest.skip("the shared corpus is not on this machine")
    groups = count_artists.celebrity_groups(count_artists.DEFAULT_DATA)
    found = count_artists.count_celebrities(count_artists.load_prompts(count_artists.DEFAULT_DATA), groups)
    names = set(CELEBRITY.params.names)
    missing = [name for name, hits in found.items() if len(hits) >= 2 and not names.issuperset(groups[name])]
    assert not missing


@pytest.mark.parametrize("prompt", [
    "fish fingers and chips on a plate",
    "fish-fingers with peas",
    "a basket of chicken fingers",
    "finger food at a garden party",
    "ladyfingers and tiramisu",
    "lady fingers dusted with sugar",
    "sponge fingers in a trifle",
    "kitkat fingers on a table",
    "kit kat fingers",
    "finger sandwiches and tea",
    "a bowl of finger limes",
    "a woman wearing fingerless gloves",
    "a finger painting of a cat",
    "a fingerprint on glass, macro photo",
    "a finger of whisky in a crystal glass",
    "two fingers of bourbon",
    "the finger lakes at dawn",
    "fingers of fog over the hills",
    "a circle of stones like fingers on a hill",
    "a clock with an hour hand and a minute hand",
    "the hands of a clock",
    "hand lettering on a poster",
    "a poker hand on a green table",
    "knuckles the echidna running",
])
def test_fingers_and_hands_that_are_no_hands_do_not_warn(prompt):
    assert not _warns(prompt, "weak.hands-anatomy")


@pytest.mark.parametrize("prompt", [
    "a woman waving her hands",
    "detailed fingers",
    "close-up of a hand holding a flashlight",
    "a man eating fish fingers with his fingers",
    "a child holding fish fingers in her hand",
    "long bony fingers like claws",
    "a boxer's fists",
    "brass knuckles",
    "two people shaking hands",
])
def test_real_hands_still_warn(prompt):
    assert _warns(prompt, "weak.hands-anatomy")

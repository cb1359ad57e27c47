"""Count artist names and SD1 "magic words" in real Stable Diffusion 1.x user prompts.

The counts behind `bridge/rules/data/knowledge/sd1_artists.toml` and `sd1_magic_words.toml`. Standard library only.

Corpus (under --data, default /work/shared/data): the DiffusionDB prompts that ImageReward redistributes,
`imagereward_diffusiondb_prompts/{refl_prompts_dev.jsonl, test_rankings.json, benchmark_prompts.json}`, merged and
de-duplicated by DiffusionDB id (10,099 prompts, written for SD 1.x in August 2022).

What a count is: the number of prompts that mention a thing at least once, not the number of mentions.
Text is compared case-insensitively after Unicode accent folding ("Dalí" = "dali", "Beksiński" = "beksinski") and
whitespace collapsing.

artists mode: names are the lines of `clip_interrogator_vocab/artists.txt` (no line there starts with "by ") plus
the extra spellings in ALIASES below. A name matches on word boundaries; at each position the longest name wins
and its text is consumed, so "raphael lacoste" does not also count as "raphael" and "alphonse mucha" not also as
"mucha". Spellings of one artist are merged under one canonical name (ALIASES), and a prompt counts once per
artist. NOT_NAMES lists artists.txt lines that are ordinary words in prompts.

magic mode: counts each `[[rule]]` of sd1_magic_words.toml: `whole` = prompts with a comma-separated segment equal
to one of the rule's `match` phrases (what the rule fires on), `anywhere` = prompts containing one on word
boundaries. `--check` exits 1 if a knowledge file's `count` values differ from the recount.

weak mode: counts each `[[rule]]` of sd2_weak_concepts.toml: the prompts the warning would fire on, i.e. that
contain one of the rule's `names` (word-bounded, like artists) or match one of its `patterns` (Python regexes,
re.IGNORECASE, searched in the prompt as written), and contain none of its `unless` phrases (word-bounded).
`--celebrities` instead counts the candidate list CELEBRITIES, read from tools/celebrities.txt (famous real people
of the photographic era: actors, musicians, politicians, business people, athletes, internet figures; no fictional
characters and no one whose name is in artists.txt, since sd1_artists.toml handles those); a phrase of NOT_CELEBRITIES ("rick grimes")
is read as one name that is no candidate's, so it never counts for the candidate inside it ("grimes"). With
`--json` it prints rows to paste. `--examples N` prints up to N matching prompts per rule (per candidate with
`--celebrities`); `--corpus parti` runs any mode on PartiPrompts instead.

Examples:
    python tools/count_artists.py artists --top 150
    python tools/count_artists.py artists --check bridge/rules/data/knowledge/sd1_artists.toml
    python tools/count_artists.py magic --check bridge/rules/data/knowledge/sd1_magic_words.toml
    python tools/count_artists.py weak --celebrities --min 2 --examples 3
    python tools/count_artists.py weak --check bridge/rules/data/knowledge/sd2_weak_concepts.toml
    python tools/count_artists.py weak --corpus parti --examples 5
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

DEFAULT_DATA = Path("/work/shared/data")
PROMPTS_DIR = "imagereward_diffusiondb_prompts"
ARTISTS_FILE = "clip_interrogator_vocab/artists.txt"
PARTI_FILE = "parti_prompts/PartiPrompts.tsv"
KNOWLEDGE_DIR = Path(__file__).resolve().parent.parent / "bridge" / "rules" / "data" / "knowledge"

# artists.txt lines that, in prompts, are mostly ordinary words or someone else's name.
NOT_NAMES = frozenset({"artist", "constant", "ernst", "richter", "lovecraft", "christo", "raphael"})

# canonical name (lowercase, as users most often type it) -> other spellings: artists.txt variants and surnames
# typed alone. A surname is listed only when, in these prompts, it means this one artist.
ALIASES: Mapping[str, tuple[str, ...]] = {
    "greg rutkowski": (
        "grzegorz rutkowski",
        "rutkowski",
        "greg rutowski",
        "greg rutkowsky",
        "greg rutknowski",
        "greg rutkowsi",
    ),
    "artgerm": ("stanley artgerm", "stanley artgerm lau", "artgerm lau", "stanley lau", "artgem"),
    "alphonse mucha": ("alfonse mucha", "alfons mucha", "alphons mucha", "alphonso mucha", "mucha"),
    "ilya kuvshinov": ("kuvshinov",),
    "ross tran": ("rossdraws", "ross draws", "rossdraw"),
    "makoto shinkai": ("shinkai",),
    "lois van baarle": ("loish",),
    "zdzislaw beksinski": ("beksinski", "zdzisław beksinski", "zdislaw beksinski"),
    "studio ghibli": ("ghibli",),
    "thomas kinkade": ("kinkade", "thomas kindkade", "thomas kincade"),
    "disney": ("walt disney",),
    "h. r. giger": ("giger", "hr giger", "h.r. giger", "h r giger"),
    "moebius": ("mœbius", "jean giraud", "jean moebius giraud"),
    "j. c. leyendecker": ("joseph christian leyendecker", "leyendecker", "j.c. leyendecker", "jc leyendecker"),
    "peter mohrbacher": ("pete mohrbacher", "mohrbacher"),
    "krenz cushart": ("cushart",),
    "gaston bussiere": ("bussiere",),
    "marc simonetti": ("simonetti",),
    "charlie bowater": ("bowater",),
    "donato giancola": ("giancola",),
    "yoshitaka amano": ("amano",),
    "frank frazetta": ("frazetta",),
    "gustav klimt": ("klimt",),
    "wayne barlowe": ("barlowe",),
    "james gurney": ("gurney",),
    "simon stalenhag": ("stalenhag",),
    "william-adolphe bouguereau": ("bouguereau", "william adolphe bouguereau"),
    "gerald brom": ("brom",),
    "rene magritte": ("magritte",),
    "salvador dali": ("dali",),
    "tomasz alen kopera": ("kopera",),
    "hieronymus bosch": ("bosch",),
    "john singer sargent": ("sargent",),
    "gustave dore": ("gustav dore", "gustavo dore"),
    "hayao miyazaki": ("miyazaki",),
    "alena aenami": ("aenami",),
    "ernst haeckel": ("haeckel",),
    "albert bierstadt": ("bierstadt",),
    "claude monet": ("monet",),
    "mike mignola": ("mignola",),
    "ivan aivazovsky": ("aivazovsky",),
    "pablo picasso": ("picasso",),
    "m. c. escher": ("mc escher", "m.c. escher", "escher"),
    "jean-michel basquiat": ("basquiat",),
    "john william waterhouse": ("waterhouse",),
    "michelangelo": ("michaelangelo",),
    "antoni gaudi": ("gaudi",),
    "alejandro jodorowsky": ("jodorowsky",),
    "andy warhol": ("warhol",),
    "sandro botticelli": ("botticelli",),
    "ivan bilibin": ("bilibin",),
    "johannes vermeer": ("vermeer",),
    "kazimir malevich": ("malevich",),
    "takashi murakami": ("murakami",),
    "giuseppe arcimboldo": ("arcimboldo",),
    "katsushika hokusai": ("hokusai",),
    "wassily kandinsky": ("kandinsky",),
    "edvard munch": ("munch",),
    "vincent van gogh": ("van gogh",),
    "kawase hasui": ("hasui kawase",),
    "esao andrews": ("esao",),
    "beeple": ("mike winkelmann",),
    "leonardo da vinci": ("da vinci",),
    "rembrandt": ("rembrandt van rijn",),
}


# weak mode, --celebrities: famous real people SD1 users named as subjects, one a line in celebrities.txt beside
# this file ("a|b" lists spellings of one person, the first the canonical name; what is listed and what is not
# is said at its top).
CELEBRITIES = tuple(line.strip() for line in (Path(__file__).resolve().parent / "celebrities.txt").read_text(
    encoding="utf-8").splitlines() if line.strip() and not line.lstrip().startswith("#"))

# Phrases that hold a candidate's spelling but name someone or something else: read as one name that counts for no
# one, so "walter white face to face with rick grimes" is not a prompt naming the musician Grimes.
NOT_CELEBRITIES = (
    "rick grimes",  # The Walking Dead
    "adele bloch-bauer", "adele bloch bauer",  # Klimt's portrait
    "audre lorde",  # the poet, not the singer Lorde
    "king charles spaniel", "king charles spaniels", "cavalier king charles",  # the dog
)


def fold(text: str) -> str:
    """Lowercase, strip accents and collapse whitespace: fold("Zdzisław  Beksiński") == "zdzisław beksinski"."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).split())


def load_prompts(data: Path) -> list[str]:
    """The corpus: every prompt once per DiffusionDB id, in file order."""
    folder = data / PROMPTS_DIR
    records = [json.loads(line) for line in (folder / "refl_prompts_dev.jsonl").open(encoding="utf-8")]
    by_id = {r["diffusiondb_id"]: r["prompt"] for r in records}
    for name in ("test_rankings.json", "benchmark_prompts.json"):
        for r in json.loads((folder / name).read_text(encoding="utf-8")):
            by_id.setdefault(r["id"], r["prompt"])
    return list(by_id.values())


class PhraseMatcher:
    """Leftmost-longest, non-overlapping, word-bounded matching of literal phrases, each mapped to a group."""

    def __init__(self, groups: Mapping[str, Iterable[str]]) -> None:
        self._group_of: dict[str, str] = {}
        for group, phrases in groups.items():
            for phrase in phrases:
                self._group_of.setdefault(fold(phrase), group)
        self._by_first_word: dict[str, list[str]] = {}
        for phrase in self._group_of:
            first = re.match(r"\w+", phrase)
            if first is None:
                raise ValueError(f"phrase {phrase!r} has to start with a letter or digit")
            self._by_first_word.setdefault(first.group(), []).append(phrase)
        for candidates in self._by_first_word.values():
            candidates.sort(key=len, reverse=True)

    def groups_in(self, folded: str) -> set[str]:
        """Groups whose phrases occur in already-folded text."""
        found: set[str] = set()
        consumed_to = 0
        for word in re.finditer(r"(?<!\w)\w+", folded):
            start = word.start()
            if start < consumed_to:
                continue
            for phrase in self._by_first_word.get(word.group(), ()):
                end = start + len(phrase)
                if folded.startswith(phrase, start) and not (end < len(folded) and _is_word(folded[end])):
                    found.add(self._group_of[phrase])
                    consumed_to = end
                    break
        return found


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def count_groups(prompts: Iterable[str], groups: Mapping[str, Iterable[str]]) -> Counter[str]:
    """Number of prompts in which each group occurs anywhere (word-bounded)."""
    matcher = PhraseMatcher(groups)
    counts: Counter[str] = Counter()
    for prompt in prompts:
        counts.update(matcher.groups_in(fold(prompt)))
    return counts


def segments(prompt: str) -> set[str]:
    """Comma-separated parts of a prompt, folded, without surrounding brackets and end punctuation."""
    return {fold(part).strip(" .;:!()[]{}") for part in prompt.split(",")}


def count_whole_segments(prompts: Iterable[str], groups: Mapping[str, Iterable[str]]) -> Counter[str]:
    """Number of prompts with a comma-separated segment equal to one of a group's phrases."""
    wanted = {group: {fold(p) for p in phrases} for group, phrases in groups.items()}
    counts: Counter[str] = Counter()
    for prompt in prompts:
        parts = segments(prompt)
        counts.update(group for group, phrases in wanted.items() if parts & phrases)
    return counts


def artist_groups(data: Path) -> dict[str, list[str]]:
    """canonical artist -> spellings, from artists.txt merged through ALIASES, minus NOT_NAMES."""
    alias_owner = {fold(s): fold(c) for c, spellings in ALIASES.items() for s in (c, *spellings)}
    groups: dict[str, list[str]] = {fold(c): [fold(c), *map(fold, s)] for c, s in ALIASES.items()}
    for line in (data / ARTISTS_FILE).read_text(encoding="utf-8").splitlines():
        name = fold(line)
        if not name or name in NOT_NAMES:
            continue
        owner = alias_owner.get(name, name)
        spellings = groups.setdefault(owner, [owner])
        if name not in spellings:
            spellings.append(name)
    return groups


def load_parti(data: Path) -> list[str]:
    """PartiPrompts (1,630 plain descriptive prompts written for Parti, not for SD1): the `Prompt` column."""
    with (data / PARTI_FILE).open(encoding="utf-8", newline="") as f:
        return [row["Prompt"] for row in csv.DictReader(f, delimiter="\t")]


def celebrity_groups(data: Path) -> dict[str, list[str]]:
    """canonical name -> spellings, from CELEBRITIES, leaving out anyone whose spelling is an artists.txt name.
    NOT_CELEBRITIES is not among them: `count_celebrities` reads those phrases, so that they hide what they hold."""
    artist_spellings = {s for spellings in artist_groups(data).values() for s in spellings}
    groups: dict[str, list[str]] = {}
    for entry in CELEBRITIES:
        spellings = [fold(s) for s in entry.split("|")]
        spellings += [s.replace("-", " - ") for s in spellings if "-" in s]
        if artist_spellings.isdisjoint(spellings):
            groups[spellings[0]] = spellings
    return groups


def count_celebrities(prompts: Iterable[str], groups: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """canonical name -> the prompts naming that person, a NOT_CELEBRITIES phrase hiding the candidate inside it."""
    hidden = "\0not a celebrity"
    matcher = PhraseMatcher({**groups, hidden: [*NOT_CELEBRITIES, *(s.replace("-", " - ") for s in NOT_CELEBRITIES
                                                                    if "-" in s)]})
    found: dict[str, list[str]] = {}
    for prompt in prompts:
        for name in matcher.groups_in(fold(prompt)) - {hidden}:
            found.setdefault(name, []).append(prompt)
    return found


class WeakRule:
    """One `[[rule]]` of sd2_weak_concepts.toml: fires on a name or pattern unless an `unless` phrase is present."""

    def __init__(self, rule: Mapping) -> None:
        self.id: str = rule["id"]
        names = rule.get("names", [])
        unless = rule.get("unless", [])
        self._names = PhraseMatcher({"name": names}) if names else None
        self._unless = PhraseMatcher({"unless": unless}) if unless else None
        self._patterns = [re.compile(p, re.IGNORECASE) for p in rule.get("patterns", [])]

    def fires(self, prompt: str) -> bool:
        folded = fold(prompt)
        hit = bool(self._names and self._names.groups_in(folded)) or any(p.search(prompt) for p in self._patterns)
        return hit and not (self._unless and self._unless.groups_in(folded))


def load_knowledge(path: Path) -> dict:
    with path.open("rb") as f:
        return tomllib.load(f)


def run_artists(args: argparse.Namespace, prompts: list[str]) -> int:
    groups = artist_groups(args.data)
    counts = count_groups(prompts, groups)
    if args.check:
        entries = load_knowledge(args.check)["artist"]
        return report_mismatches((e["name"], e.get("count"), counts[fold(e["name"])]) for e in entries)
    top = by_count(counts)[: args.top]
    if args.json:
        rows = [{"name": n, "count": k, "aliases": groups[n][1:]} for n, k in top]
        print(json.dumps(rows, ensure_ascii=False, indent=1))
    else:
        for name, count in top:
            print(f"{count:6d}  {name}")
    return 0


def run_magic(args: argparse.Namespace, prompts: list[str]) -> int:
    path = args.check or KNOWLEDGE_DIR / "sd1_magic_words.toml"
    rules = load_knowledge(path)["rule"]
    groups = {r["id"]: r["match"] for r in rules}
    whole = count_whole_segments(prompts, groups)
    if args.check:
        return report_mismatches((r["id"], r.get("count"), whole[r["id"]]) for r in rules)
    anywhere = count_groups(prompts, groups)
    rows = [{"id": r["id"], "whole": whole[r["id"]], "anywhere": anywhere[r["id"]]} for r in rules]
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for row in rows:
            print(f"{row['whole']:6d} {row['anywhere']:6d}  {row['id']}")
    return 0


def run_weak(args: argparse.Namespace, prompts: list[str]) -> int:
    if args.celebrities:
        groups = celebrity_groups(args.data)
        found = count_celebrities(prompts, groups)
        counts = {name: len(hits) for name, hits in found.items()}
        top = [(n, k) for n, k in by_count(counts) if k >= args.min]
        print(f"{len(groups)} candidates, {len(top)} with count >= {args.min}", file=sys.stderr)
        if args.json:
            print(json.dumps([{"name": n, "count": k, "spellings": groups[n]} for n, k in top], indent=1))
        else:
            for name, count in top[: args.top]:
                print_hits(count, " | ".join(groups[name]), found[name][: args.examples])
        return 0
    path = args.check or KNOWLEDGE_DIR / "sd2_weak_concepts.toml"
    entries = load_knowledge(path)["rule"]
    rules = [WeakRule(r) for r in entries]
    matched: dict[str, list[str]] = {rule.id: [p for p in prompts if rule.fires(p)] for rule in rules}
    if args.check:
        return report_mismatches((r["id"], r.get("count"), len(matched[r["id"]])) for r in entries)
    if args.json:
        print(json.dumps([{"id": rule_id, "count": len(hits)} for rule_id, hits in matched.items()], indent=1))
        return 0
    for rule_id, hits in matched.items():
        print_hits(len(hits), rule_id, hits[: args.examples])
    return 0


def by_count(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """(name, count) pairs, most counted first, then by name."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def print_hits(count: int, label: str, examples: Iterable[str]) -> None:
    """A table row (count, label), then each example prompt on one line of at most 200 characters."""
    print(f"{count:6d}  {label}")
    for prompt in examples:
        print(f"          {' '.join(prompt.split())[:200]}")


def report_mismatches(rows: Iterable[tuple[str, int | None, int]]) -> int:
    """Print every (key, stored, recounted) that differ; 0 when none do."""
    bad = [(key, stored, fresh) for key, stored, fresh in rows if stored != fresh]
    for key, stored, fresh in bad:
        print(f"{key}: file says count = {stored}, recount gives {fresh}", file=sys.stderr)
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("artists", "magic", "weak"))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--top", type=int, default=150, help="artists, weak --celebrities: how many to print")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    parser.add_argument("--check", type=Path, help="compare this knowledge file's counts with a recount")
    corpora = ("diffusiondb", "parti")
    parser.add_argument("--corpus", choices=corpora, default="diffusiondb", help="SD1 user prompts or PartiPrompts")
    parser.add_argument("--celebrities", action="store_true", help="weak mode: count the CELEBRITIES candidates")
    parser.add_argument("--min", type=int, default=1, help="weak --celebrities: leave out names counted fewer times")
    parser.add_argument("--examples", type=int, default=0, help="weak mode: print this many matching prompts per rule (or candidate)")
    args = parser.parse_args(argv)
    prompts = load_parti(args.data) if args.corpus == "parti" else load_prompts(args.data)
    print(f"{len(prompts)} prompts", file=sys.stderr)
    modes = {"artists": run_artists, "magic": run_magic, "weak": run_weak}
    return modes[args.mode](args, prompts)


if __name__ == "__main__":
    sys.exit(main())

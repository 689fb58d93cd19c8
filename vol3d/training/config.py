"""Training configs: the schema, its defaults, validation and ``--set key.sub=value`` overrides.

A config is a YAML mapping with the sections below (every key optional; :data:`SCHEMA` holds the
defaults). ``model:`` is the model zoo's section (:func:`vol3d.models.model_kwargs` validates it);
every other key is checked here: unknown keys, wrong types and missing files stop the run before
any work, with one line naming the key (:class:`ConfigError`)::

    seed: 0                  # model init, validation split, data order, augmentation
    device: auto             # auto (cuda > mps > cpu) | cpu | cuda | cuda:1 | mps
    data:    {path, resolution, representation, val_split, val_fraction, in_memory, num_workers,
              pad_for_rotation, cache_dir}
    model:   {group, widths, L, ...}  or  {preset: NAME, ...}
    optimizer: {name, lr, weight_decay, betas, momentum}
    schedule:  {name, warmup_epochs, min_lr}
    train:   {epochs, stop_after, batch_size, eval_batch_size, label_smoothing, grad_clip, amp, compile}
    augment: {rotation, mode, padding}

Values given with ``--set`` are parsed as YAML (``0.1``, ``true``, ``null``, ``[8, 16]``); floats
also accept ``1e-3`` (which YAML 1.1 reads as a string).
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import UsageError
from ..rotations import GROUPS


class ConfigError(UsageError):
    """A config that cannot run: unknown key, wrong type or value, missing file (one line, names the key)."""


@dataclass(frozen=True)
class Option:
    """One config value: its default, type (``int | float | str | bool | floats``), allowed choices,
    whether ``null`` is allowed, and a lower bound for numbers."""

    default: object
    type: str
    choices: tuple = ()
    nullable: bool = False
    min: float | None = None


ROTATIONS = tuple(g for g in GROUPS if g != "full_octa")  # none | z | so3 | o3 | octa

#: every section and key of a training config except ``model`` (free-form, checked by the model zoo)
SCHEMA = {
    "seed": Option(0, "int"),
    "device": Option("auto", "str"),
    "data": {
        # an HDF5 file from `vol3d voxelize/import`, an npz `vol3d import` reads, or builtin:NAME
        "path": Option("builtin:synthetic", "str"),
        # builtin: voxel grid (default 32); npz: resample on import; HDF5: must match the file
        "resolution": Option(None, "int", nullable=True, min=4),
        "representation": Option("solid", "str", ("solid", "surface", "fraction", "sdf")),  # builtin only
        # npz only: true pads until no rotation loses a voxel; an integer N pads to N^3 (cheaper:
        # rotations then cut what lies beyond radius N/2 of the centre)
        "pad_for_rotation": Option(False, "bool|int", min=1),
        # the validation split: auto = the file's "val" split if any, else a seeded stratified
        # hold-out of val_fraction of train; a split name; or none (no validation)
        "val_split": Option("auto", "str"),
        "val_fraction": Option(0.1, "float", min=0.0),
        "in_memory": Option(True, "bool"),  # read each split into memory once
        "num_workers": Option(0, "int", min=0),  # DataLoader worker processes
        "cache_dir": Option(None, "str", nullable=True),  # builtin/npz cache (default $VOL3D_CACHE or ~/.cache/vol3d)
    },
    "optimizer": {
        "name": Option("adamw", "str", ("adamw", "adam", "sgd")),
        "lr": Option(1e-3, "float", min=0.0),
        "weight_decay": Option(0.01, "float", min=0.0),
        "betas": Option([0.9, 0.999], "floats"),  # adam/adamw
        "momentum": Option(0.9, "float", min=0.0),  # sgd (Nesterov)
    },
    "schedule": {
        "name": Option("cosine", "str", ("cosine", "constant")),
        "warmup_epochs": Option(1.0, "float", min=0.0),  # linear warm-up from 0, counted in steps
        "min_lr": Option(0.0, "float", min=0.0),  # the cosine's floor
    },
    "train": {
        "epochs": Option(10, "int", min=1),  # the length of the run (and of the schedule)
        # stop after this many epochs (the schedule still spans train.epochs); --resume continues
        "stop_after": Option(None, "int", nullable=True, min=1),
        "batch_size": Option(32, "int", min=1),  # per process under torchrun
        "eval_batch_size": Option(None, "int", nullable=True, min=1),  # default: batch_size
        "label_smoothing": Option(0.0, "float", min=0.0),
        "grad_clip": Option(1.0, "float", nullable=True, min=0.0),  # max global grad norm; null: off
        "amp": Option("auto", "str", ("auto", "bf16", "fp16", "none")),  # auto: bf16/fp16 on cuda, none elsewhere
        "compile": Option(False, "bool"),  # torch.compile the model
    },
    "augment": {
        # random rotations of every training batch, on the training device
        "rotation": Option("none", "str", ROTATIONS),
        "mode": Option("bilinear", "str", ("bilinear", "nearest")),  # interpolation off the cube group
        "padding": Option("zeros", "str", ("zeros", "border")),  # what rotates in from outside the grid
    },
}
MODEL_SECTION = "model"
DEFAULT_MODEL = {"group": "so3"}
MODEL_KEYS = {"group", "preset", "num_classes", "in_channels"}  # besides vol3d.models.DEFAULTS


def defaults() -> dict:
    """The default config (a fresh nested dict)."""

    def walk(node):
        return {k: walk(v) if isinstance(v, dict) else copy.deepcopy(v.default) for k, v in node.items()}

    out = walk(SCHEMA)
    out[MODEL_SECTION] = dict(DEFAULT_MODEL)
    return out


# ----------------------------------------------------------------------------------- loading


def load_config(config, overrides=()) -> dict:
    """The resolved, validated config from a YAML path or a dict, with ``key.sub=value`` overrides.

    Missing keys take their defaults; the data path is made absolute (relative paths are taken
    from the current directory) and checked to exist; the ``model`` section is validated by the
    model zoo. Raises :class:`ConfigError` naming the first offending key.
    """
    raw = read_yaml(config) if isinstance(config, (str, Path)) else copy.deepcopy(config)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config must be a mapping of sections, got {type(raw).__name__}")
    cfg = merge(defaults(), raw)
    for item in overrides:
        apply_override(cfg, item)
    return validate(cfg)


def read_yaml(path) -> dict:
    """``yaml.safe_load`` of a config file; missing or unparsable files raise :class:`ConfigError`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} not valid YAML ({getattr(exc, 'problem', exc)})") from None


def merge(base: dict, update: dict, prefix: str = "") -> dict:
    """``base`` with ``update``'s values; a key ``update`` has that ``base`` lacks is an error
    (except inside ``model``, which the model zoo checks)."""
    out = dict(base)
    for key, value in update.items():
        name = f"{prefix}{key}"
        if not prefix and key == MODEL_SECTION:
            if not isinstance(value, dict):
                raise ConfigError(f"config key 'model' must be a mapping, got {_show(value)}")
            out[key] = dict(value)
            continue
        if key not in base:
            raise ConfigError(f"unknown config key '{name}'{_suggest(key, base, prefix.rstrip('.'))}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{name}' must be a mapping of options, got {_show(value)}")
            out[key] = merge(base[key], value, f"{name}.")
        else:
            out[key] = value
    return out


def apply_override(cfg: dict, item: str) -> None:
    """Apply one ``key.sub=value`` override to ``cfg`` in place (the value is parsed as YAML)."""
    key, sep, text = str(item).partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key.sub=value, got {item!r}")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    parts = key.split(".")
    node, schema = cfg, SCHEMA
    for i, part in enumerate(parts[:-1]):
        name = ".".join(parts[: i + 1])
        if schema is not None and part not in schema and not (i == 0 and part == MODEL_SECTION):
            raise ConfigError(f"unknown config key '{name}'{_suggest(part, schema, '.'.join(parts[:i]))}")
        if not isinstance(node.get(part), dict):
            raise ConfigError(f"config key '{name}' is not a section (in --set {key})")
        node = node[part]
        schema = schema.get(part) if isinstance(schema, dict) else None
    last = parts[-1]
    if schema is not None and last not in schema:
        raise ConfigError(f"unknown config key '{key}'{_suggest(last, schema, '.'.join(parts[:-1]))}")
    if isinstance(schema, dict) and isinstance(schema.get(last), dict):
        raise ConfigError(f"config key '{key}' is a section; set one of its keys, e.g. {key}.{next(iter(schema[last]))}=...")
    node[last] = value


# ----------------------------------------------------------------------------------- validation


def validate(cfg: dict) -> dict:
    """Check types, choices and bounds of every key, resolve the data path; returns ``cfg``."""
    _check_section(cfg, SCHEMA, "")
    _check_model(cfg)
    data = cfg["data"]
    data["path"] = resolve_data_path(data["path"])
    if not data["val_split"]:
        raise ConfigError("config key 'data.val_split' must be auto, none or a split name, got ''")
    if not data["val_fraction"] < 1.0:
        raise ConfigError(f"config key 'data.val_fraction' must be in [0, 1), got {data['val_fraction']}")
    if len(cfg["optimizer"]["betas"]) != 2:
        raise ConfigError(f"config key 'optimizer.betas' needs two numbers, got {cfg['optimizer']['betas']}")
    cfg["device"] = resolve_device_name(cfg["device"])
    return cfg


def resolve_device_name(device) -> str:
    """A valid ``device`` value (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``), or :class:`ConfigError`."""
    text = str(device)
    index = text[5:] if text.startswith("cuda:") else None
    if text not in ("auto", "cpu", "cuda", "mps") and not (index is not None and index.isdigit()):
        raise ConfigError(f"config key 'device' must be auto, cpu, cuda, cuda:N or mps, got {text!r}")
    return text


def resolve_data_path(path: str) -> str:
    """``builtin:NAME`` as is; a file path made absolute and checked to exist."""
    from ..data.builtin import BUILTIN_NAMES

    if path.startswith("builtin:"):
        if path[len("builtin:"):] not in BUILTIN_NAMES:
            raise ConfigError(f"config key 'data.path': unknown built-in dataset {path!r}; "
                              f"choose one of {', '.join('builtin:' + n for n in BUILTIN_NAMES)}")
        return path
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"config key 'data.path': file not found: {path}")
    return str(file.resolve())


def _check_section(values: dict, schema: dict, prefix: str) -> None:
    for key, spec in schema.items():
        name = f"{prefix}{key}"
        if isinstance(spec, dict):
            _check_section(values[key], spec, f"{name}.")
        else:
            values[key] = check_value(name, values[key], spec)


def check_value(name: str, value, spec: Option):
    """``value`` converted to the option's type (ints to floats, ``"1e-3"`` to float), or :class:`ConfigError`."""
    if value is None:
        if spec.nullable:
            return None
        raise ConfigError(f"config key '{name}' must not be null (expected {_type_name(spec)})")
    out = _coerce(value, spec.type)
    if out is None:
        raise ConfigError(f"config key '{name}' expects {_type_name(spec)}, got {_show(value)}")
    if spec.choices and out not in spec.choices:
        raise ConfigError(f"config key '{name}' must be one of {', '.join(spec.choices)}, got {_show(value)}")
    if spec.min is not None and not isinstance(out, bool) and out < spec.min:
        raise ConfigError(f"config key '{name}' must be >= {spec.min:g}, got {_show(value)}")
    return out


def _coerce(value, kind: str):
    """``value`` as ``kind``, or None when it is not one (bools are not numbers here)."""
    if kind == "bool|int":
        return value if isinstance(value, (bool, int)) else None
    if kind == "bool":
        return value if isinstance(value, bool) else None
    if kind == "int":
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return None
        return None
    if kind == "str":
        return value if isinstance(value, str) else None
    if kind == "floats":
        if not isinstance(value, (list, tuple)):
            return None
        items = [_coerce(v, "float") for v in value]
        return None if any(v is None for v in items) else items
    raise AssertionError(kind)


def _check_model(cfg: dict) -> None:
    """The ``model`` section: value types against the model zoo's defaults, then its own validation."""
    from ..models import DEFAULTS, model_kwargs
    from ..models.builder import option_names
    from ..models.config import PRESETS

    section = cfg[MODEL_SECTION]
    preset = PRESETS.get(section.get("preset"), {})
    try:  # the options of the architecture the section builds (reference models have their own)
        names = option_names(section.get("architecture", preset.get("architecture", "vol3d")))
    except UsageError as exc:
        raise ConfigError(f"config key 'model.architecture': {exc}") from None
    valid = sorted(names | MODEL_KEYS)
    for key, value in section.items():
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean 'model.{close[0]}'?" if close else f"valid: {', '.join(valid)}"
            raise ConfigError(f"unknown config key 'model.{key}'; {hint}")
        default = DEFAULTS.get(key)
        if default is None or value is None:
            continue
        kind = {bool: "bool", int: "int", float: "float", str: "str"}.get(type(default))
        if isinstance(default, (list, tuple)):
            kind = "floats"
        if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            continue
        if kind is not None and _coerce(value, kind) is None:
            raise ConfigError(f"config key 'model.{key}' expects {_type_name(Option(default, kind))}, got {_show(value)}")
    try:
        model_kwargs(section)
    except UsageError as exc:
        raise ConfigError(f"config section 'model': {exc}") from None


def _type_name(spec: Option) -> str:
    names = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
             "bool|int": "true, false or an integer", "floats": "a list of numbers"}
    text = names[spec.type]
    return text + (" or null" if spec.nullable else "")


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _suggest(key: str, options, section: str) -> str:
    """``"; did you mean 'section.close'?"`` or the valid keys of ``section``."""
    names = list(options) + ([MODEL_SECTION] if options is SCHEMA else [])
    close = difflib.get_close_matches(key, names, n=1)
    dot = f"{section}." if section else ""
    if close:
        return f"; did you mean '{dot}{close[0]}'?"
    return f"; valid keys{f' in {section!r}' if section else ''}: {', '.join(names)}"


def dump_config(cfg: dict) -> str:
    """The config as YAML text (sections in schema order), as saved to ``config.yaml``."""
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False)

"""Reading search-space files: the YAML format, validated with errors that name the place.

A space file reads like an ArchSpec whose values may be lists of choices::

    name: default
    resolution: 224              # deployment resolution: MACs and latency are counted here
    num_classes: 1000
    in_channels: 3
    se_style: efficientnet       # as in an ArchSpec
    bn: {eps: 1.0e-05, momentum: 0.1}
    per: block                   # block (or layer): kernel/expand/se/act or the op chosen for
                                 # every block; stage: chosen once and shared by the stage's blocks
    stem: {out: [16, 24], kernel: 3, stride: 2, act: hswish}
    stages:                      # stride is fixed; any other key: one value or a list of choices
    - {block: [mbconv, fused], kernel: [3, 5, 7], expand: [1, 3, 4, 6], se: [0, 0.25],
       act: [relu, hswish], depth: [1, 2, 3], out: [24, 32], stride: 2}
    - {ops: [skip, {block: mbconv, kernel: 3, expand: 3}, {block: mbconv, kernel: 5, expand: 6}],
       depth: 3, out: 40, stride: 2}
    head: {channels: [960, 1280], act: hswish, hidden: [0, 1280]}   # optional: the width of a
                                 # MobileNetV3 hidden Linear after pooling; 0: none
    dropout: 0.2
    drop_path: 0.0
    evaluator: zero_cost         # optional: the evaluator a search of this space uses unless
                                 # evaluator= is given (the one that ranked best on it), or a
                                 # mapping of its name and the settings that differ from
                                 # conf/evaluator/NAME.yaml: {name: zero_cost, features: {macs: 1}}

``depth`` lists every allowed number of blocks (elastic depth keeps the first ``d`` blocks),
``out`` the allowed output widths of the stage. A cartesian stage chooses its block type
(``mbconv`` or ``fused``) once per stage and the other block settings per block or per stage.
An op-list stage (``ops``) instead lists named candidate ops, one of which each layer (or, with
``per: stage``, the whole stage) takes: ``skip`` (the identity, or a linear 1x1 conv + BN where
the layer strides or changes width), or a mapping with ``block`` (``mbconv``, ``fused``, ``ds``,
``conv``), ``kernel``, ``expand`` (mbconv and fused only, required there), ``se``, ``act`` and
an optional ``name`` (default e.g. ``mbconv_k3_e3_relu``), all single values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mbnas.arch import ACTIVATIONS, BLOCK_TYPES, EXPANDING_BLOCKS, SE_STYLES, network_readers
from mbnas.errors import ConfigError
from mbnas.resources import search_spaces_dir
from mbnas.space.model import PER, SKIP, OpChoice, SearchSpace, StageChoices
from mbnas.validation import Reader, check_choice, check_float, check_int, read_yaml

DEFAULT_SPACE = "default"
PER_ALIASES = {"layer": "block"}
CARTESIAN_KEYS = ("block", "kernel", "expand", "se", "act")


def _options(reader: Reader, key: str, check: Callable[[Any, str], Any],
             default: Any = None) -> tuple:
    """A value given once or as a list of distinct choices, each checked."""
    value = reader.data.get(key, default)
    where = f"{reader.where}.{key}"
    if value is None:
        raise ConfigError(where, "missing required key", "give a value or a list of choices")
    if not isinstance(value, list):
        return (check(value, where),)
    if not value:
        raise ConfigError(where, "empty list of choices", "give at least one value")
    options = tuple(check(item, f"{where}[{i}]") for i, item in enumerate(value))
    if len(set(options)) != len(options):
        raise ConfigError(where, f"repeated choices in {value!r}", "list each value once")
    return options


def _ratio(value: Any, where: str) -> int | float:
    number = check_float(value, where, 0.0, None, low_inclusive=False)
    return int(number) if number.is_integer() else number


_STAGE_KEYS = ("block", "kernel", "expand", "se", "act", "ops", "depth", "out", "stride")


def _stage_from_dict(data: Any, where: str) -> StageChoices:
    if isinstance(data, dict) and "ops" in data:
        return _op_stage_from_dict(data, where)
    reader = Reader(data, where, _STAGE_KEYS, required=("expand", "depth", "out"))
    return StageChoices(
        block=_options(reader, "block", lambda v, w: check_choice(v, w, EXPANDING_BLOCKS),
                       "mbconv"),
        kernel=_options(reader, "kernel", lambda v, w: check_int(v, w, odd=True), 3),
        expand=_options(reader, "expand", _ratio),
        se=_options(reader, "se", lambda v, w: check_float(v, w, 0.0, 1.0), 0.0),
        act=_options(reader, "act", lambda v, w: check_choice(v, w, ACTIVATIONS), "relu"),
        depth=_options(reader, "depth", check_int),
        out=_options(reader, "out", check_int),
        stride=reader.int("stride", default=1))


def _op_stage_from_dict(data: dict, where: str) -> StageChoices:
    mixed = [key for key in CARTESIAN_KEYS if key in data]
    if mixed:
        raise ConfigError(f"{where}.{mixed[0]}", "given beside ops",
                          "give either a list of ops or block/kernel/expand/se/act choices, "
                          "not both")
    reader = Reader(data, where, _STAGE_KEYS, required=("depth", "out"))
    ops = data["ops"]
    if not isinstance(ops, list) or not ops:
        raise ConfigError(f"{where}.ops", f"expected a non-empty list of ops, got {ops!r}",
                          "list ops such as [skip, {block: mbconv, kernel: 3, expand: 3}]")
    choices = tuple(_op_from_value(op, f"{where}.ops[{i}]") for i, op in enumerate(ops))
    names = [op.name for op in choices]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"{where}.ops", f"op {repeated[0]!r} is listed twice",
                          "list each op once, or give them distinct names")
    return StageChoices(depth=_options(reader, "depth", check_int),
                        out=_options(reader, "out", check_int),
                        stride=reader.int("stride", default=1), ops=choices)


_OP_KEYS = ("name", "block", "kernel", "expand", "se", "act")


def _op_from_value(value: Any, where: str) -> OpChoice:
    """One candidate op: ``skip`` or a mapping of single block settings."""
    if value == "skip" or value == {"block": "skip"}:
        return SKIP
    if isinstance(value, str):
        raise ConfigError(where, f"unknown op {value!r}",
                          "use skip or a mapping such as {block: mbconv, kernel: 3, expand: 6}")
    reader = Reader(value, where, _OP_KEYS, required=("block",))
    block = reader.choice("block", BLOCK_TYPES)
    if block == "skip":
        raise ConfigError(where, "a skip op takes no settings", "write it as plain skip")
    expanding = block in EXPANDING_BLOCKS
    if expanding and not reader.has("expand"):
        raise ConfigError(f"{where}.expand", f"missing for a {block} op",
                          "give its expansion ratio, e.g. expand: 6")
    if not expanding and reader.has("expand"):
        raise ConfigError(f"{where}.expand", f"a {block} op does not expand",
                          "drop expand, or use block: mbconv or fused")
    op = OpChoice(name="", block=block, kernel=reader.int("kernel", 3, odd=True),
                  expand=_ratio(value["expand"], f"{where}.expand") if expanding else 1,
                  se=reader.float("se", 0.0, 0.0, 1.0), act=reader.choice("act", ACTIVATIONS,
                                                                           "relu"))
    return OpChoice(**{**vars(op), "name": reader.str("name", default_op_name(op))})


def default_op_name(op: OpChoice) -> str:
    """A readable name for an op, e.g. ``mbconv_k5_e6_relu`` or ``ds_k3_se0.25_hswish``."""
    parts = [op.block, f"k{op.kernel}"]
    if op.block in EXPANDING_BLOCKS:
        parts.append(f"e{op.expand:g}")
    if op.se:
        parts.append(f"se{op.se:g}")
    return "_".join([*parts, op.act])


_SPACE_KEYS = ("name", "resolution", "num_classes", "in_channels", "se_style", "bn", "per",
               "stem", "stages", "head", "dropout", "drop_path", "evaluator")


def space_from_dict(data: Any, source: str = "<space>") -> SearchSpace:
    """A validated SearchSpace; errors name the source, the key, the value and what is allowed."""
    parts = network_readers(data, source, _SPACE_KEYS)
    reader, stem, head = parts.top, parts.stem, parts.head
    return SearchSpace(
        name=reader.str("name", Path(source).stem),
        resolution=reader.int("resolution", minimum=8),
        num_classes=reader.int("num_classes", default=1000),
        in_channels=reader.int("in_channels", default=3),
        se_style=reader.choice("se_style", SE_STYLES, default="efficientnet"),
        bn=parts.bn,
        per=_per(reader),
        stem_out=_options(stem, "out", check_int),
        stem_kernel=stem.int("kernel", 3, odd=True),
        stem_stride=stem.int("stride", 2),
        stem_act=stem.choice("act", ACTIVATIONS, "relu"),
        stages=tuple(_stage_from_dict(row, f"{source}: stages[{i}]")
                     for i, row in enumerate(parts.stages)),
        head_channels=_options(head, "channels", check_int),
        head_act=head.choice("act", ACTIVATIONS, "relu"),
        head_hidden=_hidden_options(head) if head.has("hidden") else None,
        dropout=reader.float("dropout", 0.2, 0.0, 1.0),
        drop_path=reader.float("drop_path", 0.0, 0.0, 1.0),
        **_evaluator(reader))


def _hidden_options(head: Reader) -> tuple[int | None, ...]:
    """The head's hidden-layer widths; a 0 choice (no hidden layer) becomes None, the value an
    ArchSpec without the layer has."""
    options = _options(head, "hidden", lambda value, where: check_int(value, where, minimum=0))
    return tuple(width or None for width in options)


def _evaluator(reader: Reader) -> dict[str, Any]:
    """The space's preferred evaluator: a name, or a mapping of ``name`` and the settings that
    differ from ``conf/evaluator/NAME.yaml`` (checked when a search builds it)."""
    value = reader.data.get("evaluator")
    if value is None:
        return {}
    if isinstance(value, str):
        return {"evaluator": value}
    where = f"{reader.where}.evaluator"
    if not isinstance(value, Mapping) or not isinstance(value.get("name"), str):
        raise ConfigError(where, f"{value!r} names no evaluator", "give its name (evaluator: "
                          "zero_cost) or a mapping with name and settings (evaluator: {name: "
                          "zero_cost, features: {macs: 1.0}})")
    settings = {key: setting for key, setting in value.items() if key != "name"}
    return {"evaluator": value["name"], "evaluator_settings": settings}


def _per(reader: Reader) -> str:
    value = reader.data.get("per", "block")
    return check_choice(PER_ALIASES.get(value, value), f"{reader.where}.per",
                        (*PER, *PER_ALIASES))


def available_spaces() -> list[str]:
    """Names of the shipped search spaces."""
    return sorted(path.stem for path in search_spaces_dir().glob("*.yaml"))


def load_space(name_or_path: str | Path | SearchSpace | None = None) -> SearchSpace:
    """A shipped space by name (None: ``default``, the space of ``search``) or a YAML file."""
    if isinstance(name_or_path, SearchSpace):
        return name_or_path
    text = str(name_or_path or DEFAULT_SPACE)
    path = Path(text).expanduser()
    if path.suffix in (".yaml", ".yml") or path.exists():
        return space_from_dict(read_yaml(path), source=str(path))
    if text in available_spaces():
        file = search_spaces_dir() / f"{text}.yaml"
        return space_from_dict(read_yaml(file), source=file.name)
    raise ConfigError("space", f"unknown search space {text!r}",
                      f"use a YAML file path or one of {', '.join(available_spaces())}")


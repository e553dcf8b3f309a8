"""The config schema: config dataclasses, the ``studio`` options generated from them, and their checks.

One schema: a field ``lr: float = option(1e-4, "learning rate", gt=0)`` becomes ``--lr`` (type
float, default 1e-4, help text) and is checked to be > 0 by :func:`validate`, for the CLI and the
Python API alike. Rules:
- a field without a default is required (``--teacher`` must be given);
- ``bool`` fields become ``--x / --no-x``; ``Literal[...]`` fields get choices; ``X | None``
  fields default to None (the help says what None means) and take an X;
- ``ge``, ``gt``, ``le``, ``lt`` bound a number;
- a nested dataclass becomes ``--<field>-<name>`` options, or plain ``--<name>`` with
  ``flatten=True``; its options form their own help group (the class docstring's first line);
- ``positional=True`` makes a positional argument.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Literal, Union, get_args, get_origin

from studio import StudioError

_BOUNDS = {"ge": ("at least", lambda v, b: v >= b), "gt": ("greater than", lambda v, b: v > b),
           "le": ("at most", lambda v, b: v <= b), "lt": ("less than", lambda v, b: v < b)}


def option(default=dataclasses.MISSING, help: str = "", *, factory=None, ge=None, gt=None, le=None, lt=None,
           positional: bool = False, flatten: bool = False):
    """A config field with its help text and bounds (no ``default`` and no ``factory``: required)."""
    meta = {"help": help, "positional": positional, "flatten": flatten,
            **{k: v for k, v in dict(ge=ge, gt=gt, le=le, lt=lt).items() if v is not None}}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _optional(tp):
    """X for ``X | None`` (and ``Optional[X]``), else None."""
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return args[0]
    return None


def _sub_prefix(f: dataclasses.Field, prefix: str) -> str:
    return prefix if f.metadata.get("flatten") else f"{prefix}{f.name}-"


def flag(prefix: str, name: str) -> str:
    return "--" + f"{prefix}{name}".replace("_", "-")


def add_config_arguments(parser, cls, prefix: str = "", defaults=None, root=None) -> None:
    """Add one option per (flattened) field of dataclass ``cls``; a nested dataclass gets its own group
    (made on ``root``, the parser itself, since argparse groups do not nest)."""
    root = root or parser
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        default = getattr(defaults, f.name) if defaults is not None else _default(f)
        if dataclasses.is_dataclass(tp):
            title = (tp.__doc__ or tp.__name__).strip().splitlines()[0].rstrip(".")
            group = root.add_argument_group(f"{title} ({tp.__name__})")
            add_config_arguments(group, tp, _sub_prefix(f, prefix), default if default is not dataclasses.MISSING
                                 else None, root)
            continue
        dest = f"{prefix}{f.name}".replace("-", "_")
        helptext = f.metadata.get("help", "")
        shown = "required" if default is dataclasses.MISSING else f"default: {default}"
        kw: dict = {"dest": dest, "help": f"{helptext} ({shown})" if helptext else f"({shown})"}
        tp = _optional(tp) or tp
        if get_origin(tp) is Literal:
            choices = get_args(tp)
            kw.update(choices=choices, type=type(choices[0]))
        elif tp is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif get_origin(tp) in (list, tuple):
            kw.update(nargs="+", type=get_args(tp)[0])
        else:
            kw["type"] = tp
        if f.metadata.get("positional"):
            kw.pop("dest")
            if default is not dataclasses.MISSING:
                kw.update(nargs="?", default=default)
            parser.add_argument(dest, metavar=f.name.upper(), **kw)
            continue
        if default is dataclasses.MISSING:
            kw["required"] = True
        else:
            kw["default"] = default
        parser.add_argument(flag(prefix, f.name), **kw)


def config_from_args(cls, ns: argparse.Namespace, prefix: str = ""):
    """Rebuild the dataclass (nested ones included) from parsed options."""
    hints = _hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            values[f.name] = config_from_args(tp, ns, _sub_prefix(f, prefix))
        else:
            values[f.name] = getattr(ns, f"{prefix}{f.name}".replace("-", "_"))
    return cls(**values)


def option_names(cls, prefix: str = "", path: str = "") -> dict[str, str]:
    """{dotted field path: its option name}, e.g. {"train.lr": "--lr", "vae_steps": "--vae-steps"}."""
    hints, names = _hints(cls), {}
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            names.update(option_names(hints[f.name], _sub_prefix(f, prefix), f"{path}{f.name}."))
        else:
            names[f"{path}{f.name}"] = f.name.upper() if f.metadata.get("positional") else flag(prefix, f.name)
    return names


def validate(config, prefix: str = "") -> None:
    """Check every field of ``config`` against the schema; the first violation is a one-line error."""
    hints = _hints(type(config))
    for f in dataclasses.fields(config):
        tp, value = hints[f.name], getattr(config, f.name)
        name = f.name.upper() if f.metadata.get("positional") else flag(prefix, f.name)
        if dataclasses.is_dataclass(tp):
            validate(value, _sub_prefix(f, prefix))
            continue
        if value is None and _optional(tp) is not None:
            continue
        tp = _optional(tp) or tp
        if get_origin(tp) is Literal and value not in get_args(tp):
            raise StudioError(f"{name} must be one of {', '.join(map(str, get_args(tp)))}; got {value!r}")
        for key, (words, ok) in _BOUNDS.items():
            bound = f.metadata.get(key)
            if bound is None:
                continue
            items = value if isinstance(value, (list, tuple)) else [value]
            for v in items:
                if not ok(v, bound):
                    raise StudioError(f"{name} must be {words} {bound}, got {v}")

"""Generate argparse options from config dataclasses, and build configs back from them.

One schema: a field ``lr: float = 1e-4`` becomes ``--lr`` (type float, default 1e-4);
``bool`` fields become ``--x / --no-x``; ``Literal[...]`` fields get choices; a nested
dataclass field becomes ``--<field>-<name>`` options, or plain ``--<name>`` with
``metadata={"flatten": True}``; ``metadata={"positional": True}`` makes a positional argument
and ``metadata={"help": ...}`` documents the option.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Literal, get_args, get_origin


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def add_config_arguments(parser: argparse.ArgumentParser, cls, prefix: str = "", defaults=None) -> None:
    """Add one option per (flattened) field of dataclass ``cls``."""
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        default = getattr(defaults, f.name) if defaults is not None else _default(f)
        if dataclasses.is_dataclass(tp):
            sub = prefix if f.metadata.get("flatten") else f"{prefix}{f.name}-"
            add_config_arguments(parser, tp, sub, default if default is not dataclasses.MISSING else None)
            continue
        dest = f"{prefix}{f.name}".replace("-", "_")
        helptext = f.metadata.get("help", "")
        kw: dict = {"dest": dest, "help": (helptext + " " if helptext else "") + (
            "" if default is dataclasses.MISSING else f"(default: {default})")}
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
        parser.add_argument("--" + f"{prefix}{f.name}".replace("_", "-"), **kw)


def config_from_args(cls, ns: argparse.Namespace, prefix: str = ""):
    """Rebuild the dataclass (nested ones included) from parsed options."""
    hints = _hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            sub = prefix if f.metadata.get("flatten") else f"{prefix}{f.name}-"
            values[f.name] = config_from_args(tp, ns, sub)
        else:
            values[f.name] = getattr(ns, f"{prefix}{f.name}".replace("-", "_"))
    return cls(**values)

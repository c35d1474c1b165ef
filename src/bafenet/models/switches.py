"""Type checks of model switches: each value against its hint in the zoo builder's signature.

``build_model`` calls :func:`check_switches`, so ``bafenet info`` switches and a training
config's ``model.kwargs`` are refused the same way, in one line naming the switch.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from bafenet.models.backbone import ModelOptionError


def switch_types(name: str) -> dict[str, Any]:
    """The type hint of every switch of zoo model ``name``, read from the builders' signatures."""
    from bafenet.models import zoo  # zoo imports this module

    if name not in zoo.MODELS:
        return {}  # build_model names the valid models
    builders = [zoo._detector] + ([zoo._bafenet] if name.startswith("bafenet") else [])
    hints = {key: hint for builder in builders for key, hint in typing.get_type_hints(builder).items()}
    return {key: hints[key] for key in zoo.model_options(name) if key in hints}


def _describe(hint: Any) -> str:
    """``hint`` in words: "true or false", "an integer >= 0", "one of fixed, learned", ..."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(hint)))
    words = {bool: "true or false", int: "an integer >= 0", float: "a number", str: "a string"}
    words |= {type(None): "null", Path: "a file path", Sequence: "a list"}
    return words.get(typing.get_origin(hint) or hint, str(hint))


def _matches(hint: Any, value: Any) -> bool:
    """Whether ``value`` (parsed YAML) fits the type hint ``hint`` (integer switches count things)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(arg, value) for arg in args)
    if origin is Literal:
        return value in args
    if origin in (Sequence, list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and len(args) != len(value):
            return False
        items = args if origin is tuple else args * len(value)
        return all(_matches(arg, item) for arg, item in zip(items, value, strict=False))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint in (str, Path):
        return isinstance(value, str)
    if hint is type(None):
        return value is None
    return True  # a hint this check does not know: the builder itself judges the value


def check_switches(name: str, options: dict[str, Any]) -> None:
    """Refuse a switch whose value does not fit its type in the builder's signature.

    Unknown names are left to :func:`bafenet.models.zoo.build_model`, which lists the valid ones.
    """
    hints = switch_types(name)
    for key, value in options.items():
        if key in hints and not _matches(hints[key], value):
            raise ModelOptionError(f"model switch {key}={value!r}: expected {_describe(hints[key])}")

"""Parameters declared once: each field of a spec dataclass carries its default, its description and
its allowed range, and one function checks every range.

A spec (``WorldSpec``, ``SplitSpec``, ``TrainSpec``, ...) is a frozen dataclass whose fields are
declared with :func:`param`; its ``__post_init__`` calls :func:`check_ranges`, then checks whatever
relates several fields. The Dagster resources and run-config classes are generated from the same
fields (``adrel_pipeline.defs.shared.params``), so a default, a description or a bound is written in
one place and the Launchpad, the library and the error messages agree.

An out-of-range value raises the spec's error class (a ``ValueError``) with one message shape:
``lr=0.0 is out of range: must be a number in (0, 1]``.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any


@dataclass(frozen=True)
class Range:
    """The values a parameter may take: an integer or a finite number, optionally bounded."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    hint: str = ""  # why the bound is what it is, appended to the error
    choices: tuple[str, ...] = ()  # a string parameter: one of these names

    def contains(self, value: Any) -> bool:
        if self.choices:
            return isinstance(value, str) and value in self.choices
        if isinstance(value, bool) or not isinstance(value, Integral if self.integer else Real):
            return False
        if not self.integer and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def allowed(self) -> str:
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        kind = "an integer" if self.integer else "a number"
        low, high = _show(self.low), _show(self.high)
        if self.low is None and self.high is None:
            return kind
        if self.high is None:
            return f"{kind} {'>' if self.low_open else '>='} {low}"
        if self.low is None:
            return f"{kind} {'<' if self.high_open else '<='} {high}"
        return f"{kind} in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"


def _show(bound: float | None) -> str:
    return str(bound) if bound is None or isinstance(bound, int) else f"{bound:g}"


def param(default: Any, description: str, *, integer: bool = False, low: float | None = None,
          high: float | None = None, low_open: bool = False, high_open: bool = False, hint: str = "") -> Any:
    """A spec field: its default, what it means, and the range :func:`check_ranges` enforces."""
    return dataclasses.field(default=default, metadata={
        "description": description,
        "range": Range(low=low, high=high, low_open=low_open, high_open=high_open, integer=integer, hint=hint),
    })


def choice(default: str, description: str, choices: tuple[str, ...]) -> Any:
    """A string spec field that must be one of ``choices``."""
    if default not in choices:
        raise ValueError(f"default {default!r} is not one of {choices}")
    return dataclasses.field(default=default, metadata={"description": description,
                                                        "range": Range(choices=tuple(choices))})


def range_of(spec_type: type, name: str) -> Range:
    return next(f.metadata["range"] for f in dataclasses.fields(spec_type) if f.name == name)


def out_of_range(name: str, value: Any, allowed: str) -> str:
    return f"{name}={value!r} is out of range: must be {allowed}"


def check_ranges(spec: Any, error: type[ValueError] = ValueError) -> None:
    """Raise ``error`` naming the first field whose value is outside its declared range."""
    for f in dataclasses.fields(spec):
        bounds = f.metadata.get("range")
        value = getattr(spec, f.name)
        if bounds is not None and not bounds.contains(value):
            raise error(out_of_range(f.name, value, bounds.allowed()) + bounds.hint)


@dataclass(frozen=True)
class Declaration:
    name: str
    type: type
    default: Any
    description: str
    allowed: str


def declarations(spec_type: type, exclude: tuple[str, ...] = ()) -> list[Declaration]:
    """The declared fields of ``spec_type`` (for generating config schemas and docs)."""
    hints = typing.get_type_hints(spec_type)
    return [
        Declaration(f.name, hints[f.name], f.default, f.metadata["description"], f.metadata["range"].allowed())
        for f in dataclasses.fields(spec_type)
        if "range" in f.metadata and f.name not in exclude
    ]

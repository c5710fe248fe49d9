"""Dagster run config and resources generated from the library's parameter declarations
(:mod:`adrel_pipeline.params`): one declaration per parameter, and one place that turns an
out-of-range value into a failure that is not retried."""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import dagster as dg
from pydantic import Field, create_model

from adrel_pipeline.params import declarations

T = TypeVar("T")


def spec_fields(spec_type: type, exclude: tuple[str, ...] = (), defaults: Any = None) -> dict[str, Any]:
    """Pydantic fields for ``spec_type``'s declared parameters; defaults from ``defaults`` (a spec
    instance) when given, so a deployment's values show as the Launchpad's defaults."""
    return {
        d.name: (d.type, Field(default=d.default if defaults is None else getattr(defaults, d.name),
                               description=f"{d.description} Allowed: {d.allowed}."))
        for d in declarations(spec_type, exclude)
    }


def build_spec(spec_type: type[T], values: dict[str, Any]) -> T:
    """``spec_type(**values)``; an out-of-range value fails the step at once (retrying cannot fix it)."""
    try:
        return spec_type(**values)
    except ValueError as err:
        raise dg.Failure(str(err), allow_retries=False) from err


class SpecConfig(dg.Config):
    """Run config of one stage; :meth:`spec` gives the validated spec."""

    spec_type: ClassVar[type]

    def spec(self, **extra: Any):
        return build_spec(self.spec_type, {**self.model_dump(), **extra})


def config_for(spec_type: type, name: str, exclude: tuple[str, ...] = ("seed",)) -> type[SpecConfig]:
    """A ``dg.Config`` class with ``spec_type``'s declared fields (the seed comes from the world)."""
    config = create_model(name, __base__=SpecConfig, **spec_fields(spec_type, exclude))
    config.spec_type = spec_type
    return config


class SpecsConfig(dg.Config):
    """Run config of a stage that several specs parametrise; :meth:`spec` gives one of them, validated."""

    spec_types: ClassVar[tuple[type, ...]]

    def spec(self, spec_type: type[T], **extra: Any) -> T:
        import dataclasses

        names = {f.name for f in dataclasses.fields(spec_type)}
        return build_spec(spec_type, {k: v for k, v in self.model_dump().items() if k in names} | extra)


def config_for_specs(name: str, *spec_types: type, exclude: tuple[str, ...] = ("seed",)) -> type[SpecsConfig]:
    """A ``dg.Config`` class with the declared fields of every spec in ``spec_types`` (no two may
    declare the same name)."""
    fields: dict[str, Any] = {}
    for spec_type in spec_types:
        own = spec_fields(spec_type, exclude)
        clash = sorted(set(own) & set(fields))
        if clash:
            raise ValueError(f"{name}: {spec_type.__name__} declares {clash} again")
        fields |= own
    config = create_model(name, __base__=SpecsConfig, **fields)
    config.spec_types = tuple(spec_types)
    return config

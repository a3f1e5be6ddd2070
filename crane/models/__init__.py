"""Model registry: every module in this package that defines a `@register`ed class is a model.

Adding a model is adding one file; nothing here lists them by hand.
"""

from __future__ import annotations

import importlib
import pkgutil

from crane.models.base import Recommender, TrainData

_REGISTRY: dict[str, type[Recommender]] = {}
_NOT_MODELS = {"base", "hyperparameters", "layers"}


def register(name: str):
    """Class decorator: make a Recommender available under `name`."""

    def decorate(cls: type[Recommender]) -> type[Recommender]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"model name {name!r} registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name not in _NOT_MODELS and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def available() -> list[str]:
    _discover()
    return sorted(_REGISTRY)


def shipped() -> list[str]:
    """The registered models that live in this package (not ones a test or a user added)."""
    return [name for name in available() if _REGISTRY[name].__module__.startswith(f"{__name__}.")]


def get(name: str) -> type[Recommender]:
    _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None


__all__ = ["Recommender", "TrainData", "available", "get", "register", "shipped"]

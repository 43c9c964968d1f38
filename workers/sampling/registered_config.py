"""Registered config for a diffusers scheduler subclass that adds parameters to its parent's.

diffusers learns a scheduler's configuration from the signature of its ``__init__``:
``@register_to_config`` records every parameter the signature names, and ``from_config`` passes
exactly those. A subclass ``__init__(self, *, eta=0.0, **kwargs)`` that forwards the rest to its
parent would hide the parent's parameters: ``from_config`` would drop them (with a warning) and
build the parent with its defaults. ``extends_config(Parent)`` gives the subclass's ``__init__``
the full signature (the parent's parameters, then the subclass's keyword-only ones), so both see
all of them and the parent's defaults are not restated here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

Init = TypeVar("Init", bound=Callable[..., None])


def extends_config(parent: type[Any]) -> Callable[[Init], Init]:
    """Decorates a subclass ``__init__`` (below ``@register_to_config``) whose own keyword-only
    parameters are added to ``parent.__init__``'s and whose ``*args, **kwargs`` go to the parent."""
    inherited = list(inspect.signature(parent.__init__).parameters.values())

    def publish(init: Init) -> Init:
        own = [
            p for p in inspect.signature(init).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY
        ]
        clash = sorted({p.name for p in own} & {p.name for p in inherited})
        if clash:
            raise TypeError(f"{init.__qualname__} redefines {parent.__name__} parameters {clash}")
        init.__signature__ = inspect.Signature([*inherited, *own])  # type: ignore[attr-defined]
        return init

    return publish

"""Name → factory tables with helpful errors: the network registry, and the helper the loss registry shares.

A factory is any callable that returns an ``nn.Module`` (usually the class itself). Method packages
add their networks with :func:`register_network`; configs then name them::

    @register_network("my_net")
    class MyNet(nn.Module): ...

    net = build_network("my_net", base_filters=8)
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from torch import nn

from brats.errors import BratsInputError

F = TypeVar("F", bound=Callable[..., Any])

#: Registered networks: name → factory returning an ``nn.Module`` that maps (B, C, X, Y, Z) to logits.
NETWORKS: dict[str, Callable[..., nn.Module]] = {}


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_arguments(kind: str, name: str, factory: Callable[..., Any], kwargs: Mapping[str, Any]) -> None:
    """Raise if ``kwargs`` cannot be passed to ``factory``: unknown or missing arguments.

    Args:
        kind: what the table holds, for the message (``"network"``, ``"loss"``).
        name: the registry name, for the message.
        factory: the callable that ``kwargs`` are meant for.
        kwargs: the keyword arguments from the config.

    Raises:
        BratsInputError: e.g. ``network 'isensee_unet': unexpected argument 'dropuot' (did you mean
            'dropout'?); valid arguments: in_channels, num_classes, ...``.
    """
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):  # builtins without a signature: let the call itself fail
        return
    params = sig.parameters
    valid = [p for p, v in params.items() if v.kind in (v.POSITIONAL_OR_KEYWORD, v.KEYWORD_ONLY)]
    if not any(v.kind is v.VAR_KEYWORD for v in params.values()):
        for key in kwargs:
            if key not in valid:
                raise BratsInputError(
                    f"{kind} {name!r}: unexpected argument {key!r}{_suggest(key, valid)}; "
                    f"valid arguments: {', '.join(valid) or '(none)'}")
    missing = [p for p in valid if params[p].default is inspect.Parameter.empty and p not in kwargs]
    if missing:
        raise BratsInputError(f"{kind} {name!r}: missing required argument {missing[0]!r}")


def build_from(kind: str, table: Mapping[str, Callable[..., Any]], name: str,
               kwargs: Mapping[str, Any]) -> Any:
    """Look ``name`` up in ``table`` and call its factory with ``kwargs``, turning mistakes into
    :class:`BratsInputError` messages that name the ``kind``, the entry and the valid choices."""
    if name not in table:
        raise BratsInputError(f"unknown {kind} {name!r}{_suggest(name, list(table))}; "
                              f"expected one of {', '.join(sorted(table))}")
    factory = table[name]
    check_arguments(kind, name, factory, kwargs)
    try:
        return factory(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, BratsInputError):
            raise
        raise BratsInputError(f"{kind} {name!r}: {exc}") from exc


def register_network(name: str) -> Callable[[F], F]:
    """Decorator adding a network factory (usually an ``nn.Module`` class) to :data:`NETWORKS`.

    Raises:
        ValueError: ``name`` is already taken by a different factory (a programming error).
    """
    def decorator(factory: F) -> F:
        if NETWORKS.get(name, factory) is not factory:
            raise ValueError(f"network {name!r} is already registered to {NETWORKS[name]!r}")
        NETWORKS[name] = factory
        return factory
    return decorator


def build_network(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered network ``name`` with keyword arguments ``kwargs``.

    Raises:
        BratsInputError: unknown name (the message lists the registered ones), unknown or missing
            argument, or an argument value the network rejects.

    Example:
        >>> net = build_network("isensee_unet", base_filters=8)
    """
    return build_from("network", NETWORKS, name, kwargs)

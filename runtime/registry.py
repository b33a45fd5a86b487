"""A name -> class registry that fails loudly: what :mod:`lrf.runtime.backends` registers its
backends with, and ``lrf.exporter.targets`` its export targets. No torch, no engine."""

from __future__ import annotations


def register_class(registry: dict[str, type], kind: str, name: str):
    """Class decorator: set ``cls.name`` and make ``cls`` available in ``registry`` as ``name``;
    ValueError when another class already is (``kind`` names what it registers in the message).
    Registering the same class again is a no-op (a module imported twice)."""
    def deco(cls):
        if name in registry and registry[name] is not cls:
            raise ValueError(f"{kind} {name!r} registered twice ({registry[name]} and {cls})")
        cls.name = name
        registry[name] = cls
        return cls
    return deco

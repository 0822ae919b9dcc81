"""The tables of the configuration, declared as classes: each annotated attribute is
a key, with its default.  Not dataclasses: ``mailflow ingest`` (an MTA runs it for
every message) would import ``inspect`` and compile methods for them, a third of its
start."""

from __future__ import annotations

from typing import Any


class Fresh:
    """A default made anew for each instance: a list, a dict, a nested table."""

    def __init__(self, make: Any):
        self.make = make


def field(*, default_factory: Any) -> Any:
    return Fresh(default_factory)


class Section:
    """A table of the configuration: its keys are the annotated attributes of the
    class (and of the classes it extends), each with its default."""

    def __init__(self, **values: Any):
        keys = self.keys()
        for name in keys:
            default = getattr(type(self), name)
            setattr(self, name, default.make() if isinstance(default, Fresh) else default)
        for name, value in values.items():
            if name not in keys:
                raise TypeError(f"{type(self).__name__} has no key {name!r}")
            setattr(self, name, value)

    @classmethod
    def keys(cls) -> list[str]:
        return [name for klass in reversed(cls.__mro__)
                for name in vars(klass).get("__annotations__", {})]

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"

"""Typed configs: a mapping of settings (a run spec, its ``train`` budget, a method's ``method_args``) as a
frozen dataclass whose field types say what is allowed, with a default and one line of help per field
(peft's ``LoraConfig`` style). Why dataclasses and not pydantic: ``docs/configs.md``.

A field's annotation is its rule, checked by :meth:`Config.from_mapping` before any work:

* ``int``, ``float``, ``str``, ``bool``: that type — ``True`` is not an int, an int is a float, nothing is
  converted (the resolved values, and so a run's identity, are the values as written);
* ``Literal[...]``: one of those values;
* ``Annotated[int | float, Interval(...)]``: a number in the interval (``PositiveInt``, ``Fraction``, ...);
* ``X | None``: ``X`` or null; ``Mapping[str, Any]``: a mapping; ``Any``: whatever :meth:`Config.check` allows.

A refusal is one line with the key, the value and what is allowed (``trp_threshold=2 is outside the
allowed range (0, 1]``, ``oialr_type='batch'; allowed: step, epoch``); an unknown key lists the allowed ones.
Rules across fields (``cut_until`` after ``delay``, exactly one of two sizes) are short explicit checks in the
config's :meth:`Config.check`.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import types
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin, get_type_hints

__all__ = ["Config", "Interval", "setting", "PositiveInt", "NonNegativeInt", "Fraction", "NonNegativeFloat",
           "FisherLabels"]


@dataclasses.dataclass(frozen=True)
class Interval:
    """The numbers a field allows: ``low`` / ``high`` bounds (``None``: unbounded), open or closed, and
    ``finite`` (no ``inf``). ``nan`` is outside every bounded interval."""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    finite: bool = False

    def admits(self, v: float) -> bool:
        if self.finite and not math.isfinite(v):
            return False
        if self.low is not None and not (v > self.low if self.low_open else v >= self.low):
            return False
        return self.high is None or (v < self.high if self.high_open else v <= self.high)

    def __str__(self) -> str:
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


PositiveInt = Annotated[int, Interval(low=1)]
NonNegativeInt = Annotated[int, Interval(low=0)]
#: a share of something that cannot be empty: (0, 1]
Fraction = Annotated[float, Interval(0, 1, low_open=True)]
NonNegativeFloat = Annotated[float, Interval(low=0)]
#: which labels a Fisher is taken with (:func:`lowrank.fisher.diagonal_fisher`)
FisherLabels = Literal["true", "empirical"]


def setting(default: Any, help: str) -> Any:
    """A config field: its default and one line of help (a mutable default is copied per instance)."""
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


# ------------------------------------------------------------------------------------------ type rules
def _interval(tp: Any) -> Interval | None:
    """The :class:`Interval` of an ``Annotated`` type (``None``: it has none)."""
    if get_origin(tp) is not Annotated:
        return None
    return next((m for m in get_args(tp)[1:] if isinstance(m, Interval)), None)


def _noun(tp: Any) -> str:
    """What ``tp`` allows, as a noun phrase ("a positive int", "a number in (0, 1]", "a string")."""
    iv = _interval(tp)
    if iv is not None:
        kind = "an int" if get_args(tp)[0] is int else f"a {'finite ' if iv.finite else ''}number"
        if iv.low is not None and iv.high is not None:
            return f"{kind} in {iv}"
        if kind == "an int" and iv.low == 1 and not iv.low_open:
            return "a positive int"
        if iv.low is not None:
            return f"{kind} {'>' if iv.low_open else '≥'} {iv.low:g}"
        return f"{kind} {'<' if iv.high_open else '≤'} {iv.high:g}"
    if get_origin(tp) is Annotated:
        return _noun(get_args(tp)[0])
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(map(repr, get_args(tp)))
    origin = get_origin(tp) or tp
    return {int: "an int", float: "a number", str: "a string", bool: "true or false", Mapping: "a mapping",
            os.PathLike: "a path"}.get(origin, f"a {getattr(origin, '__name__', origin)}")


def _admits(tp: Any, v: Any) -> bool:
    origin = get_origin(tp)
    if tp is Any:
        return True
    if origin is Annotated:
        base, *meta = get_args(tp)
        return _admits(base, v) and all(m.admits(v) for m in meta if isinstance(m, Interval))
    if origin in (Union, types.UnionType):
        return any(_admits(a, v) for a in get_args(tp))
    if origin is Literal:
        return any(v == a and type(v) is type(a) for a in get_args(tp))
    if tp is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if tp is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if tp is type(None):
        return v is None
    return isinstance(v, origin or tp)


def _refusal(key: str, v: Any, tp: Any, quote: bool) -> str:
    """The one-line message for a value ``v`` of ``key`` that ``tp`` does not allow."""
    arms = list(get_args(tp)) if get_origin(tp) in (Union, types.UnionType) else [tp]
    null = type(None) in arms
    arms = [a for a in arms if a is not type(None)]
    if len(arms) == 1 and get_origin(arms[0]) is Literal:
        choices = [repr(c) if quote else str(c) for c in get_args(arms[0])] + (["null"] if null else [])
        return f"{key}={v!r}; allowed: {', '.join(choices)}"
    iv = _interval(arms[0]) if len(arms) == 1 else None
    if iv is not None and iv.low is not None and iv.high is not None:
        return f"{key}={v!r} is outside the allowed range {iv}" + (" or null" if null else "")
    return f"{key}={v!r} must be " + " or ".join([_noun(a) for a in arms] + (["null"] if null else []))


# ------------------------------------------------------------------------------------------ the base class
@dataclasses.dataclass(frozen=True)
class Config:
    """Base of the typed configs (module docstring); a subclass is a ``@dataclass(frozen=True)`` whose
    fields are made with :func:`setting`. Build one with :meth:`from_mapping`; read its values as
    attributes, or as the dict of every key (defaults filled in) with :meth:`to_dict`."""

    #: how the unknown-key message names this mapping (``str.format`` with the context of ``from_mapping``)
    label: ClassVar[str] = "config"
    #: the word for its keys in that message
    keys_word: ClassVar[str] = "keys"
    #: written before a key in a value's message (``train.`` for ``train.lr=-1 ...``)
    key_prefix: ClassVar[str] = ""
    #: whether the allowed choices of a ``Literal`` are quoted in messages
    quote_choices: ClassVar[bool] = False

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every key with its default (``None`` also for a key that must be given: its type refuses null)."""
        return {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(cls)}

    @classmethod
    def help(cls) -> dict[str, str]:
        """Every key with its one line of help."""
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], **context: Any):
        """Refuse unknown keys, then each value its field's type does not allow (in field order), then
        what :meth:`check` refuses; ``context`` (e.g. the method's registered name) reaches the label and
        :meth:`check`."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"{cls.label.format(**context)}: unknown {cls.keys_word} {unknown}; allowed: "
                             f"{sorted(names)}")
        values = {**cls.defaults(), **data}
        for name in names:
            cls.check_value(name, values[name])
        cfg = cls(**values)
        cfg.check(given=frozenset(data), **context)
        return cfg

    @classmethod
    def check_value(cls, name: str, value: Any) -> None:
        """Refuse ``value`` for key ``name`` unless its field's type allows it (one line: key, value, what is
        allowed)."""
        tp = _hints(cls)[name]
        if not _admits(tp, value):
            raise ValueError(_refusal(cls.key_prefix + name, value, tp, cls.quote_choices))

    def check(self, *, given: frozenset[str], **context: Any) -> None:
        """Rules the field types cannot state (subclasses); ``given``: the keys the mapping set."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """Field name → its annotation, resolved (``from __future__ import annotations`` makes them strings)."""
    hints = get_type_hints(cls, include_extras=True)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


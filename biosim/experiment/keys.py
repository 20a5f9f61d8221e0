"""Checking the tables of an experiment specification (TOML tables as dicts).

Every problem is reported as a :class:`~biosim.SpecError` naming the dotted key
(``devices.mri.te``), the offending value and what was expected.  Limits of an
instrument are not written here: a device builds its instrument objects, whose
:class:`~biosim.ParameterError` :func:`instrument_errors` turns into a
SpecError naming the key (one source of truth for every limit).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping

from .._core.errors import ParameterError, SpecError

__all__ = ["require", "set_default", "check_keys", "instrument_errors", "SpecError"]


def require(table: dict, key: str, where: str, kind, check=None, expected: str = ""):
    """Check ``table[key]`` has type ``kind`` (ints are accepted and converted
    where a float is expected; floats must be finite) and satisfies ``check``;
    store and return it.

    Raises
    ------
    SpecError
        ``where.key`` is missing, of the wrong type, not finite or fails ``check``.
    """
    if key not in table:
        raise SpecError(f"{where}.{key} is missing: expected {expected or kind.__name__}")
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise SpecError(
            f"{where}.{key} = {value!r} has the wrong type: expected {expected or kind.__name__}"
        )
    if kind is float and not math.isfinite(value):
        raise SpecError(
            f"{where}.{key} = {value!r} is invalid: expected a finite number"
            + (f" ({expected})" if expected else "")
        )
    if check is not None and not check(value):
        raise SpecError(f"{where}.{key} = {value!r} is invalid: expected {expected}")
    table[key] = value
    return value


def set_default(table: dict, key: str, where: str, default, kind, check=None, expected=""):
    """:func:`require` with ``default`` filled in when the key is absent."""
    table.setdefault(key, default)
    return require(table, key, where, kind, check, expected)


def check_keys(table: dict, allowed, where: str) -> None:
    """SpecError for a key of ``table`` not in ``allowed`` (a typo is never ignored)."""
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise SpecError(
            f"{where}.{unknown[0]} is not a known key: expected one of {sorted(allowed)}"
        )


@contextlib.contextmanager
def instrument_errors(where: str, table: dict, keys: Mapping[str, str] = {}) -> Iterator[None]:
    """Turn a :class:`~biosim.ParameterError` raised while building an instrument
    into a SpecError naming the TOML key.

    Parameters
    ----------
    where : str
        Dotted path of the table (``devices.mri``).
    table : dict
        The table, whose value of the key is quoted in the message.
    keys : mapping
        Instrument argument name to TOML key where they differ
        (``{"range_v": "range"}``); other names are the key itself.
    """
    try:
        yield
    except ParameterError as err:
        key = keys.get(err.name, err.name)
        value = table.get(key, err.value)
        raise SpecError(f"{where}.{key} = {value!r} is invalid: expected {err.expected}") from err

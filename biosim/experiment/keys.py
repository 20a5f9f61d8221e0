"""Helpers for validating experiment specifications (TOML tables as dicts).

Every problem is reported as a :class:`~biosim.SpecError` naming the dotted key
(``devices.mri.te``), the offending value and what was expected.
"""

from __future__ import annotations

from .._core.errors import SpecError

__all__ = ["require", "set_default", "check_keys", "get_path", "set_path", "SpecError"]


def require(table: dict, key: str, where: str, kind, check=None, expected: str = ""):
    """Check ``table[key]`` has type ``kind`` (ints are accepted and converted
    where a float is expected) and satisfies ``check``; store and return it.

    Raises
    ------
    SpecError
        ``where.key`` is missing, of the wrong type or fails ``check``.
    """
    if key not in table:
        raise SpecError(f"{where}.{key} is missing: expected {expected or kind.__name__}")
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise SpecError(f"{where}.{key} = {value!r} has the wrong type: expected "
                        f"{expected or kind.__name__}")
    if check is not None and not check(value):
        raise SpecError(f"{where}.{key} = {value!r} is invalid: expected {expected}")
    table[key] = value
    return value


def set_default(table: dict, key: str, where: str, default, kind, check=None, expected=""):
    """:func:`require` with ``default`` filled in when the key is absent."""
    table.setdefault(key, default)
    return require(table, key, where, kind, check, expected)


def get_path(spec: dict, dotted: str):
    """The value at a dotted key path (``"devices.mri.te"``)."""
    node = spec
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise SpecError(f"{dotted} does not exist in the specification")
        node = node[part]
    return node


def set_path(spec: dict, dotted: str, value) -> None:
    """Set the value at a dotted key path, creating intermediate tables."""
    parts = dotted.split(".")
    node = spec
    for part in parts[:-1]:
        if part not in node:
            node[part] = {}
        if not isinstance(node[part], dict):
            raise SpecError(f"{dotted}: {part!r} is not a table")
        node = node[part]
    node[parts[-1]] = value


def check_keys(table: dict, allowed, where: str) -> None:
    """SpecError for a key of ``table`` not in ``allowed`` (a typo is never ignored)."""
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise SpecError(f"{where}.{unknown[0]} is not a known key: expected one of "
                        f"{sorted(allowed)}")

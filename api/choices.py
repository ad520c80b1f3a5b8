"""Reading an enumerated field of a configuration file or a database row."""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

_E = TypeVar("_E", bound=StrEnum)


def choice(kind: type[_E], value: object, where: str, error: type[ValueError]) -> _E:
    """``value`` as a member of ``kind``; otherwise ``error``, naming ``where`` (the file, entry
    and field) and every member it could have been."""
    try:
        return kind(str(value))
    except ValueError:
        raise error(f"{where} must be one of {', '.join(kind)}, not {value!r}") from None

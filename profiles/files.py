"""Reading TOML files into validated models, with the file and key in every error."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration or profile file that cannot be used; the message names file and key."""


def describe(err: ValidationError, source: str) -> str:
    lines = []
    for item in err.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"{source}: {where}: {item['msg']}")
    return "\n".join(lines)


def read_toml(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None


def load_model(path: Path, model: type[M]) -> M:
    """Parse ``path`` into ``model``; any problem becomes a :class:`ConfigError`."""
    data = read_toml(path)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(describe(err, str(path))) from None

"""The registry of upload formats: Zayton's reference format and installed plug-ins.

A plug-in is any installed package that declares an entry point in the group
``zayton.monitoring``, naming a class (called with no arguments) or an object that satisfies
:class:`api.monitoring.formats.UploadFormat`::

    [project.entry-points."zayton.monitoring"]
    fujian = "zayton_fujian.format:FujianFormat"

A plug-in that does not load is logged and left out; the others still work.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

from api.monitoring.errors import FormatError
from api.monitoring.formats import UploadFormat
from api.monitoring.reference import REFERENCE

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "zayton.monitoring"


def _plugins() -> list[UploadFormat]:
    found: list[UploadFormat] = []
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded: object = entry.load()
            plugin = loaded() if isinstance(loaded, type) else loaded
        except (ImportError, AttributeError, TypeError) as err:
            log.error("upload format %s (%s) does not load: %s", entry.name, entry.value, err)  # noqa: TRY400
            continue
        if not isinstance(plugin, UploadFormat):
            log.error("upload format %s (%s) is not an UploadFormat", entry.name, entry.value)
            continue
        found.append(plugin)
    return found


def formats() -> dict[str, UploadFormat]:
    """Every upload format by name: the reference format and those of installed plug-ins."""
    found: dict[str, UploadFormat] = {REFERENCE.name: REFERENCE}
    for plugin in _plugins():
        if plugin.name in found:
            raise FormatError(f"two upload formats are named {plugin.name!r}")
        found[plugin.name] = plugin
    return found


def get_format(name: str) -> UploadFormat:
    known = formats()
    if name not in known:
        raise FormatError(f"no upload format {name!r}; there are {', '.join(sorted(known))}")
    return known[name]

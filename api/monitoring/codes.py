"""Data-item codes of the online monitoring of key energy-using units (重点用能单位能耗在线监测).

Every data item a unit uploads carries a 16-digit code of seven fields::

    process (2) · process unit (2) · key equipment type (2) · equipment number (2) ·
    data type (2) · energy carrier / category (4) · use (2)

and travels with three attributes that are not part of the code: its frequency (0 real-time,
1 day, 2 month), its source (4 instrument, 5 manual entry) and, for instrument items, the
metering level of its meters (GB 17167: 1 site boundary, 2 main secondary, 3 main equipment).

The public descriptions of the national specifications (the NHJC series of the National Energy
Conservation Center, GB/T 38692-2020) fix this structure; the values of the category field come
from GB/T 29870 (能源分类与代码), whose table is not public. The values below are therefore
Zayton's own defaults, not the standard's: every one of them can be replaced per unit, per
carrier or per data item (docs/monitoring.md says where).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import ClassVar, Self

from api.monitoring.errors import CodeError


class Frequency(IntEnum):
    REALTIME = 0
    """Every 15 minutes (a province may relax it to 30 or 60)."""
    DAY = 1
    MONTH = 2


class Source(IntEnum):
    INSTRUMENT = 4
    MANUAL = 5


class MeteringLevel(IntEnum):
    """GB 17167: where in the unit a meter sits."""

    BOUNDARY = 1
    SECONDARY = 2
    EQUIPMENT = 3


_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True, slots=True)
class ItemCode:
    """A 16-digit data-item code, field by field; ``str()`` gives the code."""

    process: str
    process_unit: str
    equipment_type: str
    equipment_number: str
    data_type: str
    category: str
    use: str

    WIDTHS: ClassVar[dict[str, int]] = {
        "process": 2,
        "process_unit": 2,
        "equipment_type": 2,
        "equipment_number": 2,
        "data_type": 2,
        "category": 4,
        "use": 2,
    }

    def __post_init__(self) -> None:
        for name, width in self.WIDTHS.items():
            value = getattr(self, name)
            if len(value) != width or not _DIGITS.fullmatch(value):
                raise CodeError(f"{name} must be {width} digits, not {value!r}")

    def __str__(self) -> str:
        return "".join(getattr(self, f.name) for f in fields(self))

    @classmethod
    def parse(cls, code: str) -> Self:
        if len(code) != 16 or not _DIGITS.fullmatch(code):
            raise CodeError(f"a data-item code is 16 digits, not {code!r}")
        parts: dict[str, str] = {}
        at = 0
        for name, width in cls.WIDTHS.items():
            parts[name] = code[at : at + width]
            at += width
        return cls(**parts)


WHOLE_UNIT = "00"
"""Process, process unit, equipment type and number of an item about the unit as a whole."""


class DataType:
    """Zayton's default data-type field values."""

    CONSUMED = "01"
    """Physical quantity consumed (实物量: kWh, m³, t)."""
    STANDARD_COAL = "02"
    """Standard coal equivalent, tce (折标量)."""
    OUTPUT = "03"
    """Production output (产品产量)."""
    DELIVERED = "04"
    """Energy delivered out of the unit (electricity exported to the grid)."""


class Use:
    """Zayton's default use field values: the energy-use categories of GB/T 2589."""

    WHOLE_UNIT = "00"
    MAIN_PRODUCTION = "01"
    """主要生产系统."""
    AUXILIARY_PRODUCTION = "02"
    """辅助生产系统."""
    SUBSIDIARY_PRODUCTION = "03"
    """附属生产系统."""


@dataclass(frozen=True, slots=True)
class Category:
    code: str
    name: str
    data_type: str = DataType.CONSUMED


CATEGORIES: dict[str, Category] = {
    "electricity": Category("2100", "电力（外购）electricity bought"),
    "electricity_export": Category(
        "2110", "电力（输出）electricity delivered to the grid", DataType.DELIVERED
    ),
    "pv": Category("2120", "光伏发电 on-site photovoltaic generation"),
    "natural_gas": Category("3100", "天然气 natural gas"),
    "steam": Category("4100", "蒸汽 steam"),
    "heat": Category("4200", "热力 heat"),
    "raw_coal": Category("5100", "原煤 raw coal"),
    "diesel": Category("6100", "柴油 diesel"),
    "gasoline": Category("6200", "汽油 gasoline"),
    "water": Category("7100", "新水 new water"),
    "product": Category("9000", "产品产量 production output", DataType.OUTPUT),
}
"""Zayton's default energy category per carrier (not GB/T 29870's values: see the module)."""

TOTAL_CATEGORY = Category("1000", "综合能源消费量 total energy consumption", DataType.STANDARD_COAL)

TOTAL_CODE = ItemCode(
    WHOLE_UNIT,
    WHOLE_UNIT,
    WHOLE_UNIT,
    WHOLE_UNIT,
    TOTAL_CATEGORY.data_type,
    TOTAL_CATEGORY.code,
    Use.WHOLE_UNIT,
)
"""Default code of the unit's total comprehensive energy consumption, in tce."""


def default_code(carrier: str) -> ItemCode:
    """The default code of a boundary meter's item for ``carrier``: the unit as a whole."""
    category = CATEGORIES.get(carrier)
    if category is None:
        raise CodeError(f"no default category for carrier {carrier!r}: configure its code")
    return ItemCode(
        WHOLE_UNIT,
        WHOLE_UNIT,
        WHOLE_UNIT,
        WHOLE_UNIT,
        category.data_type,
        category.code,
        Use.WHOLE_UNIT,
    )

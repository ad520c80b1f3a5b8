"""What can go wrong talking to a device, with the endpoint, unit, function code and address."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Where:
    endpoint: str
    unit_id: int
    function: int
    address: int

    def __str__(self) -> str:
        return (
            f"{self.endpoint} unit {self.unit_id} function {self.function:02d} "
            f"address {self.address}"
        )


class DeviceError(Exception):
    kind = "error"

    def __init__(self, detail: str, where: Where) -> None:
        super().__init__(f"{where}: {detail}")
        self.where = where


class DeviceTimeout(DeviceError):
    """No answer within the device's timeout."""

    kind = "timeout"


class DeviceUnreachable(DeviceError):
    """The connection could not be opened or was lost."""

    kind = "unreachable"


class DeviceException(DeviceError):
    """The device answered with a Modbus exception code."""

    kind = "exception"

    def __init__(self, code: int, where: Where) -> None:
        super().__init__(f"exception code {code}", where)
        self.code = code

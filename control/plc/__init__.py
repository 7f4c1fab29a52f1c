"""PLC links: one async interface (PlcLink), one driver per protocol, reconnect around both.

The controller imports only this package; asyncua and pymodbus load when a link is opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from control.plc.link import (
    Gap,
    PlcConnectionError,
    PlcError,
    PlcLink,
    PlcRefused,
    PlcValueError,
    RingRead,
    Value,
)
from control.plc.reconnect import Backoff, ReconnectingLink

if TYPE_CHECKING:
    from control.plc.modbus import ModbusLink
    from control.plc.opcua import OpcuaLink
    from plant.site import Site
    from plant.tagmap import TagMap

    def _implements_plclink(r: ReconnectingLink, o: OpcuaLink, m: ModbusLink) -> list[PlcLink]:
        return [r, o, m]  # mypy proves every driver satisfies the PlcLink protocol

__all__ = [
    "Backoff",
    "Gap",
    "PlcConnectionError",
    "PlcError",
    "PlcLink",
    "PlcRefused",
    "PlcValueError",
    "ReconnectingLink",
    "RingRead",
    "Value",
    "open_link",
]


def open_link(
    site: Site,
    tag_map: TagMap,
    which: Literal["conveyor", "diverter"],
    *,
    timeout_s: float = 1.0,
    backoff: Backoff | None = None,
    host: str | None = None,
    port: int | None = None,
) -> ReconnectingLink:
    """A reconnecting link to the site's conveyor (OPC UA) or diverter (Modbus TCP) PLC.

    ``host``/``port`` override the site file (tests and the simulator bind to port 0). The link
    is not connected yet: call ``connect()`` or just use it (the first call connects).
    """
    if which == "conveyor":
        from control.plc.opcua import OpcuaLink

        ep = site.plc.conveyor
        if host is not None or port is not None:
            ep = ep.model_copy(update={"host": host or ep.host, "port": ep.port if port is None else port})
        cert_dir = Path(ep.cert_dir) if ep.cert_dir else None
        return ReconnectingLink(
            OpcuaLink(ep, tag_map.conveyor, timeout_s=timeout_s, cert_dir=cert_dir), backoff
        )
    if which == "diverter":
        from control.plc.modbus import ModbusLink

        mb = site.plc.diverter
        return ReconnectingLink(
            ModbusLink(mb, tag_map.diverter, host=host, port=port, timeout_s=timeout_s), backoff
        )
    raise ValueError(f"unknown PLC {which!r}: conveyor or diverter")

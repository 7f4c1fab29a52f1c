"""How the tag map's OPC UA tags look on the wire: variant types and string NodeIds.

The controller's client driver and the simulator's server build every node and value from
these, so a tag of type UInt32 is a UInt32 on both sides.
"""

from __future__ import annotations

from asyncua import ua

__all__ = ["VARIANT", "string_node"]

VARIANT: dict[str, ua.VariantType] = {
    "Boolean": ua.VariantType.Boolean,
    "Int32": ua.VariantType.Int32,
    "UInt32": ua.VariantType.UInt32,
    "Double": ua.VariantType.Double,
}


def string_node(identifier: str, ns: int) -> ua.NodeId:
    """A string NodeId (asyncua's annotations want its own int/str aliases)."""
    return ua.NodeId(identifier, ns)  # type: ignore[arg-type]

"""The PLC tag map: signal name -> OPC UA node or Modbus register, with type and direction.

Controller drivers and the simulator's servers are both built from this one object, so the
two sides cannot drift apart. The YAML is the source; ``docs/plc-interface.md`` explains it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from plant.site import Strict
from plant.yamlfile import load_yaml_model

OpcuaType = Literal["Boolean", "Int32", "UInt32", "Double"]
ModbusType = Literal["uint16", "int16", "uint32", "int32"]
Access = Literal["r", "w"]

WORDS: dict[str, int] = {"uint16": 1, "int16": 1, "uint32": 2, "int32": 2}


class OpcuaTag(Strict):
    node: str
    type: OpcuaType
    access: Access
    unit: str = ""
    doc: str = ""


class OpcuaRing(Strict):
    """An event ring: UInt32 arrays of ``size`` entries, one array per field."""

    size: int = Field(gt=0, le=4096)
    head: str
    ack: str
    fields: dict[str, str]  # field -> node
    docs: dict[str, str] = {}  # field -> meaning, for docs/plc-interface.md

    @model_validator(mode="after")
    def _seq_field(self) -> OpcuaRing:
        if "seq" not in self.fields:
            raise ValueError("a ring needs a 'seq' field")
        if unknown := sorted(set(self.docs) - set(self.fields)):
            raise ValueError(f"docs for fields the ring does not have: {unknown}")
        return self


class ConveyorMap(Strict):
    namespace_uri: str
    root: str = "Sorter"
    tags: dict[str, OpcuaTag]
    rings: dict[str, OpcuaRing]


class ModbusRegister(Strict):
    address: int = Field(ge=0, le=65535)
    type: ModbusType
    access: Access = "r"
    unit: str = ""
    doc: str = ""

    @property
    def words(self) -> int:
        return WORDS[self.type]


class RingField(Strict):
    offset: int = Field(ge=0)
    type: ModbusType
    doc: str = ""


class ModbusRing(Strict):
    """Slots of ``slot_words`` registers at ``base``; entry ``seq`` lives in slot ``seq % size``."""

    direction: Access
    size: int = Field(gt=0, le=1024)
    head: ModbusRegister
    ack: ModbusRegister
    base: int = Field(ge=0, le=65535)
    slot_words: int = Field(gt=0, le=120)
    fields: dict[str, RingField]

    @model_validator(mode="after")
    def _fits(self) -> ModbusRing:
        if "seq" not in self.fields:
            raise ValueError("a ring needs a 'seq' field")
        for name, f in self.fields.items():
            if f.offset + WORDS[f.type] > self.slot_words:
                raise ValueError(f"field {name!r} does not fit in a slot of {self.slot_words} words")
        if self.base + self.size * self.slot_words > 65536:
            raise ValueError("ring runs past register 65535")
        return self

    def slot_address(self, seq: int) -> int:
        return self.base + (seq % self.size) * self.slot_words


class ChuteStatusBlock(Strict):
    base: int = Field(ge=0, le=65535)
    size: int = Field(gt=0, le=1000)
    bits: dict[str, int] = Field(default_factory=dict)


class ChuteFillBlock(Strict):
    base: int = Field(ge=0, le=65535)
    size: int = Field(gt=0, le=1000)


class DiverterMap(Strict):
    registers: dict[str, ModbusRegister]
    rings: dict[str, ModbusRing]
    chute_status: ChuteStatusBlock
    chute_fill: ChuteFillBlock

    @model_validator(mode="after")
    def _no_overlap(self) -> DiverterMap:
        spans: list[tuple[int, int, str]] = []
        for n, r in self.registers.items():
            spans.append((r.address, r.address + r.words, n))
        for n, ring in self.rings.items():
            spans.append((ring.head.address, ring.head.address + ring.head.words, f"{n}.head"))
            spans.append((ring.ack.address, ring.ack.address + ring.ack.words, f"{n}.ack"))
            spans.append((ring.base, ring.base + ring.size * ring.slot_words, f"{n} slots"))
        spans.append((self.chute_status.base, self.chute_status.base + self.chute_status.size, "chute_status"))
        spans.append((self.chute_fill.base, self.chute_fill.base + self.chute_fill.size, "chute_fill"))
        spans.sort()
        for (a0, a1, an), (b0, _b1, bn) in zip(spans, spans[1:], strict=False):
            if b0 < a1:
                raise ValueError(f"registers of {an!r} ({a0}-{a1 - 1}) overlap {bn!r} (from {b0})")
        return self

    @property
    def register_span(self) -> int:
        """One past the highest register used: the size of the server's holding block."""
        ends = [r.address + r.words for r in self.registers.values()]
        for ring in self.rings.values():
            ends += [ring.head.address + 2, ring.ack.address + 2, ring.base + ring.size * ring.slot_words]
        ends += [self.chute_status.base + self.chute_status.size, self.chute_fill.base + self.chute_fill.size]
        return max(ends)


class TagMap(Strict):
    conveyor: ConveyorMap
    diverter: DiverterMap


def load_tag_map(path: str | Path) -> TagMap:
    """Load and validate a tag map; raises ConfigError naming file, line and field."""
    return load_yaml_model(TagMap, path)

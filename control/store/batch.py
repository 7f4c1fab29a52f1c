"""What one control cycle wants durable (`Batch`), committed as one transaction, and a parcel's
durable summary (`ParcelRow`)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["AlarmAck", "AlarmClear", "AlarmOp", "AlarmRaise", "AlarmShelve", "Batch", "ParcelRow", "PlanRow"]


@dataclass(slots=True)
class ParcelRow:
    """A parcel's durable summary: enough to rebuild its tracking slot after a restart."""

    tracking_id: int
    state: str
    final: bool = False
    lap: int = 0
    chute: int = 0
    reason: str = ""
    identity: str = ""
    scan_status: str = ""
    lead: int = 0
    trail: int = 0
    inducted_t: float = 0.0
    updated_t: float = 0.0
    boot_id: int = 0  # the conveyor PLC's boot id when it gave the tracking id
    plan_version: int = 0  # the sort plan version of its latest routing decision

    @property
    def key(self) -> tuple[int, int]:
        return (self.boot_id, self.tracking_id)


@dataclass(frozen=True, slots=True)
class AlarmRaise:
    t: float
    name: str
    code: int
    severity: str
    detail: str


@dataclass(frozen=True, slots=True)
class AlarmClear:
    t: float
    name: str


@dataclass(frozen=True, slots=True)
class AlarmAck:
    t: float
    alarm_id: int
    user: str


@dataclass(frozen=True, slots=True)
class AlarmShelve:
    alarm_id: int
    until: float | None  # None: unshelve
    user: str
    reason: str


AlarmOp = AlarmRaise | AlarmClear | AlarmAck | AlarmShelve


@dataclass(frozen=True, slots=True)
class PlanRow:
    """A sort plan version as the service took it (``state``: active, replaced, refused)."""

    version: int
    t: float
    user: str
    source: str
    plan_csv: str
    settings_yaml: str
    state: str
    detail: str = ""


@dataclass(slots=True)
class Batch:
    """Everything one cycle wants durable; committed as one transaction."""

    ring_events: list[tuple[str, str, int, float, dict[str, int]]] = field(default_factory=list)
    parcels: dict[tuple[int, int], ParcelRow] = field(default_factory=dict)
    parcel_events: list[tuple[float, int, str, int, int, str, str, str, int, int]] = field(default_factory=list)
    unit_events: list[tuple[float, str, str, int, str]] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)
    commands_done: list[tuple[str, int]] = field(default_factory=list)  # (result, command id)
    adopt_boot: int | None = None  # rows of boot 0 (a store from before boot ids) take this boot id
    alarm_ops: list[AlarmOp] = field(default_factory=list)  # applied in this order
    plans: list[PlanRow] = field(default_factory=list)
    health: list[tuple[float, str]] = field(default_factory=list)  # (t, health record JSON)

    def __bool__(self) -> bool:
        return bool(
            self.ring_events or self.parcels or self.parcel_events or self.unit_events or self.meta
            or self.commands_done or self.adopt_boot is not None or self.alarm_ops or self.plans or self.health
        )

    def ring(self, plc: str, stream: str, seq: int, t: float, data: dict[str, int]) -> None:
        self.ring_events.append((plc, stream, seq, t, data))

    def parcel(self, row: ParcelRow) -> None:
        self.parcels[row.key] = row

    def parcel_event(
        self, t: float, tid: int, kind: str, lap: int = 0, chute: int = 0, reason: str = "",
        identity: str = "", detail: str = "", boot_id: int = 0, plan_version: int = 0,
    ) -> None:
        self.parcel_events.append((t, tid, kind, lap, chute, reason, identity, detail, boot_id, plan_version))

    def unit_event(self, t: float, kind: str, name: str, code: int = 0, detail: str = "") -> None:
        self.unit_events.append((t, kind, name, code, detail))

    def merge(self, other: Batch) -> None:
        """Fold a failed batch into the next one so a retry loses nothing."""
        self.ring_events[:0] = other.ring_events
        self.parcels = {**other.parcels, **self.parcels}
        self.parcel_events[:0] = other.parcel_events
        self.unit_events[:0] = other.unit_events
        self.meta = {**other.meta, **self.meta}
        self.commands_done[:0] = other.commands_done
        if self.adopt_boot is None:
            self.adopt_boot = other.adopt_boot
        self.alarm_ops[:0] = other.alarm_ops
        self.plans[:0] = other.plans
        self.health[:0] = other.health

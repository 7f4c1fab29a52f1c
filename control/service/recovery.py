"""What a starting controller reads back from its event store, to carry on where the last one
stopped - cleanly or not: the last stored seq of every PLC stream, stream epochs and PLC boot
ids, the belt command seq, every parcel without a final outcome (its slot is rebuilt), and what
operators set: chutes out of service, the unit mode, the sort plan version."""

from __future__ import annotations

from dataclasses import dataclass

from control.store import EventStore, ParcelRow, PlanRow

__all__ = ["Recovery"]

RINGS = ("induct", "scan", "arm_result", "confirm", "arm")


@dataclass(slots=True)
class Recovery:
    last_seqs: dict[str, int]  # "plc.stream" -> last stored seq
    open_parcels: list[ParcelRow]
    meta: dict[str, str]
    total: int  # parcels the store knows
    plans: list[PlanRow]  # sort plan versions (the active one runs again)
    open_alarms: list[str]  # alarms the store holds as active (the last run's; checked again after a grace)

    @classmethod
    def read(cls, store: EventStore) -> Recovery:
        """On the writer thread: one consistent read of the store."""
        keys = ["belt_seq", "boot.conveyor", "boot.diverter", "key_boot.conveyor", *(f"epoch.{r}" for r in RINGS)]
        meta = {k: store.meta(k, "0") for k in keys}
        meta["chutes_out"] = store.meta("chutes_out", "")
        meta["unit_mode"] = store.meta("unit_mode", "")
        return cls(store.last_seqs(), store.parcels(open_only=True), meta, store.count_parcels(), store.plans(),
                   sorted(store.active_alarms()))

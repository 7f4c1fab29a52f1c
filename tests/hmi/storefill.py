"""A realistic event store for the HMI tests: a shift in progress on the example site.

Built only through the store's own API (`EventStore`, `Batch`), as the service writes it: unit
state changes, parcels with their whole lifecycle (inducted, scanned, routed, armed, sorted or
rejected, some recirculated), alarms in every ISA-18.2 state, a sort plan version, commands,
and the meta records (health with links and histograms, files, chutes).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from control.store import (
    AlarmAck,
    AlarmClear,
    AlarmRaise,
    AlarmShelve,
    Batch,
    EventStore,
    ParcelRow,
    PlanRow,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
SITE = CONFIG / "site.yaml"
PLAN = CONFIG / "sortplan.csv"
CHUTES = 29
IDENTITY = "RR{:09d}GB"  # not check-digit valid; the store does not care
REJECT_REASONS = ("no_read", "unknown_parcel", "oversize")


BOUNDS_MS = (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)  # the service's buckets


def service_hist(n: int, share: tuple[float, ...]) -> dict[str, object]:
    """A histogram as the service writes it: ``counts`` cumulative, one more than ``le`` (+Inf)."""
    per = [int(n * x) for x in share] + [0] * (len(BOUNDS_MS) + 1 - len(share))
    cum = [sum(per[: i + 1]) for i in range(len(per))]
    return {"le": list(BOUNDS_MS), "counts": cum, "sum": float(n), "count": cum[-1]}


def health(now: float, **over: object) -> dict[str, object]:
    h: dict[str, object] = {
        "t": now, "unit": "EXECUTE", "mode": "PRODUCTION", "in_flight": 12, "faults": [], "cycles": 123456,
        "lag_p99_ms": 1.8, "rss_mb": 140.5, "links": {"conveyor": True, "diverter": True, "camera": False},
        "speed_mps": 2.5, "plan_version": 1,
        "hist": {
            "decision_ms": {"le": [0.5, 1, 2, 5, 10], "counts": [100, 400, 900, 990, 1000], "sum": 1400.0, "count": 1000},
            "cycle_lag_ms": {"le": [0.5, 1, 2, 5, 10], "counts": [5000, 9000, 9900, 9990, 10000], "sum": 6000.0,
                             "count": 10000},
            "commit_ms": service_hist(1000, (0.8, 0.15, 0.04, 0.01)),
        },
    }
    h.update(over)
    return h


def decision_hist(k: int) -> dict[str, object]:
    """The k-th health record's decision histogram: 1000 decisions per record, mostly under
    2 ms; the 100th interval also holds a burst of 900 slow ones (5-10 ms)."""
    per = [600 * (k + 1), 390 * (k + 1), 10 * (k + 1)] + [0] * (len(BOUNDS_MS) - 2)
    if k >= 100:
        per[4] += 900
    cum = [sum(per[: i + 1]) for i in range(len(per))]
    return {"le": list(BOUNDS_MS), "counts": cum, "sum": float(cum[-1]), "count": cum[-1]}


def fill_store(path: Path, now: float, parcels: int = 300, seed: int = 1) -> dict[str, int]:
    """Write a shift's worth of rows; returns counts the tests check against."""
    rnd = random.Random(seed)
    store = EventStore(path)
    try:
        b = Batch()
        start = now - 1800.0
        b.unit_event(start - 10, "service", "start", 0, "recovered 0 parcels in flight")
        b.unit_event(start - 9, "mode", "PRODUCTION", 1)
        for i, st in enumerate(("STOPPED", "RESETTING", "IDLE", "STARTING", "EXECUTE")):
            b.unit_event(start - 8 + i, "state", st, 0)
        b.plans.append(PlanRow(1, start - 20, "", str(PLAN), PLAN.read_text(encoding="utf-8"), "", "active", ""))
        counts = {"sorted": 0, "rejected": 0, "recirculated": 0, "no_read": 0, "chute7": 0}
        for tid in range(1, parcels + 1):
            t0 = start + (tid - 1) * (1790.0 / parcels)
            ident = IDENTITY.format(tid)
            reject = tid % 10 == 0
            recirc = tid % 7 == 0
            chute = 29 if reject else 1 + rnd.randrange(24)
            reason = REJECT_REASONS[tid % 3] if reject else "sorted_by_rule"
            no_read = reject and reason == "no_read"
            shown = "" if no_read else ident
            b.parcel_event(t0, tid, "inducted", boot_id=5)
            b.parcel_event(t0 + 1.0, tid, "scanned", identity=shown, detail="lap 0", boot_id=5)
            if recirc:
                b.parcel_event(t0 + 1.1, tid, "routed", 0, chute, reason, shown, boot_id=5, plan_version=1)
                b.parcel_event(t0 + 2.0, tid, "recirculated", 0, chute, reason, shown, "missed divert", boot_id=5)
                b.parcel_event(t0 + 25.0, tid, "scanned", 1, identity=shown, detail="lap 1", boot_id=5)
                counts["recirculated"] += 1
            lap = 1 if recirc else 0
            b.parcel_event(t0 + 1.2 + 24 * lap, tid, "routed", lap, chute, reason, shown, boot_id=5, plan_version=1)
            b.parcel_event(t0 + 2.5 + 24 * lap, tid, "armed", lap, chute, reason, shown, "fire 1234", boot_id=5,
                           plan_version=1)
            final = "rejected" if reject else "sorted"
            b.parcel_event(t0 + 4.0 + 24 * lap, tid, final, lap, chute, reason, shown, boot_id=5, plan_version=1)
            b.parcel(ParcelRow(tid, final, True, lap, chute, reason, shown, "no_read" if no_read else "ok", 1000, 1300,
                               t0, t0 + 4.0, 5, 1))
            counts[final] += 1
            counts["no_read"] += int(no_read)
            counts["chute7"] += int(chute == 7)
        # one parcel still on the belt
        b.parcel_event(now - 2.0, parcels + 1, "inducted", boot_id=5)
        b.parcel(ParcelRow(parcels + 1, "inducted", False, 0, 0, "", "", "", 1000, 1300, now - 2.0, now - 2.0, 5, 0))
        b.alarm_ops += [
            AlarmRaise(start + 100, "jam", 2, "stop", "photo-eye 2 blocked"),
            AlarmClear(start + 160, "jam"),
            AlarmRaise(now - 120, "camera_down", 7, "hold", "no frames for 2 s"),
            AlarmRaise(now - 60, "chute_full", 9, "warning", "chute 7 full"),
        ]
        b.meta["health"] = json.dumps(health(now))
        for k in range(180):  # the health table: a record every 10 s for the last half hour
            t = now - 1800.0 + 10.0 * k
            b.health.append((t, json.dumps(health(t, hist={
                "decision_ms": decision_hist(k), "cycle_lag_ms": service_hist(10_000 * (k + 1), (0.9, 0.09, 0.01)),
            }, chute_fill={"7": min(k, 60), "5": k % 10}))))  # chute 7 fills up over the half hour
        b.meta["files"] = json.dumps({"site": str(SITE), "plan": str(PLAN), "manifest": str(CONFIG / "manifest.csv"),
                                      "routing": str(CONFIG / "routing.yaml")})
        b.meta["chutes"] = json.dumps([
            {"id": c, "status": 1 if c == 7 else (4 if c == 12 else 0), "fill": 60 if c == 7 else c % 5,
             "out": c == 3, "out_by": "ana" if c == 3 else "", "out_reason": "bag change" if c == 3 else ""}
            for c in range(1, CHUTES + 1)
        ])
        store.commit(b)
        jam = next(a for a in store.alarms() if a.name == "jam")
        chute_full = next(a for a in store.alarms() if a.name == "chute_full")
        b2 = Batch()
        b2.alarm_ops += [AlarmAck(start + 170, jam.id, "ana"),
                         AlarmShelve(chute_full.id, now + 1800, "bo", "bag being changed")]
        store.commit(b2)
        cid = store.add_command("RESET", start - 30, user="ana")
        done = Batch()
        done.commands_done.append(("accepted", cid))
        store.commit(done)
        return counts
    finally:
        store.close()

"""Soak: 40,000 parcels/hour in real time over real protocols, with the controller restarted
(alternating SIGTERM and SIGKILL) and each PLC restarted warm and cold, judged at the end.

Records (docs/benchmarks.md has the full 30-minute figures): ``soak.missorts``, ``soak.lost``,
``soak.duplicate_outcomes``, ``soak.stalls`` (restarts after which the unit was not back in
Execute within 10 s of the cause clearing), ``soak.max_recovery_s``, ``soak.rss_growth_mb`` and
``soak.cycle_lag_p99_ms_first`` / ``_last`` (the controller's health records, first against last
tenth of the run), ``soak.event_rows_per_parcel``. ``--quick`` is about three minutes with one
restart of each kind.
"""

from __future__ import annotations

from rich.console import Console

from benchmarks.records import Record
from harness.soak import SoakPlan, SoakResult, run_soak


def records(r: SoakResult) -> list[Record]:
    a = r.audit
    worst = max(r.recoveries, key=lambda x: -1.0 if x.recovered_s is None else x.recovered_s, default=None)
    rss_first, rss_last = r.tenth("rss_mb", last=False), r.tenth("rss_mb", last=True)
    return [
        Record("soak.missorts", "parcels", float(len(a.missorts)), "; ".join(a.missort_detail[:3])),
        Record("soak.lost", "parcels", float(r.lost_off_belt), f"{a.still_on_belt} still on the belt at the end"),
        Record("soak.duplicate_outcomes", "parcels", float(r.duplicates), "keys with more than one final outcome"),
        Record("soak.stalls", "restarts", float(r.stalls), f"of {len(r.recoveries)} causes cleared"),
        Record("soak.max_recovery_s", "s", r.max_recovery_s, worst.what if worst else ""),
        Record("soak.rss_growth_mb", "MB", rss_last - rss_first, f"{rss_first:.0f} -> {rss_last:.0f} MB"),
        Record("soak.cycle_lag_p99_ms_first", "ms", r.tenth("lag_p99_ms", last=False), "first tenth of the run"),
        Record("soak.cycle_lag_p99_ms_last", "ms", r.tenth("lag_p99_ms", last=True), "last tenth of the run"),
        Record("soak.event_rows_per_parcel", "rows", r.rows_per_parcel, f"{r.unit_events} unit events"),
        Record("soak.sorted", "parcels", float(a.sorted_planned), f"{a.inducted} inducted in {r.wall_s:.0f} s"),
        Record("soak.rejected", "parcels", float(a.rejected),
               ", ".join(f"{k} {v}" for k, v in sorted(a.rejected_by_reason.items(), key=lambda kv: -kv[1]))),
        Record("soak.log_lines", "lines", float(r.log_lines), "controller stderr over the whole run"),
    ]


def run(quick: bool) -> list[Record]:
    plan = SoakPlan.quick() if quick else SoakPlan.full()
    console = Console(stderr=True)
    with console.status("soak: starting") as status:
        r = run_soak(plan, progress=lambda msg: status.update(f"soak: {msg}"))
    return records(r)

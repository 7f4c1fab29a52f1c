"""Prometheus ``/metrics``, served by the HMI process from the event store.

Why here and not in the controller service: the HMI already reads the store, and a scrape
(text formatting, a dozen queries) must never run on the control cycle's event loop, where
every millisecond is an arm deadline. The collector reads the store at each scrape, on the
HMI's store thread; memory stays bounded because parcel counts come from the incremental
`hmi.tally` (new events since the last read only), not from re-counting the store.

Histograms are the service's own cumulative ones (``health.hist``), republished as they are,
converted from milliseconds to seconds (Prometheus's base unit).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from hmi import queries
from hmi.db import StoreUnavailable
from hmi.histogram import Hist
from hmi.layout import Files
from hmi.tally import READ_FAILURES, rates
from hmi.view import StoreView
from plant.codes import ChuteStatus, PackMLState, UnitMode

__all__ = ["FAMILIES", "StoreCollector", "make_registry"]

P = "sortcentre_"
HISTOGRAMS = {
    "decision_ms": ("decision_latency_seconds", "decision latency: decode known to diverter armed"),
    "cycle_lag_ms": ("cycle_lag_seconds", "control cycle start lag behind its schedule"),
    "commit_ms": ("store_commit_seconds", "event store commit time per cycle"),
}
FAMILIES = (
    "store_readable", "parcels", "chute_parcels", "routed", "inducted", "recirculations", "read_ratio",
    "parcels_per_hour", "unit_state", "unit_mode", "alarms", "alarms_active", "link_up", "service_up",
    "health_age_seconds", "parcels_in_flight", "belt_speed_mps", "plan_version", "chute_fill_ratio",
    "chute_status", "hmi_sse_viewers", *(v[0] for v in HISTOGRAMS.values()),
)


class StoreCollector(Collector):
    def __init__(self, view: StoreView, viewers: Callable[[], int] = lambda: 0) -> None:
        self.view = view
        self.viewers = viewers

    def collect(self) -> Iterator[Metric]:
        readable = GaugeMetricFamily(P + "store_readable", "1 when the HMI can read the event store")
        viewers = GaugeMetricFamily(P + "hmi_sse_viewers", "live HMI screens connected to this HMI")
        viewers.add_metric([], float(self.viewers()))
        yield viewers
        try:
            data = self.view.read(self._read)
        except StoreUnavailable:
            readable.add_metric([], 0.0)
            yield readable
            return
        readable.add_metric([], 1.0)
        yield readable
        yield from self._families(*data)

    def _read(self, db: sqlite3.Connection) -> tuple[dict[str, Any], dict[str, Any], Any, Files]:
        now = self.view.cfg.clock()
        fp = queries.fingerprint(db)
        self.view.tally.advance(db, fp.parcel_event, now, max_chunks=1)
        health = queries.meta_json(db, "health")
        health = health if isinstance(health, dict) else {}
        ov = self.view.overview(db, now, health)
        files = Files.resolve(queries.meta_json(db, "files"), self.view.cfg.site)
        return ov, health, queries.meta_json(db, "chutes"), files

    def _families(self, ov: dict[str, Any], health: dict[str, Any], chutes_meta: Any,
                  files: Files) -> Iterator[Metric]:
        tally = self.view.tally
        parcels = CounterMetricFamily(P + "parcels", "parcels by final outcome and routing reason",
                                      labels=["outcome", "reason"])
        for (kind, reason), n in sorted(tally.by_outcome().items()):
            parcels.add_metric([kind, reason], float(n))
        yield parcels
        site, _err = self.view.sites.get(files.site)
        names = {c.id: c.name for c in site.chutes} if site else {}
        per_chute = CounterMetricFamily(P + "chute_parcels", "parcels confirmed in each chute (sorted or rejected)",
                                        labels=["chute", "name"])
        for chute, n in sorted(tally.by_chute().items()):
            per_chute.add_metric([str(chute), names.get(chute, "")], float(n))
        yield per_chute
        routed = CounterMetricFamily(P + "routed", "routing decisions by read result", labels=["read"])
        by_read = tally.routed_by_read()
        for key in ("read", *sorted(READ_FAILURES)):
            routed.add_metric([key], float(by_read.get(key, 0)))
        yield routed
        yield CounterMetricFamily(P + "inducted", "parcels inducted", value=float(tally.kind_total("inducted")))
        yield CounterMetricFamily(P + "recirculations", "parcels sent round again",
                                  value=float(tally.kind_total("recirculated")))
        now = float(ov["now"])
        read_ratio = rates(tally.window(now - 300.0, now), 300.0)["read_rate"]
        g = GaugeMetricFamily(P + "read_ratio", "share of routing decisions with a good read, last 5 minutes")
        if read_ratio is not None:
            g.add_metric([], float(read_ratio))
        yield g
        yield GaugeMetricFamily(P + "parcels_per_hour", "parcels finished in the last minute, per hour",
                                value=float(ov["rates"]["now_per_hour"]))
        yield from self._unit(ov)
        yield from self._health(ov, health)
        yield from self._chutes(chutes_meta, site)

    def _unit(self, ov: dict[str, Any]) -> Iterator[Metric]:
        state = GaugeMetricFamily(P + "unit_state", "PackML unit state (1 for the current one)", labels=["state"])
        for s in PackMLState:
            state.add_metric([s.name], 1.0 if ov["unit"]["state"] == s.name else 0.0)
        yield state
        mode = GaugeMetricFamily(P + "unit_mode", "PackML unit mode (1 for the current one)", labels=["mode"])
        for m in UnitMode:
            mode.add_metric([m.name], 1.0 if ov["unit"]["mode"] == m.name else 0.0)
        yield mode
        alarms = ov["alarms"]
        by_state = GaugeMetricFamily(P + "alarms", "alarms needing attention by ISA-18.2 state", labels=["state"])
        for key in ("unack", "active", "shelved", "open"):
            by_state.add_metric([key], float(alarms[key]))
        yield by_state
        yield GaugeMetricFamily(P + "alarms_active", "alarms active now (acknowledged or not)",
                                value=float(alarms["active"]))

    def _health(self, ov: dict[str, Any], health: dict[str, Any]) -> Iterator[Metric]:
        links = GaugeMetricFamily(P + "link_up", "1 when the service reports the link up and its health is fresh",
                                  labels=["link"])
        for name, status in ov["links"].items():
            links.add_metric([name], 1.0 if status == "up" else 0.0)
        yield links
        yield GaugeMetricFamily(P + "service_up", "1 when the service's health record is fresh",
                                value=1.0 if ov["service"]["up"] else 0.0)
        age = GaugeMetricFamily(P + "health_age_seconds", "age of the service's last health record")
        if ov["service"]["health_age_s"] is not None:
            age.add_metric([], float(ov["service"]["health_age_s"]))
        yield age
        for key, family, help_text in (("in_flight", "parcels_in_flight", "parcels on the belt being tracked"),
                                       ("speed_mps", "belt_speed_mps", "belt speed"),
                                       ("plan_version", "plan_version", "sort plan version in use")):
            g = GaugeMetricFamily(P + family, help_text)
            v = health.get(key)
            if isinstance(v, int | float) and not isinstance(v, bool):
                g.add_metric([], float(v))
            yield g
        raw = health.get("hist") if isinstance(health.get("hist"), dict) else {}
        for key, (family, help_text) in HISTOGRAMS.items():
            h = Hist.parse(raw.get(key)) if isinstance(raw, dict) else None
            fam = HistogramMetricFamily(P + family, help_text)
            if h is not None:
                buckets = [(_le(b / 1000.0), c) for b, c in zip(h.le, h.counts, strict=True)]
                buckets.append(("+Inf", h.count))
                fam.add_metric([], buckets, sum_value=h.sum / 1000.0)
            yield fam

    def _chutes(self, chutes_meta: Any, site: Any) -> Iterator[Metric]:
        fill = GaugeMetricFamily(P + "chute_fill_ratio", "chute fill as a share of its capacity", labels=["chute"])
        status = GaugeMetricFamily(P + "chute_status", "chute status flags (1 when set)", labels=["chute", "flag"])
        capacity = {c.id: c.capacity for c in site.chutes} if site else {}
        for c in chutes_meta if isinstance(chutes_meta, list) else []:
            if not isinstance(c, dict) or "id" not in c:
                continue
            cid = int(c["id"])
            if cid in capacity and c.get("fill") is not None:
                fill.add_metric([str(cid)], float(c["fill"]) / capacity[cid])
            bits = int(c.get("status", 0) or 0)
            for flag in ChuteStatus:
                status.add_metric([str(cid), str(flag.name).lower()], 1.0 if bits & flag else 0.0)
            status.add_metric([str(cid), "out"], 1.0 if c.get("out") else 0.0)
        yield fill
        yield status


def _le(v: float) -> str:
    return f"{v:.6g}"


def make_registry(view: StoreView, viewers: Callable[[], int] = lambda: 0) -> CollectorRegistry:
    """A registry of its own (not the global one): the HMI's store metrics and nothing else."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(view, viewers))
    return registry

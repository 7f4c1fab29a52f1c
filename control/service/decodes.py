"""Camera decodes joined to the scans they belong to, and scans whose decode came too late.

A decode result names the tracking id and trigger count of the scan it was taken for; it may
arrive before or after the controller reads that scan from the PLC's ring. Each scan waits for
its decode until its deadline (``decode_deadline_s`` after the scan was read) and is then routed
as a timeout (no-read), so a slow decoder never delays a divert. Without a camera
(``sortctl run --no-camera``) every scan is routed at once as a no-read: nothing is waited for,
and no scanner alarm is raised for a camera that is not there.
"""

from __future__ import annotations

from collections.abc import Callable

from control.faults import Fault
from control.lifecycle import ParcelState, ScanStatus
from control.service.alarms import FaultBook
from control.service.feeds import DecodeFeed, DecodeResult, RouteRequest
from control.service.metrics import Metrics
from control.service.settings import ServiceSettings
from control.store import Batch
from control.tracking import Geometry, TrackingTable, sdiff, wrap

__all__ = ["DecodeJoin"]

UNCLAIMED_KEEP_S = 10.0  # a decode no scan claimed is dropped after this long
UNCLAIMED_MAX = 1024


class DecodeJoin:
    """Scans waiting for their decode; ``take`` answers the parcels ready to route."""

    def __init__(
        self,
        table: TrackingTable,
        geometry: Geometry,
        cfg: ServiceSettings,
        decoder: DecodeFeed | None,
        *,
        faults: FaultBook,
        metrics: Metrics,
        identity: dict[int, str],
        key_of: Callable[[int], int],
    ) -> None:
        self.table = table
        self.geometry = geometry
        self.cfg = cfg
        self.decoder = decoder
        self.faults = faults
        self.metrics = metrics
        self.identity = identity  # parcel key -> identity (shared with the parcel flow)
        self.key_of = key_of  # tracking id -> parcel key under the current conveyor boot
        self.unclaimed: dict[int, DecodeResult] = {}  # by parcel key: decodes whose scan is not read yet
        self._timeouts_in_a_row = 0
        self._up_count: int | None = None  # encoder count when the camera stream was last seen coming up

    def take(self, now: float, batch: Batch, encoder: int) -> tuple[list[int], list[RouteRequest]]:
        """Decodes joined to their scans this cycle, and scans past their deadline (``encoder``:
        this cycle's count, which dates the camera stream's coming up)."""
        ready: list[int] = []
        reqs: list[RouteRequest] = []
        if self.decoder is None:
            self._no_camera(ready, reqs)
            return ready, reqs
        if not self.decoder.healthy:
            self._up_count = None
        elif self._up_count is None:
            self._up_count = encoder
        tab = self.table
        for r in self.decoder.poll():
            key = self.key_of(r.tracking_id)
            i = tab.get(key)
            if i is None or int(tab.state[i]) != ParcelState.SCANNED or not self._same_pass(i, r.trigger_count):
                self.unclaimed[key] = r  # its scan event is not read yet
                continue
            ready.append(i)
            reqs.append(self._request(i, r, batch))
        if len(self.unclaimed) > UNCLAIMED_MAX:  # decodes nobody claimed (parcel gone, stale pass)
            cutoff = now - UNCLAIMED_KEEP_S
            self.unclaimed = {k: v for k, v in self.unclaimed.items() if v.done_at > cutoff}
        self._deadlines(now, batch, ready, reqs)
        return ready, reqs

    def forget(self) -> None:
        """The conveyor PLC restarted: decodes for its old tracking ids will never be claimed."""
        self.unclaimed.clear()

    def _same_pass(self, i: int, trigger: int) -> bool:
        """A decode belongs to the scan whose trigger count it carries (this lap, not the last)."""
        this_trigger = wrap(int(self.table.expect_scan[i]) - self.geometry.loop_counts)
        return abs(sdiff(trigger, this_trigger)) <= self.geometry.loop_counts // 4

    def _length_mm(self, i: int) -> float:
        return float(self.table.length[i]) / self.geometry.counts_per_mm

    def _request(self, i: int, r: DecodeResult, batch: Batch) -> RouteRequest:
        """A decode joined to its scan in time: the scanner works."""
        self._timeouts_in_a_row = 0
        self.faults.clear(Fault.SCANNER_TIMEOUT, batch)
        tab = self.table
        key = int(tab.key[i])
        tab.scan_status[i] = int(r.status)
        if r.identity:
            self.identity[key] = r.identity
        return RouteRequest(key, r.identity, r.status, self._length_mm(i), int(tab.lap[i]), r.postal_code, r.country)

    def _deadlines(self, now: float, batch: Batch, ready: list[int], reqs: list[RouteRequest]) -> None:
        tab = self.table
        scanned = tab.in_state(ParcelState.SCANNED)
        if scanned.size == 0:
            return
        taken = set(ready)
        late: list[int] = []
        for i in scanned.tolist():
            if i in taken:
                continue
            r = self.unclaimed.pop(int(tab.key[i]), None)
            if r is not None and self._same_pass(i, r.trigger_count):  # came before its scan event
                ready.append(i)
                reqs.append(self._request(i, r, batch))
            elif now > float(tab.deadline[i]):
                late.append(i)
        if not late:
            return
        # A scan triggered while no camera stream was up never had a frame on its way (after a
        # controller restart: the scans of the seconds it was down; the camera's own alarm
        # covers an outage): routed as a timeout all the same, but no sign of a broken scanner.
        self._timeouts_in_a_row += sum(self._frame_could_come(i) for i in late)
        if self._timeouts_in_a_row >= self.cfg.scanner_timeout_alarm:
            self.faults.raise_(Fault.SCANNER_TIMEOUT, f"{self._timeouts_in_a_row} scans in a row not decoded "
                               f"within {self.cfg.decode_deadline_s:.2f} s", batch)
        for i in late:
            self.metrics.decode_timeouts += 1
            tab.scan_status[i] = int(ScanStatus.TIMEOUT)
            ready.append(i)
            reqs.append(RouteRequest(int(tab.key[i]), "", ScanStatus.TIMEOUT, self._length_mm(i), int(tab.lap[i])))

    def _frame_could_come(self, i: int) -> bool:
        """Was the camera stream up when parcel ``i`` triggered the scanner?"""
        if self._up_count is None:
            return False
        trigger = wrap(int(self.table.expect_scan[i]) - self.geometry.loop_counts)
        return sdiff(trigger, self._up_count) >= 0

    def _no_camera(self, ready: list[int], reqs: list[RouteRequest]) -> None:
        tab = self.table
        for i in tab.in_state(ParcelState.SCANNED).tolist():
            tab.scan_status[i] = int(ScanStatus.NO_READ)
            ready.append(i)
            reqs.append(RouteRequest(int(tab.key[i]), "", ScanStatus.NO_READ, self._length_mm(i), int(tab.lap[i])))

"""The routing engine: manifest rows in, chute ids and reason codes out, with live chute state.

One kernel serves a single live parcel (:meth:`RoutingEngine.route_one`), a batch
(:meth:`RoutingEngine.route`) and a day's replay; both paths read the same tables and mutate
the same state, and a batch gives exactly what routing its parcels one by one would.

How the batch stays exact without a Python loop per parcel: a block of parcels is routed
speculatively with the chute states frozen at the block start. Within one call chute loads only
grow, so the only way speculation can differ from one-by-one routing is a chute reaching its
capacity inside the block; the first parcel that would overflow a chute is found with a
``bincount``, everything before it is committed, and the block restarts there. New
consolidation groups take the least-loaded pool chute of their rule; because those loads count
only that rule's groups, rules are independent, and the new groups are placed in rounds (the
first new group of every rule at once, then the second, ...), each an argmin per rule. The
parcels that open groups are found once per call, not per block: the first parcel of each group
closed at the call's start. An opener whose rule has no usable pool chute leaves its group
closed; the group's next parcel under another rule then opens it (a block ends before it), as
one-by-one routing would; parcels under the failed rule cannot, as chutes only fill up within a
call. While every pool chute is usable (the usual case) a pick depends on slot loads alone, so
the call's new groups are placed once for the whole call, and their chutes written once, rather
than block by block; the first block that finds a pool chute full takes the rest back and goes
on block by block.

Per-call overheads are kept out of the batch: every manifest row's static route is bound with
the plan (:meth:`RoutingEngine.prepare_plan`) and packed into 8 bytes (first chute, reason, a
coarse deadline bucket, consolidation group), so a batch starts with one ``take`` of one int64
per parcel and reads the fields through views; candidate lists are looked up by rule only for
the parcels whose first choice is full or down; indices stay int16/int32 and are read with
``np.take`` (fancy indexing with narrow indices is several times slower); the slow lanes (a
full first choice, a due deadline, a read failure) touch only the parcels concerned.

Feedback keeps the counts true: routing adds a parcel to a chute's *pending* count; a
confirmation moves it to *filled* (of the chute it really entered); a miss removes it; a drain
or bag change empties *filled*.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from control.routing.manifest import Manifest
from control.routing.plan import SortPlan, check_against_site
from control.routing.postal import postal_key
from control.routing.reasons import Reason
from control.routing.settings import RoutingSettings
from control.routing.tables import PlanTables, SiteTables, compile_plan
from plant.errors import ConfigError
from plant.site import Site

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
ArrayLike = npt.ArrayLike

_EMPTY = np.zeros(0, np.int64)
_EMPTY_I32 = np.zeros(0, np.int32)
_BIG = np.iinfo(np.int64).max
# A packed row route is one int64; little-endian, its bytes are: 0-1 the first chute (int16),
# 2 the reason (uint8), 3 the deadline bucket (uint8, ``NEVER``: no priority chute), 4-7 the
# consolidation group (int32, -1: none). The batch reads the fields through views.
NEVER = 255
N_EDGES = 255  # deadline buckets: at most this many edges, quantiles of the priority deadlines
OFF_MASK = (1 << 21) - 1  # the most candidate chutes (all rules' lists together) a plan may have


def _pack(chute: npt.ArrayLike, reason: npt.ArrayLike, bucket: npt.ArrayLike, group: npt.ArrayLike) -> I64:
    c = np.asarray(chute, np.int64) & 0xFFFF
    r = np.asarray(reason, np.int64) << 16
    b = np.asarray(bucket, np.int64) << 24
    g = np.asarray(group, np.int64) << 32  # the sign of -1 fills the high word
    return np.asarray(c | r | b | g, np.int64)


def _fields(packed: I64) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.uint8], npt.NDArray[np.uint8], I32]:
    """Views of a packed route array: first chute, reason, deadline bucket, group."""
    n = len(packed)
    return (
        packed.view(np.int16).reshape(n, 4)[:, 0], packed.view(np.uint8).reshape(n, 8)[:, 2],
        packed.view(np.uint8).reshape(n, 8)[:, 3], packed.view(np.int32).reshape(n, 2)[:, 1],
    )


def _first_occurrence(keys: npt.NDArray[np.integer[Any]], order: I64, scratch: I64) -> npt.NDArray[np.bool_]:
    """Mask of the entries whose key did not occur earlier (``order`` strictly increasing).

    numpy does not promise which of several writes to one index wins in a fancy assignment, so
    the earliest is chosen with ``minimum.at``, which is defined; ``scratch`` (indexed by key)
    holds the earliest order of each key afterwards.
    """
    if 8 * len(keys) > len(scratch):
        scratch.fill(_BIG)  # (contiguous: cheaper than a scatter of many keys)
    else:
        np.put(scratch, keys, _BIG)
    np.minimum.at(scratch, keys, order)
    return np.asarray(np.take(scratch, keys) == order)


@dataclass(frozen=True, slots=True)
class _Openers:
    """Parcels that open a consolidation group, in routing order: positions, groups, rules."""

    pos: I64
    grp: I32
    rule: I32

    def merge(self, other: _Openers) -> _Openers:
        order = np.argsort(np.concatenate([self.pos, other.pos]), kind="stable")
        return _Openers(
            np.concatenate([self.pos, other.pos])[order], np.concatenate([self.grp, other.grp])[order],
            np.concatenate([self.rule, other.rule])[order],
        )


_NO_OPENERS = _Openers(_EMPTY, _EMPTY_I32, _EMPTY_I32)


@dataclass(frozen=True, slots=True)
class Decisions:
    """One routing result per parcel. ``group`` is the consolidation group to hand back with
    the parcel's confirmation (-1: none)."""

    chute: npt.NDArray[np.int16]
    reason: npt.NDArray[np.uint8]
    group: npt.NDArray[np.int32]

    def __len__(self) -> int:
        return len(self.chute)


@dataclass(frozen=True, slots=True)
class PreparedPlan:
    """A plan compiled and bound to the manifest, ready to swap in (built off the hot path)."""

    tables: PlanTables
    row_rule: npt.NDArray[np.int32]
    cand: npt.NDArray[np.int16]  # site chains followed by the plan's candidate lists
    cand_base: int  # where the plan's lists start in ``cand``
    # Per manifest row (plus a last "unknown parcel" row): the route it gets unless something
    # at routing time (read, laps, deadline, chute state) says otherwise, packed into 8 bytes
    # (:func:`_pack`) so that one gather per parcel fetches it: first chute, reason, deadline
    # bucket, consolidation group. The bucket is a pre-filter only (the exact test reads the
    # manifest): row deadline d is in bucket ``searchsorted(prio_edges, d, "right") - 1``, and
    # NEVER when the row has no priority chute.
    row_table: I64
    prio_edges: npt.NDArray[np.float64]
    rule_ext: npt.NDArray[np.int32]  # ``row_rule`` and a last -1 for the "unknown parcel" row
    pool_ext: npt.NDArray[np.int16]  # the pool and a last 0: ``pool_ext[-1]`` is "no chute"
    pool_chutes: I64  # every chute of any pool
    settings: RoutingSettings  # swapped with the plan: a margin or a country change is a plan change
    row_group: npt.NDArray[np.int32]  # consolidation group per manifest row (-1 when consolidation is off)
    # ``tables.pool_off`` / ``pool_len`` narrowed for the new groups' random reads (half and a
    # quarter of the cache lines of the int64 tables). Pools hold distinct chute ids (1..999)
    # and the candidate lists fit ``OFF_MASK``, so neither narrowing can overflow.
    rule_pool_off: npt.NDArray[np.int32]
    rule_pool_len: npt.NDArray[np.int16]
    group_rule: npt.NDArray[np.int32]  # per group: the rule of all its group parcels, -1: mixed

    @property
    def n_rows(self) -> int:
        return len(self.row_table) - 1


def _row_exceptions(m: Manifest, st: SiteTables) -> npt.NDArray[np.uint8]:
    """Per-row exception that does not depend on the plan: bad data or oversize."""
    dims = m.dims
    w = m.weight
    with np.errstate(invalid="ignore"):
        bad = (dims < 0).any(axis=1) | np.isinf(dims).any(axis=1) | (w < 0) | np.isinf(w)
        big = (dims > np.array(st.max_dims)).any(axis=1) | (w > st.max_weight)
    out = np.zeros(len(m), np.uint8)
    out[big] = Reason.OVERSIZE
    out[bad] = Reason.BAD_DATA
    return out


class RoutingEngine:
    """Routes parcels of one manifest by one sort plan on one site, and keeps chute state."""

    def __init__(self, site: Site, plan: SortPlan, manifest: Manifest, settings: RoutingSettings | None = None) -> None:
        self.site = site
        self.settings = settings or RoutingSettings()
        self.st = SiteTables.from_site(site)
        self.manifest = manifest
        size = self.st.size
        self.pending = np.zeros(size, np.int64)
        self.filled = np.zeros(size, np.int64)
        self.available = np.zeros(size, bool)
        self.available[[c.id for c in site.chutes]] = True
        self._row_exc = _row_exceptions(manifest, self.st)
        self._row_group = self._groups(self.settings)
        ng = len(manifest.group_names)
        self.group_expected = manifest.expected
        self.group_sorted = np.zeros(ng, np.int64)
        self.group_chute = np.zeros(ng, np.int16)
        self.group_slot = np.full(ng, -1, np.int64)
        self._seen = np.zeros(max(ng, 1), np.int64)
        self._rule_seen = np.zeros(0, np.int64)
        self._exc_chute = np.zeros(max(Reason) + 1, np.int64)
        for r in Reason:
            self._exc_chute[r] = (
                self.st.no_read if r in (Reason.NO_READ, Reason.MULTI_READ, Reason.BAD_READ)
                else self.st.oversize if r == Reason.OVERSIZE else self.st.reject
            )
        self._home = self.settings.home_country
        self._plan = self.prepare_plan(plan)
        self.slot_load = np.zeros(len(self._plan.tables.pool), np.int64)

    # ----------------------------------------------------------------- plan
    def _groups(self, settings: RoutingSettings) -> npt.NDArray[np.int32]:
        m = self.manifest
        return m.group if settings.consolidation else np.full(len(m), -1, np.int32)

    def prepare_plan(self, plan: SortPlan, settings: RoutingSettings | None = None) -> PreparedPlan:
        """Compile ``plan`` (with ``settings``, default: the current ones) and resolve every
        manifest row's rule; no engine state changes, so it may run off the control thread."""
        settings = settings or self.settings
        row_group = self._groups(settings)
        check_against_site(plan, self.site)
        t = compile_plan(plan, self.st)
        m = self.manifest
        row_rule = t.rule_for_keys(m.postal_key)
        if t.dest_rule:
            d = np.full(len(m.dest_names) + 1, -1, np.int32)
            for i, name in enumerate(m.dest_names):
                d[i] = t.dest_rule.get(name, -1)
            by_dest = d[m.dest_code]  # code -1 reads the trailing -1
            row_rule = np.where(by_dest >= 0, by_dest, row_rule).astype(np.int32)
        cand = np.concatenate([self.st.chain, t.cand]).astype(np.int16)
        if len(cand) > OFF_MASK:
            raise ConfigError(plan.source, None, "chutes",
                              f"sort plan too large: {len(cand)} candidate chutes in all (at most {OFF_MASK})")
        table, edges = self._row_routes(t, row_rule, row_group)
        pool_ext = np.append(t.pool, np.int16(0)).astype(np.int16)
        return PreparedPlan(
            t, row_rule, cand, len(self.st.chain), table, edges, np.append(row_rule, np.int32(-1)).astype(np.int32),
            pool_ext, np.unique(t.pool).astype(np.int64), settings, row_group,
            t.pool_off.astype(np.int32), t.pool_len.astype(np.int16), self._group_rules(table, row_rule, row_group),
        )

    def _group_rules(self, table: I64, row_rule: I32, row_group: I32) -> I32:
        """The rule every group parcel of a group routes by, per group; -1 when its rows have
        different rules (or it has none). An opener's rule is then read from this small table
        rather than from ``row_rule`` (a random read of a table as long as the manifest, which
        is seldom in cache); only the openers of the -1 groups still read ``row_rule``."""
        ng = len(self.manifest.group_names)
        rows = np.flatnonzero(_fields(table[:-1])[1] == Reason.CONSOLIDATED)  # every row that may open
        g, r = row_group[rows], row_rule[rows]
        lo = np.full(ng, np.iinfo(np.int32).max, np.int32)
        hi = np.full(ng, -1, np.int32)
        np.minimum.at(lo, g, r)
        np.maximum.at(hi, g, r)
        return np.where(lo == hi, lo, -1).astype(np.int32)

    def _row_routes(self, t: PlanTables, row_rule: I32, row_group: I32) -> tuple[I64, npt.NDArray[np.float64]]:
        """Each row's route when nothing at routing time (read, laps, deadline) overrides it,
        packed (:func:`_pack`), and the deadline bucket edges."""
        st = self.st
        exc = self._row_exc.astype(np.int64)
        exc[(exc == 0) & (row_rule < 0)] = Reason.NO_RULE
        normal = exc == 0
        # Rule tables with a dummy last entry, read by rows without a rule.
        rc = np.where(row_rule >= 0, row_rule, t.n_rules)
        first = np.append(t.cand[t.cand_off] if t.n_rules else np.zeros(0, np.int16), 0)
        prio = np.append(t.prio, 0)
        chute = np.where(normal, first[rc], self._exc_chute[exc])
        # A parcel of a group routes as CONSOLIDATED; the batch finds group parcels by reason.
        cons = normal & (row_group >= 0)
        reason = np.where(normal, np.where(cons, Reason.CONSOLIDATED, Reason.SORTED_BY_RULE), exc)
        dl = self.manifest.deadline
        has_prio = normal & (prio[rc] > 0) & np.isfinite(dl)
        # Equal-count buckets: a deadline cut-off lets through at most a bucket's worth of rows
        # that are not due yet, however the deadlines are spread.
        d = np.sort(dl[has_prio])
        edges = np.unique(d[np.linspace(0, len(d) - 1, N_EDGES).astype(np.int64)]) if len(d) else np.zeros(0)
        bucket = np.full(len(exc), NEVER, np.int64)
        bucket[has_prio] = np.searchsorted(edges, dl[has_prio], side="right") - 1
        n = len(exc)
        table = np.empty(n + 1, np.int64)
        table[:n] = _pack(chute, reason, bucket, row_group)
        table[n] = _pack(st.reject, Reason.UNKNOWN_PARCEL, NEVER, -1)
        return table, edges.astype(np.float64)

    def swap_plan(self, new: PreparedPlan | SortPlan) -> None:
        """Switch plans between two routing calls. Open groups keep their chute; their load is
        re-counted against the new plan's pools (a group whose chute left its pool counts
        nowhere)."""
        prepared = new if isinstance(new, PreparedPlan) else self.prepare_plan(new)
        t = prepared.tables
        slot_load = np.zeros(len(t.pool), np.int64)
        group_slot = np.full_like(self.group_slot, -1)
        open_g = np.flatnonzero(self.group_chute > 0)
        if len(open_g):
            first_row = np.full(len(self.group_chute), _BIG, np.int64)
            g = self.manifest.group
            rows = np.flatnonzero(g >= 0)
            np.minimum.at(first_row, g[rows], rows)  # earliest manifest row of every group
            for gi in open_g.tolist():
                rule = int(prepared.row_rule[first_row[gi]])
                if rule < 0:
                    continue
                o, n = int(t.pool_off[rule]), int(t.pool_len[rule])
                hits = np.flatnonzero(t.pool[o : o + n] == self.group_chute[gi])
                if len(hits):
                    group_slot[gi] = o + int(hits[0])
                    slot_load[o + int(hits[0])] += 1
        self._plan, self.slot_load, self.group_slot = prepared, slot_load, group_slot
        self.settings, self._home, self._row_group = prepared.settings, prepared.settings.home_country, prepared.row_group

    @property
    def plan(self) -> SortPlan:
        return self._plan.tables.plan

    def take_state(self, old: RoutingEngine) -> None:
        """Carry chute and group state over from the engine this one replaces (same site, a
        manifest that extends ``old``'s: its rows and group codes are ``old``'s, then new ones),
        so a manifest update neither forgets what chutes hold nor splits an open group."""
        self.pending[:], self.filled[:], self.available[:] = old.pending, old.filled, old.available
        n = len(old.group_chute)
        self.group_sorted[:n] = old.group_sorted
        self.group_chute[:n] = old.group_chute
        self.swap_plan(self._plan)  # slot loads of the open groups, recounted

    # ---------------------------------------------------------------- state
    def set_available(self, mask: ArrayLike) -> None:
        """Chutes the PLC reports usable (not full, disabled or faulted), indexed by chute id.
        The reject chute is always taken: it is the end of the line."""
        m = np.asarray(mask, dtype=bool)
        self.available[:] = False
        self.available[: min(len(m), self.st.size)] = m[: self.st.size]
        self.available[0] = False

    def starved_rules(self) -> list[int]:
        """Rules none of whose own chutes is usable now (full, disabled or faulted).

        Their parcels still go somewhere safe (a fallback chute or an exception chute), but a
        whole destination sorting to its fallbacks is what an operator must hear about: bags to
        change, a chute to re-enable.
        """
        t = self._plan.tables
        if t.n_rules == 0:
            return []
        usable = np.logical_or.reduceat(np.take(self.available, t.pool), t.pool_off)
        return np.flatnonzero(~usable).tolist()

    def load(self) -> I64:
        """Parcels in or heading for each chute (index = chute id)."""
        return self.pending + self.filled

    def confirm(self, assigned: ArrayLike, actual: ArrayLike, group: ArrayLike) -> None:
        """Parcels confirmed in chute ``actual`` (routed to ``assigned``, with their ``group``)."""
        a = np.atleast_1d(np.asarray(assigned, np.int64))
        b = np.atleast_1d(np.asarray(actual, np.int64))
        g = np.atleast_1d(np.asarray(group, np.int64))
        np.subtract.at(self.pending, a, 1)
        np.maximum(self.pending, 0, out=self.pending)
        np.add.at(self.filled, b, 1)
        g = g[g >= 0]
        if len(g):
            np.add.at(self.group_sorted, g, 1)
            u = np.unique(g)
            done = u[(self.group_sorted[u] >= self.group_expected[u]) & (self.group_chute[u] > 0)]
            if len(done):
                slots = self.group_slot[done]
                np.subtract.at(self.slot_load, slots[slots >= 0], 1)
                self.group_chute[done] = 0
                self.group_slot[done] = -1

    def missed(self, assigned: ArrayLike) -> None:
        """Diverts that did not happen (recirculated, or rejected at the end of the line): the
        parcel no longer heads for ``assigned``; it will be routed again on its next pass."""
        a = np.atleast_1d(np.asarray(assigned, np.int64))
        np.subtract.at(self.pending, a, 1)
        np.maximum(self.pending, 0, out=self.pending)

    def drained(self, chutes: ArrayLike, parcels: ArrayLike | None = None) -> None:
        """Operator emptied chutes (bag closed: all parcels; or ``parcels`` taken out of each)."""
        c = np.atleast_1d(np.asarray(chutes, np.int64))
        if parcels is None:
            self.filled[c] = 0
        else:
            np.subtract.at(self.filled, c, np.atleast_1d(np.asarray(parcels, np.int64)))
            np.maximum(self.filled, 0, out=self.filled)

    def label_key(self, postal: str, country: str | None) -> int:
        """Postal key of a GS1 AI 420 label (AI 421 country, else the site's home country)."""
        return postal_key(country or self._home, postal)

    # ------------------------------------------------------------ one parcel
    def route_one(
        self, row: int, now: float, read: int = 0, recirculations: int = 0, label_key: int = -1
    ) -> tuple[int, Reason, int]:
        """Route one live parcel: (chute, reason, group). Same rules and state as :meth:`route`."""
        st, pp = self.st, self._plan
        t = pp.tables
        if row >= len(self.manifest):
            row = -1
        group = int(self._row_group[row]) if row >= 0 else -1
        exc: Reason | None
        if recirculations > st.recirculation_limit:
            exc = Reason.RECIRCULATION_LIMIT
        elif read:
            exc = (Reason.NO_READ, Reason.MULTI_READ, Reason.BAD_READ)[read - 1] if read <= 3 else Reason.BAD_READ
        elif row >= 0:
            exc = Reason(int(self._row_exc[row])) if self._row_exc[row] else None
            rule = int(pp.row_rule[row])
            if exc is None and rule < 0:
                exc = Reason.NO_RULE
        elif label_key >= 0:
            rule = t.rule_for("", label_key)
            exc = Reason.NO_RULE if rule < 0 else None
        else:
            exc = Reason.UNKNOWN_PARCEL
        if exc is not None:
            c = int(self._exc_chute[exc])
            return self._pick_chain(c, exc, group)
        if row >= 0:
            due = float(self.manifest.deadline[row]) - now < self.settings.priority_margin_s
            prio = int(t.prio[rule])
            if due and prio:
                return self._pick_chain(prio, Reason.PRIORITY, group)
        if group >= 0:
            gc = int(self.group_chute[group])
            if gc:
                return self._pick_chain(gc, Reason.CONSOLIDATED, group)
            o, n = int(t.pool_off[rule]), int(t.pool_len[rule])
            best, best_load = -1, 0
            for s in range(o, o + n):
                c = int(t.pool[s])
                if self._ok(c) and (best < 0 or self.slot_load[s] < best_load):
                    best, best_load = s, int(self.slot_load[s])
            if best >= 0:
                c = int(t.pool[best])
                self.group_chute[group] = c
                self.group_slot[group] = best
                self.slot_load[best] += 1
                self.pending[c] += 1
                return c, Reason.CONSOLIDATED, group
            base = Reason.CONSOLIDATED
        else:
            base = Reason.SORTED_BY_RULE
        o, n = int(t.cand_off[rule]), int(t.cand_len[rule])
        return self._pick(pp.cand, pp.cand_base + o, n, int(t.pool_len[rule]), base, group)

    def _ok(self, c: int) -> bool:
        return bool(self.available[c]) and int(self.pending[c] + self.filled[c]) < int(self.st.capacity[c])

    def _pick_chain(self, chute: int, base: Reason, group: int) -> tuple[int, Reason, int]:
        st = self.st
        return self._pick(st.chain, int(st.chain_off[chute]), int(st.chain_len[chute]), 1, base, group)

    def _pick(self, cand: npt.NDArray[np.int16], off: int, n: int, primary: int, base: Reason, group: int) -> tuple[int, Reason, int]:
        reject = self.st.reject
        chosen, k = reject, n
        for i in range(n):
            c = int(cand[off + i])
            if c == reject or self._ok(c):
                chosen, k = c, i
                break
        self.pending[chosen] += 1
        if k < primary or base >= Reason.NO_RULE:
            return chosen, base, group
        first = int(cand[off])
        return chosen, (Reason.FALLBACK_FULL if self.available[first] else Reason.CHUTE_UNAVAILABLE), group

    # ----------------------------------------------------------------- batch
    def route(
        self,
        rows: ArrayLike,
        now: float | ArrayLike,
        read: ArrayLike | None = None,
        recirculations: ArrayLike | None = None,
        label_key: ArrayLike | None = None,
    ) -> Decisions:
        """Route parcels in order (manifest rows, -1 if unknown); equal to calling
        :meth:`route_one` for each in turn. ``now`` is one time or one per parcel (epoch s)."""
        pp = self._plan  # one plan for the whole call, even if a swap is prepared meanwhile
        t, st = pp.tables, self.st
        rows = np.asarray(rows, np.int64)
        n = len(rows)
        size = pp.n_rows  # table row ``size`` is the "unknown parcel" sentinel
        rr = rows
        if n and int(rows.min()) < 0:
            rr = np.where((rows >= 0) & (rows < size), rows, size)
        # One gather brings each parcel's static route, 8 bytes; the fields are views of it.
        try:
            packed = np.take(pp.row_table, rr)  # row ``size`` is the sentinel itself
        except IndexError:  # rows past the sentinel (no ``max`` pass for the usual case)
            rr = np.where((rows >= 0) & (rows < size), rows, size)
            packed = np.take(pp.row_table, rr)
        first_v, reason_v, bucket, group = _fields(packed)
        first = first_v.copy()  # each parcel's first choice (int16), overrides included
        out_reason = reason_v.copy()
        rule: I32 | None = None  # per parcel, only when a label brings a rule its row lacks
        due = self._due(pp, rr, bucket, now)
        if len(due):
            first[due] = np.take(t.prio, np.take(pp.row_rule, np.take(rr, due)))
            out_reason[due] = Reason.PRIORITY
        if label_key is not None:
            lk = np.asarray(label_key, np.int64)
            lab = np.flatnonzero((rr == size) & (lk >= 0))
            if len(lab) and t.n_rules:
                lr = t.rule_for_keys(lk[lab])
                hit = lr >= 0
                if hit.any():
                    rule = np.take(pp.rule_ext, rr)
                    rule[lab[hit]] = lr[hit]
                    first[lab[hit]] = np.take(t.cand, np.take(t.cand_off, lr[hit]))
                    out_reason[lab[hit]] = Reason.SORTED_BY_RULE
                lab = lab[~hit]
            if len(lab):
                self._force(first, out_reason, lab, np.full(len(lab), Reason.NO_RULE, np.int64))
        if read is not None:
            rd = np.asarray(read, np.int64)
            bad = np.flatnonzero(rd > 0)
            if len(bad):
                self._force(first, out_reason, bad, np.minimum(rd[bad], 3) + (Reason.NO_READ - 1))
        if recirculations is not None:
            lap = np.flatnonzero(np.asarray(recirculations) > st.recirculation_limit)
            if len(lap):
                self._force(first, out_reason, lap, np.full(len(lap), Reason.RECIRCULATION_LIMIT, np.int64))
        out_chute = first.copy()  # the blocks write their decisions here
        # Group parcels of the whole batch, found once (a block changes reasons only of the
        # parcels it commits, and the next block starts after them), and the parcels that open
        # a group: the first of each group not open at the start of the call.
        gi = np.flatnonzero(out_reason == Reason.CONSOLIDATED)
        gg = group[gi]  # (``take`` would copy the whole strided column first)
        ops = self._openers(pp, rr, gi, gg)
        gc = self._place_openers(pp, ops, gi, gg, out_chute)
        retry_at = _EMPTY  # block starts forced by retried openers (see ``_retries``)
        p = 0
        block = self.settings.block
        while p < n:
            e = min(n, p + block)
            if gc is not None and not self._pools_usable(pp):
                # A pool chute filled up: from here on each block places its own openers.
                self._unplace(ops, p)
                out_chute[p:] = first[p:]
                gc = None
            if gc is not None:
                q, _ = self._route_block(
                    pp, rr, rule, p, e, first, out_chute, out_reason, group, _EMPTY, _EMPTY_I32, _NO_OPENERS, gi, gg,
                )
                if p + q < e:  # the restart reset the rest of the block to first choices
                    a, b = np.searchsorted(gi, (p + q, e)).tolist()
                    out_chute[gi[a:b]] = gc[a:b]
                p += q
                continue
            if len(retry_at):
                later = retry_at[retry_at > p]
                e = min(e, int(later[0])) if len(later) else e
            a, b = np.searchsorted(gi, (p, e)).tolist()
            oa, ob = np.searchsorted(ops.pos, (p, e)).tolist()
            q, more = self._route_block(
                pp, rr, rule, p, e, first, out_chute, out_reason, group, gi[a:b], gg[a:b],
                _Openers(ops.pos[oa:ob] - p, ops.grp[oa:ob], ops.rule[oa:ob]), gi, gg,
            )
            if more is not None:
                ops = ops.merge(more)
                retry_at = np.union1d(retry_at, more.pos)
            p += q
        return Decisions(out_chute, out_reason, group)  # ``group``: a view of ``packed``, no copy

    def _due(self, pp: PreparedPlan, rr: I64, bucket: npt.NDArray[np.uint8], now: float | ArrayLike) -> I64:
        """Parcels within the priority margin of their deadline: a cheap pre-filter on the
        packed deadline buckets, then the exact test ``deadline - now < margin`` on the few left."""
        margin = self.settings.priority_margin_s
        t_now = np.asarray(now, np.float64)
        if t_now.ndim == 0:
            latest = float(t_now)  # (``nanmax`` of one number costs tens of microseconds)
        else:
            latest = float(np.nanmax(t_now)) if t_now.size and not np.isnan(t_now).all() else np.nan
        if np.isnan(latest) or len(pp.prio_edges) == 0:
            return _EMPTY
        # Every due row has deadline <= limit (the slack covers the rounding of
        # ``deadline - now``), so its bucket is below the count of edges <= limit.
        limit = latest + margin + 2.0 + 1e-9 * (abs(latest) + abs(margin))
        cut = int(np.searchsorted(pp.prio_edges, limit, side="right"))  # NaN limit: cut 0
        if cut == 0:
            return _EMPTY
        maybe = np.flatnonzero(bucket.copy() < cut)  # (a strided compare is twice as slow)
        if len(maybe) == 0:
            return maybe
        now_m = t_now[maybe] if t_now.ndim else t_now
        return maybe[(np.take(self.manifest.deadline, np.take(rr, maybe)) - now_m) < margin]

    def _force(self, first: npt.NDArray[np.int16], reason: npt.NDArray[np.uint8], idx: I64, why: I64) -> None:
        """Parcels ``idx`` become exceptions ``why`` (read failures, too many laps, no rule)."""
        first[idx] = self._exc_chute[why]
        reason[idx] = why

    def _usable(self) -> npt.NDArray[np.bool_]:
        """Chutes a parcel may be sent to now: available and below capacity (reject: always)."""
        ok = self.available & (self.pending + self.filled < self.st.capacity)
        ok[self.st.reject] = True
        return ok

    def _pools_usable(self, pp: PreparedPlan) -> bool:
        return bool(np.take(self._usable(), pp.pool_chutes).all())

    def _place_openers(
        self, pp: PreparedPlan, ops: _Openers, gi: I64, gg: I32, out_chute: npt.NDArray[np.int16]
    ) -> npt.NDArray[np.int16] | None:
        """Open the call's new groups all at once when every pool chute is usable; return the
        group chute of each group parcel (``gi``), already written to ``out_chute``; None when
        some pool chute is full or down (each block then places its own openers).

        With every pool chute usable, a new group's slot depends only on the slot loads, which
        only the openers before it change; so the least-loaded picks in call order are those
        the blocks would make one after the other, however the blocks are cut, for as long as
        every pool chute stays usable (``route`` checks at each block start: loads only grow
        within a call, so once a pool chute is full it stays full, and :meth:`_unplace` takes
        back the picks from that block on). One placement per call instead of one per block
        saves the per-block rounds and the per-block reads and writes of the group chutes.
        """
        if len(gi) == 0 or not self._pools_usable(pp):
            return None
        if len(ops.pos):
            slot = self._water_fill(pp, self._usable(), ops.rule)  # no -1: every pool chute usable
            grp = ops.grp.astype(np.intp)  # (assignment with int32 indices is 3x slower)
            self.group_chute[grp] = np.take(pp.pool_ext, slot)
            self.group_slot[grp] = slot
        gc = np.take(self.group_chute, gg)
        out_chute[gi] = gc  # every group is open now: those of the openers too
        return gc

    def _unplace(self, ops: _Openers, p: int) -> None:
        """Take back the groups :meth:`_place_openers` opened at call positions ``p`` on."""
        grp = ops.grp[int(np.searchsorted(ops.pos, p)) :]
        np.subtract.at(self.slot_load, self.group_slot[grp], 1)
        self.group_chute[grp] = 0
        self.group_slot[grp] = -1

    def _route_block(
        self, pp: PreparedPlan, rr: I64, rule: I32 | None, p: int, e: int, first: npt.NDArray[np.int16],
        out_chute: npt.NDArray[np.int16], out_reason: npt.NDArray[np.uint8], group: I32, gi: I64, gg: I32,
        ops: _Openers, all_gi: I64, all_gg: I32,
    ) -> tuple[int, _Openers | None]:
        """Route parcels p..e-1 speculatively; commit the exact prefix; return its length and
        the openers to retry later (None: none). ``gi`` are the block's group parcels
        (positions in the call), ``gg`` their groups, ``ops`` the block's openers (positions in
        the block), all three empty when the call placed its openers and wrote its group chutes
        up front (:meth:`_place_openers`); ``all_gi``, ``all_gg``: the group parcels of the
        whole call; ``group``: every parcel's group."""
        st, t = self.st, pp.tables
        cand = pp.cand
        reject = st.reject
        load0 = self.pending + self.filled
        ok = self._usable()
        m = e - p
        chute = out_chute[p:e]  # a view: first choices, replaced below where needed
        # (Below, ``take`` with int16/int32 indices: several times faster than ``a[idx]``.)
        opener_pos, opener_grp = ops.pos, ops.grp
        opener_slot = _EMPTY
        if len(gi):
            if len(opener_pos):
                opener_slot = self._water_fill(pp, ok, ops.rule)
                # The new groups' chutes (0: no slot), tentatively: taken back below for the
                # openers past the exact prefix.
                np.put(self.group_chute, opener_grp, np.take(pp.pool_ext, opener_slot))
                np.put(self.group_slot, opener_grp, opener_slot)
            gc = np.take(self.group_chute, gg)
            fol = gc > 0  # group members follow their group's chute
            if fol.all():
                np.put(out_chute, gi, gc)
            else:
                np.put(out_chute, gi[fol], gc[fol])
        # Parcels per chute, first choices: also tells whether any parcel's first choice is
        # full or down (a chute of ``~ok`` counted), without a pass of ``ok[chute]``.
        cnt = np.bincount(chute, minlength=st.size)[: st.size]
        pos = None
        bad = _EMPTY
        if cnt[~ok].any():
            # Slow lane: parcels whose first candidate is full or unavailable walk their list:
            # the chain of their group's chute, their rule's candidates, or the chain of their
            # first chute (exceptions, priority).
            bad = np.flatnonzero(~np.take(ok, chute))
            was = np.take(chute, bad)
            nb = len(bad)
            rsn = np.take(out_reason, p + bad)
            # A group parcel follows its group's chute if the group is open (0: not open).
            fc = np.zeros(nb, np.int64)
            gb = np.flatnonzero(rsn == Reason.CONSOLIDATED)
            if len(gb):
                fc[gb] = np.take(self.group_chute, np.take(group, p + np.take(bad, gb)))
            chain_c = np.where(fc > 0, fc, np.take(first, p + bad))
            b_off = st.chain_off[chain_c]
            b_ln = st.chain_len[chain_c]
            prim = np.ones(nb, np.int64)
            rl = np.take(pp.rule_ext, np.take(rr, p + bad)) if rule is None else np.take(rule, p + bad)
            by_rule = np.flatnonzero((fc == 0) & (rsn <= Reason.CONSOLIDATED) & (rl >= 0))
            if len(by_rule):
                rk = rl[by_rule]
                b_off[by_rule] = pp.cand_base + np.take(t.cand_off, rk)
                b_ln[by_rule] = np.take(t.cand_len, rk)
                prim[by_rule] = np.take(t.pool_len, rk)
            pos = np.zeros(nb, np.int64)
            todo = np.arange(nb)
            k = 1
            while len(todo):
                left = b_ln[todo] > k
                gone = todo[~left]
                chute[bad[gone]] = reject
                pos[gone] = b_ln[gone]
                todo = todo[left]
                c = cand[b_off[todo] + k]
                good = ok[c]
                hit = todo[good]
                chute[bad[hit]] = c[good]
                pos[hit] = k
                todo = todo[~good]
                k += 1
            cnt += np.bincount(np.take(chute, bad), minlength=st.size)[: st.size]
            cnt -= np.bincount(was, minlength=st.size)[: st.size]
        # Capacity check: the first parcel that would overflow a chute ends the exact prefix.
        over = np.flatnonzero(load0 + cnt > st.capacity)
        q = m
        for oc in over.tolist():
            if oc == reject:
                continue
            room = int(st.capacity[oc] - load0[oc])
            q = min(q, int(np.flatnonzero(chute == oc)[room]))
        more = None
        while len(opener_slot):
            # An opener that found no usable chute in its rule's pool leaves its group closed;
            # a later member of another rule may open it (``_retries``): the exact prefix ends
            # before the first such member inside the block.
            failed = np.flatnonzero((opener_slot < 0) & (opener_pos < q))
            if len(failed) == 0:
                break
            more = self._retries(pp, rr, all_gi, all_gg, p + opener_pos[failed], opener_grp[failed], ops.rule[failed])
            if len(more.pos) == 0 or int(more.pos[0]) - p >= q:
                break
            q = int(more.pos[0]) - p
        if pos is not None:
            # A normal parcel that got none of its primary chutes says why.
            keep = bad < q
            fell = (pos[keep] >= prim[keep]) & (rsn[keep] < Reason.NO_RULE)
            if fell.any():
                out_reason[p + bad[keep][fell]] = np.where(
                    self.available[chain_c[keep][fell]], Reason.FALLBACK_FULL, Reason.CHUTE_UNAVAILABLE
                )
        if q < m:
            self.pending += np.bincount(chute[:q], minlength=st.size)[: st.size]
            chute[q:] = first[p + q : e]  # the next block routes these again from their first choice
        else:
            self.pending += cnt
        if len(opener_pos) and q < m:
            back = np.flatnonzero(opener_pos >= q)
            if len(back):
                bg, bs = np.take(opener_grp, back), np.take(opener_slot, back)
                self.group_chute[bg] = 0
                self.group_slot[bg] = -1
                np.subtract.at(self.slot_load, bs[bs >= 0], 1)
        return q, (more if more is not None and len(more.pos) else None)

    def _openers(self, pp: PreparedPlan, rr: I64, gi: I64, gg: I32) -> _Openers:
        """The parcels that open a group in this call: the first parcel of each group not open
        at its start (``gi``, ``gg``: the call's group parcels), with the rule each opens by."""
        firsts = np.flatnonzero(_first_occurrence(gg, gi, self._seen))
        grp = np.take(gg, firsts)
        closed = np.flatnonzero(np.take(self.group_chute, grp) == 0)
        if len(closed) < len(firsts):
            firsts, grp = np.take(firsts, closed), np.take(grp, closed)
        pos = np.take(gi, firsts)
        rule = np.take(pp.group_rule, grp)
        mixed = np.flatnonzero(rule < 0)  # groups whose rows have different rules
        if len(mixed):
            rule[mixed] = np.take(pp.row_rule, np.take(rr, np.take(pos, mixed)))
        return _Openers(pos, grp, rule)

    def _retries(self, pp: PreparedPlan, rr: I64, gi: I64, gg: I32, f_pos: I64, f_grp: I32, f_rule: I32) -> _Openers:
        """Openers to try after the failed ones (``f_*``: positions in the call, groups, rules):
        for each failed group, its first later parcel of another rule. Parcels of the failed
        rule in between cannot open the group either (chute states only fill up within a call),
        so they route like parcels without a group chute; a parcel of another rule tries its
        own pool, which routing one by one would do as well (rare: a group's members usually
        share a destination)."""
        flag = np.zeros(len(self.group_chute), bool)
        flag[f_grp] = True
        at = np.zeros(len(self.group_chute), np.int64)
        at[f_grp] = f_pos
        why = np.zeros(len(self.group_chute), np.int32)
        why[f_grp] = f_rule
        mem = np.flatnonzero(flag[gg])
        mem = mem[gi[mem] > at[gg[mem]]]
        r = pp.row_rule[rr[gi[mem]]]
        mem, r = mem[r != why[gg[mem]]], r[r != why[gg[mem]]]
        _, firsts = np.unique(gg[mem], return_index=True)  # ``mem`` is in call order
        firsts.sort()
        return _Openers(gi[mem[firsts]], gg[mem[firsts]], r[firsts].astype(np.int32))

    def _water_fill(self, pp: PreparedPlan, ok: npt.NDArray[np.bool_], op_rule: npt.NDArray[np.int32]) -> I64:
        """Pool slot for each new group, in order: the least-loaded acceptable slot of its rule,
        ties to pool order, loads growing as groups open (the sequence greedy choice makes);
        -1 when the rule has no acceptable slot.

        Rules are independent (a slot's load counts only its rule's groups), so each round
        places the earliest remaining new group of every rule at once: the least-loaded usable
        slot of each rule's pool, found column by column (ties go to the earlier slot). Rounds
        are few: a rule rarely opens more than a handful of groups in one call. Every pick
        raises ``slot_load`` (tentatively, like ``group_chute``: the block takes back those of
        the openers past its exact prefix, :meth:`_unplace` those of a call-wide placement)."""
        nk = len(op_rule)
        out = np.full(nk, -1, np.int64)
        if nk == 0:
            return out
        t = pp.tables
        if len(self._rule_seen) < t.n_rules:
            self._rule_seen = np.zeros(t.n_rules, np.int64)
        load = self.slot_load
        # Each opener's pool (first slot, length), read once from the narrow tables.
        base = np.take(pp.rule_pool_off, op_rule)
        plen = np.take(pp.rule_pool_len, op_rule)
        every_ok = bool(np.take(ok, pp.pool_chutes).all())  # usual: no pool chute full or down
        # A one-chute pool needs no choice (and no rounds): its slot, if the chute is usable.
        single = plen == 1
        one = np.flatnonzero(single)
        if len(one):
            s1 = np.take(base, one).astype(np.int64)
            if not every_ok:
                usable = np.take(ok, np.take(t.pool, s1))
                one, s1 = one[usable], s1[usable]  # (the others keep -1)
            out[one] = s1
            np.add.at(load, s1, 1)
        todo = np.flatnonzero(~single)
        while len(todo):
            first = _first_occurrence(np.take(op_rule, todo), todo, self._rule_seen)
            now = todo[first]
            todo = todo[~first]
            # Column by column over the pools (a few chutes each): strictly lower load wins,
            # so ties stay with the earlier slot; positions past a pool's end repeat its last
            # (never strictly lower than the best so far, which has seen it).
            b0 = np.take(base, now).astype(np.int64)
            pl = np.take(plen, now)
            last = b0 + (pl - 1)
            best_load = np.take(load, b0)
            if not every_ok:
                best_load[~np.take(ok, np.take(t.pool, b0))] = _BIG
            best = np.zeros(len(now), np.int64)
            for j in range(1, int(pl.max())):
                sj = np.minimum(b0 + j, last)
                lj = np.take(load, sj)
                if not every_ok:
                    lj[~np.take(ok, np.take(t.pool, sj))] = _BIG
                better = lj < best_load
                np.minimum(best_load, lj, out=best_load)
                best[better] = j
            pick = b0 + best
            if not every_ok:
                got = best_load != _BIG
                pick, now = pick[got], now[got]
            out[now] = pick
            load[pick] += 1  # one pick per rule per round: no repeats
        return out

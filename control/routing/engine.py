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
only that rule's groups, the sequence of choices of a rule's new groups is a closed form
(water filling), computed for all of them at once with one ``lexsort``.

Feedback keeps the counts true: routing adds a parcel to a chute's *pending* count; a
confirmation moves it to *filled* (of the chute it really entered); a miss removes it; a drain
or bag change empties *filled*.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from control.config.site import Site
from control.routing.manifest import Manifest
from control.routing.plan import SortPlan, check_against_site
from control.routing.postal import postal_key
from control.routing.reasons import ReadStatus, Reason
from control.routing.settings import RoutingSettings
from control.routing.tables import PlanTables, SiteTables, compile_plan

I64 = npt.NDArray[np.int64]
ArrayLike = npt.ArrayLike

_EXC_NONE = 0


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
        self._row_group = manifest.group if self.settings.consolidation else np.full(len(manifest), -1, np.int32)
        ng = len(manifest.group_names)
        self.group_expected = manifest.expected
        self.group_sorted = np.zeros(ng, np.int64)
        self.group_chute = np.zeros(ng, np.int16)
        self.group_slot = np.full(ng, -1, np.int64)
        self._seen = np.zeros(max(ng, 1), np.int64)
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
    def prepare_plan(self, plan: SortPlan) -> PreparedPlan:
        """Compile ``plan`` and resolve every manifest row's rule; no engine state changes."""
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
        return PreparedPlan(t, row_rule, cand, len(self.st.chain))

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
            first_row = np.full(len(self.group_chute), -1, np.int64)
            g = self.manifest.group
            rows = np.flatnonzero(g >= 0)
            first_row[g[rows][::-1]] = rows[::-1]
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

    @property
    def plan(self) -> SortPlan:
        return self._plan.tables.plan

    # ---------------------------------------------------------------- state
    def set_available(self, mask: ArrayLike) -> None:
        """Chutes the PLC reports usable (not full, disabled or faulted), indexed by chute id.
        The reject chute is always taken: it is the end of the line."""
        m = np.asarray(mask, dtype=bool)
        self.available[:] = False
        self.available[: min(len(m), self.st.size)] = m[: self.st.size]
        self.available[0] = False

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
        known = (rows >= 0) & (rows < len(self.manifest))
        rr = np.where(known, rows, 0)
        exc = np.where(known, self._row_exc[rr], _EXC_NONE).astype(np.uint8) if len(self._row_exc) else np.zeros(n, np.uint8)
        rule = np.where(known, pp.row_rule[rr], -1) if len(pp.row_rule) else np.full(n, -1, np.int32)
        if label_key is not None:
            lk = np.asarray(label_key, np.int64)
            lab = ~known & (lk >= 0)
            if lab.any():
                rule[lab] = t.rule_for_keys(lk[lab])
        else:
            lab = np.zeros(n, bool)
        exc[~known & ~lab] = Reason.UNKNOWN_PARCEL
        exc[(exc == 0) & (rule < 0)] = Reason.NO_RULE
        if read is not None:
            rd = np.asarray(read, np.int64)
            for status, reason in ((ReadStatus.BAD_READ, Reason.BAD_READ), (ReadStatus.MULTI_READ, Reason.MULTI_READ),
                                   (ReadStatus.NO_READ, Reason.NO_READ)):
                exc[rd == status] = reason
            exc[rd > 3] = Reason.BAD_READ
        if recirculations is not None:
            exc[np.asarray(recirculations) > st.recirculation_limit] = Reason.RECIRCULATION_LIMIT
        normal = exc == 0
        # Every known parcel reports its group, exceptions too: its confirmation counts towards
        # the group's completion wherever it went.
        group = np.where(known, self._row_group[rr], -1).astype(np.int32) if len(self._row_group) else np.full(n, -1, np.int32)
        rule_c = np.maximum(rule, 0)
        prio_chute = t.prio[rule_c] if len(t.prio) else np.zeros(n, np.int16)
        due = known & normal & (prio_chute > 0)
        if due.any():
            dl = self.manifest.deadline[rr]
            due &= (dl - np.asarray(now, np.float64)) < self.settings.priority_margin_s
        cons = np.where(due | ~normal, -1, group)
        # Candidate list per parcel (group parcels get theirs per block).
        off = np.where(normal, pp.cand_base + t.cand_off[rule_c], 0) if len(t.cand_off) else np.zeros(n, np.int64)
        ln = np.where(normal, t.cand_len[rule_c], 1) if len(t.cand_len) else np.ones(n, np.int64)
        prim = np.where(normal, t.pool_len[rule_c], 1) if len(t.pool_len) else np.ones(n, np.int64)
        base = np.where(normal, Reason.SORTED_BY_RULE, exc).astype(np.uint8)
        fixed = np.where(due, prio_chute, np.where(normal, 0, self._exc_chute[exc])).astype(np.int64)
        has_fixed = fixed > 0
        off = np.where(has_fixed, st.chain_off[fixed], off)
        ln = np.where(has_fixed, st.chain_len[fixed], ln)
        prim = np.where(has_fixed, 1, prim)
        base = np.where(due, np.uint8(Reason.PRIORITY), base)
        out_chute = np.zeros(n, np.int16)
        out_reason = np.zeros(n, np.uint8)
        p = 0
        block = self.settings.block
        while p < n:
            e = min(n, p + block)
            q = self._route_block(pp, p, e, rule, cons, off, ln, prim, base, out_chute, out_reason)
            p += q
        return Decisions(out_chute, out_reason, group)

    def _route_block(
        self, pp: PreparedPlan, p: int, e: int, rule: npt.NDArray[np.int32], cons: npt.NDArray[np.int32],
        off_all: I64, ln_all: I64, prim_all: I64, base_all: npt.NDArray[np.uint8],
        out_chute: npt.NDArray[np.int16], out_reason: npt.NDArray[np.uint8],
    ) -> int:
        """Route parcels p..e-1 speculatively; commit the exact prefix; return its length."""
        st, t = self.st, pp.tables
        reject = st.reject
        load0 = self.pending + self.filled
        ok = self.available & (load0 < st.capacity)
        ok[reject] = True
        m = e - p
        off = off_all[p:e].copy()
        ln = ln_all[p:e].copy()
        prim = prim_all[p:e].copy()
        base = base_all[p:e].copy()
        direct = np.zeros(m, np.int64)  # chute chosen outright (group openers)
        g = cons[p:e]
        gi = np.flatnonzero(g >= 0)
        opener_pos = np.zeros(0, np.int64)
        opener_slot = np.zeros(0, np.int64)
        if len(gi):
            gg = g[gi]
            gc = self.group_chute[gg].astype(np.int64)
            new = gc == 0
            if new.any():
                ni = gi[new]
                ng = gg[new]
                self._seen[ng[::-1]] = ni[::-1]
                is_first = self._seen[ng] == ni
                opener_pos = ni[is_first]
                opener_slot = self._water_fill(t, ok, rule[p:e][opener_pos])
                chosen = np.where(opener_slot >= 0, t.pool[np.maximum(opener_slot, 0)], 0).astype(np.int64)
                self._seen[ng[is_first]] = chosen  # reuse scratch: group -> chute chosen this block
                gc[new] = self._seen[ng]
                direct[opener_pos] = chosen
            follow = gc > 0
            fi = gi[follow]
            off[fi] = st.chain_off[gc[follow]]
            ln[fi] = st.chain_len[gc[follow]]
            prim[fi] = 1
            base[gi] = Reason.CONSOLIDATED
        # First acceptable candidate of each parcel.
        chute = direct.copy()
        pos = np.zeros(m, np.int64)
        todo = np.flatnonzero(chute == 0)
        cand = pp.cand
        k = 0
        while len(todo):
            c = cand[off[todo] + k].astype(np.int64)
            good = ok[c]
            chute[todo[good]] = c[good]
            pos[todo[good]] = k
            k += 1
            todo = todo[~good]
            exhausted = ln[todo] <= k
            gone = todo[exhausted]
            chute[gone] = reject
            pos[gone] = ln[gone]
            todo = todo[~exhausted]
        # Capacity check: the first parcel that would overflow a chute ends the exact prefix.
        cnt = np.bincount(chute, minlength=st.size)
        over = np.flatnonzero(load0 + cnt > st.capacity)
        q = m
        for oc in over.tolist():
            if oc == reject:
                continue
            room = int(st.capacity[oc] - load0[oc])
            q = min(q, int(np.flatnonzero(chute == oc)[room]))
        reason = base
        fell = (pos >= prim) & (base < Reason.NO_RULE)
        if fell.any():
            first = cand[off[fell]].astype(np.int64)
            reason = reason.copy()
            reason[fell] = np.where(self.available[first], Reason.FALLBACK_FULL, Reason.CHUTE_UNAVAILABLE)
        out_chute[p : p + q] = chute[:q]
        out_reason[p : p + q] = reason[:q]
        self.pending += np.bincount(chute[:q], minlength=st.size)
        if len(opener_pos):
            keep = (opener_pos < q) & (opener_slot >= 0)
            op, sl = opener_pos[keep], opener_slot[keep]
            grp = g[op]
            self.group_chute[grp] = t.pool[sl]
            self.group_slot[grp] = sl
            np.add.at(self.slot_load, sl, 1)
        return q

    def _water_fill(self, t: PlanTables, ok: npt.NDArray[np.bool_], op_rule: npt.NDArray[np.int32]) -> I64:
        """Pool slot for each new group, in order: the least-loaded acceptable slot of its rule,
        ties to pool order, loads growing as groups open (the sequence greedy choice makes)."""
        nk = len(op_rule)
        out = np.full(nk, -1, np.int64)
        if nk == 0:
            return out
        order = np.argsort(op_rule, kind="stable")
        rs = op_rule[order].astype(np.int64)
        ur, first, counts = np.unique(rs, return_index=True, return_counts=True)
        rank = np.arange(nk) - np.repeat(first, counts)
        # Every acceptable slot of each rule, repeated once per level it may reach.
        plen = t.pool_len[ur]
        slot = np.repeat(t.pool_off[ur], plen) + (np.arange(plen.sum()) - np.repeat(np.cumsum(plen) - plen, plen))
        srule = np.repeat(np.arange(len(ur)), plen)
        good = ok[t.pool[slot].astype(np.int64)]
        slot, srule = slot[good], srule[good]
        reps = counts[srule]
        pslot = np.repeat(slot, reps)
        prule = np.repeat(srule, reps)
        m = np.arange(len(pslot)) - np.repeat(np.cumsum(reps) - reps, reps)
        level = self.slot_load[pslot] + m
        o = np.lexsort((pslot, level, prule))
        pslot, prule = pslot[o], prule[o]
        # Rule u's picks start where its pairs start in the sorted order.
        n_pairs = np.bincount(prule, minlength=len(ur))
        start = np.cumsum(n_pairs) - n_pairs
        ui = np.repeat(np.arange(len(ur)), counts)
        has = n_pairs[ui] > 0
        res = np.full(nk, -1, np.int64)
        res[has] = pslot[start[ui[has]] + rank[has]]
        out[order] = res
        return out

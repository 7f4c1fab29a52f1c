"""Realistic synthetic workloads: a site of any size, a sort plan for it, and a manifest.

Used by the tests, the benchmark and the example data in ``config/``. Everything is
vectorised so that a 10-million-row manifest takes seconds; the same seed gives the same data.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pacsv

from control.routing.ids import S10_WEIGHTS
from control.routing.manifest import HEADER
from control.routing.plan import Rule, SortPlan
from plant.site import Chute, ChuteKind, Diverter, Site, Sorter

COUNTRIES = ("GB", "DE", "FR", "NL", "IE", "BE")
START = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
U8 = npt.NDArray[np.uint8]


def synthetic_site(n_chutes: int = 300, capacity: int = 60, drain_per_min: float = 40) -> Site:
    """A loop sorter with ``n_chutes`` destination chutes, 4 priority and 3 exception chutes."""
    total = n_chutes + 7
    pitch = 1200.0
    chutes = []
    for i in range(1, total + 1):
        fb: tuple[int, ...]
        if i <= n_chutes:
            kind, fb = ChuteKind.NORMAL, (i + 1 if i % 2 else i - 1,) if n_chutes > 1 else ()
            if i == n_chutes and n_chutes % 2:
                fb = (i - 1,) if i > 1 else ()
        elif i <= n_chutes + 4:
            kind, fb = ChuteKind.PRIORITY, (n_chutes + 1 + (i - n_chutes) % 4,)
        else:
            kind = (ChuteKind.OVERSIZE, ChuteKind.NO_READ, ChuteKind.REJECT)[i - n_chutes - 5]
            fb = ()
        fb = tuple(f for f in fb if f != i)
        chutes.append(Chute(
            id=i, name=f"C{i:03d}", kind=kind, capacity=capacity, drain_per_min=drain_per_min,
            fallback=fb, diverter=Diverter(position_mm=6000 + pitch * i, window_mm=100, actuation_ms=30),
        ))
    return Site(
        name=f"synthetic-{n_chutes}",
        sorter=Sorter(length_mm=6000 + pitch * (total + 2), scanner_position_mm=3000,
                      max_parcel_length_mm=600, max_parcel_width_mm=500, max_parcel_height_mm=400),
        chutes=tuple(chutes),
    )


def generate_plan(site: Site, n_rules: int = 60, seed: int = 1, countries: tuple[str, ...] = COUNTRIES) -> SortPlan:
    """Country defaults, nested numeric postal prefixes (1-4 digits) and destination rules."""
    rng = np.random.default_rng(seed)
    normal = [c.id for c in site.chutes_of_kind(ChuteKind.NORMAL)]
    prio = [c.id for c in site.chutes_of_kind(ChuteKind.PRIORITY)]
    rules: list[Rule] = []

    def pool() -> tuple[int, ...]:
        k = int(rng.choice([1, 1, 2, 2, 3]))
        start = int(rng.integers(0, len(normal)))
        return tuple(normal[(start + 2 * j) % len(normal)] for j in range(min(k, len(normal))))

    def prio_chute() -> int | None:
        return int(rng.choice(prio)) if prio and rng.random() < 0.6 else None

    line = 2
    for c in countries:
        rules.append(Rule("", c, "", pool(), prio_chute(), f"{c} default", line))
        line += 1
    n_dest = max(1, n_rules // 10)
    seen: set[tuple[str, str]] = set()
    target_prefix = max(0, n_rules - len(rules) - n_dest)
    attempts = 0
    while len(seen) < target_prefix and attempts < target_prefix * 20:
        attempts += 1
        wide = target_prefix > 3000  # big plans need the whole prefix space
        c = countries[int(rng.integers(0, len(countries) if wide else min(len(countries), 3)))]
        k = int(rng.choice([1, 2, 3, 4, 5, 5, 5] if wide else [1, 2, 2, 3, 3, 3, 4, 4, 4, 4]))
        p = "".join(str(d) for d in rng.integers(0, 10, k))
        if (c, p) in seen:
            continue
        seen.add((c, p))
        rules.append(Rule("", c, p, pool(), prio_chute(), f"{c} {p}*", line))
        line += 1
    for i in range(n_dest):
        kind = "LB" if i % 3 else "CC"
        rules.append(Rule(f"{kind}-{i:05d}", "", "", pool(), prio_chute(),
                          "locker bank" if kind == "LB" else "county centre", line))
        line += 1
    return SortPlan(tuple(rules), "<generated>")


def _strings(mat: U8, lengths: npt.NDArray[np.int64]) -> pa.Array:
    """A pyarrow string array straight from a zero-padded byte matrix (no Python strings)."""
    w = mat.shape[1]
    mask = np.arange(w)[None, :] < lengths[:, None]
    data = mat[mask]
    offsets = np.zeros(len(mat) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.StringArray.from_buffers(len(mat), pa.py_buffer(offsets), pa.py_buffer(data.tobytes()))


def _digits(values: npt.NDArray[np.int64], width: int) -> U8:
    out = np.empty((len(values), width), np.uint8)
    v = values.copy()
    for j in range(width - 1, -1, -1):
        out[:, j] = 48 + v % 10
        v //= 10
    return out


def _ids(n: int, rng: np.random.Generator) -> pa.Array:
    """Unique, valid ids: about half S10 (``RR123456785CN``), half SSCC (18 digits)."""
    s10 = rng.random(n) < 0.5
    seq = np.arange(n, dtype=np.int64)
    serial = (seq * 7_919_393 + int(rng.integers(0, 10**8))) % 10**8  # distinct for n <= 1e8
    mat = np.zeros((n, 18), np.uint8)
    lengths = np.where(s10, 13, 18).astype(np.int64)
    d = _digits(serial, 8).astype(np.int64) - 48
    s = (d * np.array(S10_WEIGHTS)).sum(axis=1)
    chk = 11 - s % 11
    chk = np.where(chk == 10, 0, np.where(chk == 11, 5, chk))
    services = np.frombuffer(b"RRCPLXEEUA", np.uint8).reshape(5, 2)
    origin = np.frombuffer(b"CNGBDEUSFRNL", np.uint8).reshape(6, 2)
    svc = services[rng.integers(0, 5, n)]
    org = origin[rng.integers(0, 6, n)]
    s10_mat = np.concatenate([svc, (d + 48).astype(np.uint8), (48 + chk).astype(np.uint8)[:, None], org], axis=1)
    body = seq * 104_729 % 10**9 + 10**16 * (1 + seq % 9) + 10**9 * (seq // 10**9 + int(rng.integers(0, 10**6)))
    b = _digits(body, 17).astype(np.int64) - 48
    w = np.where(np.arange(17) % 2 == 0, 3, 1)
    chk2 = (10 - (b * w).sum(axis=1) % 10) % 10
    sscc_mat = np.concatenate([(b + 48).astype(np.uint8), (48 + chk2).astype(np.uint8)[:, None]], axis=1)
    mat[s10, :13] = s10_mat[s10]
    mat[~s10] = sscc_mat[~s10]
    return _strings(mat, lengths)


def _iso(ts: npt.NDArray[np.int64]) -> pa.Array:
    arr = ts.astype("datetime64[s]").astype(str)  # '2026-11-23T14:00:00'
    b = np.char.add(arr, "Z").astype("S20")
    mat = np.frombuffer(b.tobytes(), np.uint8).reshape(len(ts), 20)
    return _strings(mat, np.full(len(ts), 20, np.int64))


def _text(values: list[str], idx: npt.NDArray[np.int64]) -> pa.Array:
    """Strings picked from a small vocabulary, built as a dictionary array then decoded."""
    return pa.DictionaryArray.from_arrays(pa.array(idx.astype(np.int32)), pa.array(values)).cast(pa.string())


def generate_manifest(
    plan: SortPlan,
    n: int,
    seed: int = 1,
    *,
    start: datetime = START,
    hours: float = 8.0,
    group_share: float = 0.3,
    mean_group: float = 4.0,
    oversize_share: float = 0.01,
    unroutable_share: float = 0.005,
    urgent_share: float = 0.05,
) -> pa.Table:
    """A manifest table (the CSV columns, as strings) whose rows match the plan's rules."""
    rng = np.random.default_rng(seed)
    rules = plan.rules
    r = rng.integers(0, len(rules), n)
    is_dest = np.array([bool(x.destination_id) for x in rules])[r]
    countries = sorted({x.country for x in rules if x.country} | {"GB"})
    rule_country = np.array([countries.index(x.country) if x.country else 0 for x in rules])[r]
    unroutable = rng.random(n) < unroutable_share
    country_vocab = [*countries, "ZZ"]
    country_idx = np.where(unroutable & ~is_dest, len(countries), rule_country)
    # Postal: the rule's prefix followed by random digits up to five characters.
    prefixes = [x.prefix for x in rules]
    plen = np.array([len(p) for p in prefixes], np.int64)[r]
    pmat = np.zeros((n, 10), np.uint8)
    pref_mat = np.zeros((len(rules), 10), np.uint8)
    for i, p in enumerate(prefixes):
        if p:
            pref_mat[i, : len(p)] = np.frombuffer(p.encode(), np.uint8)
    pmat[:] = pref_mat[r]
    total = np.maximum(plen, 5)
    rand = (48 + rng.integers(0, 10, (n, 10))).astype(np.uint8)
    cols = np.arange(10)[None, :]
    pmat = np.where((cols >= plen[:, None]) & (cols < total[:, None]), rand, pmat)
    postal = _strings(pmat, total)
    dest_names = ["", *sorted({x.destination_id for x in rules if x.destination_id})]
    dest_pos = {d: i for i, d in enumerate(dest_names)}
    dest_idx = np.array([dest_pos[x.destination_id] for x in rules], np.int64)[r]
    # Arrival times spread over the shift; consolidation groups: members share the first
    # member's destination and arrive within half an hour of it.
    t0 = int(start.timestamp())
    arrival = t0 + np.sort(rng.integers(0, int(hours * 3600), n))
    group_key = np.zeros(n, np.int64)
    in_group = rng.random(n) < group_share
    members = np.flatnonzero(in_group)
    n_groups = max(1, int(len(members) / mean_group))
    gid = rng.integers(1, n_groups + 1, len(members))
    group_key[members] = gid
    order = np.argsort(gid, kind="stable")
    leader_of = np.zeros(n_groups + 1, np.int64)
    leader_of[gid[order][::-1]] = members[order][::-1]
    leader = leader_of[gid]
    for arr in (dest_idx, country_idx):
        arr[members] = arr[leader]
    pm = pmat.copy()
    pm[members] = pmat[leader]
    postal = _strings(pm, np.where(in_group, total[np.where(in_group, leader_of[group_key], 0)], total))
    arrival[members] = arrival[leader] + rng.integers(0, 1800, len(members))
    deadline = arrival + rng.integers(2 * 3600, 14 * 3600, n)
    urgent = rng.random(n) < urgent_share
    deadline[urgent] = arrival[urgent] + rng.integers(5 * 60, 40 * 60, int(urgent.sum()))
    keys_txt = np.char.add("ORD-", np.char.zfill(np.arange(n_groups + 1).astype(str), 7))
    keys_txt[0] = ""
    length = np.clip(rng.lognormal(5.4, 0.4, n), 80, 590)
    width = np.clip(length * rng.uniform(0.3, 0.9, n), 50, 490)
    height = np.clip(width * rng.uniform(0.2, 0.9, n), 10, 390)
    weight = np.clip(rng.lognormal(0.5, 0.8, n), 0.05, 29.5)
    big = rng.random(n) < oversize_share
    length[big] = rng.uniform(650, 1200, int(big.sum()))
    no_arrival = rng.random(n) < 0.002
    arrival_arr = _iso(arrival)
    arrival_arr = pa.array(np.where(no_arrival, "", arrival_arr.to_numpy(zero_copy_only=False)))
    return pa.table(
        [
            _ids(n, rng),
            _text(country_vocab, country_idx),
            postal,
            _text(dest_names, dest_idx),
            _text(list(keys_txt), group_key),
            _iso(deadline),
            arrival_arr,
            pa.array(np.round(length).astype(np.int64).astype(str)),
            pa.array(np.round(width).astype(np.int64).astype(str)),
            pa.array(np.round(height).astype(np.int64).astype(str)),
            pa.array(np.char.mod("%.2f", weight)),
        ],
        names=list(HEADER),
    )


def write_manifest_csv(table: pa.Table, path: str | Path) -> None:
    """Write the manifest with the exact plain header line the simulator expects."""
    p = Path(path)
    p.write_text(",".join(HEADER) + "\n", encoding="utf-8")
    with p.open("ab") as f:
        pacsv.write_csv(table, f, pacsv.WriteOptions(include_header=False, quoting_style="none"))

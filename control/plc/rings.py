"""Ring-buffer arithmetic shared by every driver and the simulator: which seqs are new, which lost.

A PLC->host ring of ``size`` slots holds entry ``seq`` in slot ``seq % size``; the PLC writes
the slot, then sets head = seq. A reader that last stored ``after_seq`` can still find entries
``head - size + 1 .. head``; anything older was overwritten. A slot whose own seq is not the
one expected was overwritten between the head read and the slot read (or the PLC broke the
write order): that entry is lost too, never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from control.plc.link import Gap, PlcValueError, RingRead
from plant.tagmap import ModbusRing
from plant.words import to_words

U32 = npt.NDArray[np.uint32]


def wanted(after_seq: int, head: int, size: int) -> tuple[range, Gap | None]:
    """The seqs still readable after ``after_seq``, and the gap of seqs already overwritten."""
    if head <= after_seq:
        return range(0), None
    first = max(after_seq + 1, head - size + 1)
    gap = Gap(after_seq + 1, first - 1) if first > after_seq + 1 else None
    return range(first, head + 1), gap


def slot_runs(seqs: range, size: int) -> list[tuple[int, int]]:
    """Contiguous (first_slot, n_slots) runs covering ``seqs`` (two when they wrap the ring end)."""
    if not seqs:
        return []
    first = seqs.start % size
    n = len(seqs)
    if first + n <= size:
        return [(first, n)]
    return [(first, size - first), (0, n - (size - first))]


def merge_gaps(lost: list[int]) -> list[Gap]:
    """Sorted lost seqs -> inclusive ranges."""
    out: list[Gap] = []
    for s in lost:
        if out and out[-1].last == s - 1:
            out[-1] = Gap(out[-1].first, s)
        else:
            out.append(Gap(s, s))
    return out


def collect(
    after_seq: int, head: int, size: int, columns: Mapping[str, npt.NDArray[np.integer]]
) -> RingRead:
    """Build a RingRead from whole-ring columns (one array of ``size`` per field, incl. ``seq``)."""
    if head < after_seq:
        return RingRead(head=head, restarted=True)
    seqs, gap = wanted(after_seq, head, size)
    if not seqs:
        return RingRead(head=head)
    want = np.arange(seqs.start, seqs.stop, dtype=np.int64)
    slots = want % size
    return _assemble(head, want, slots, columns, gap)


def collect_slots(
    after_seq: int, head: int, seqs: range, gap: Gap | None, columns: Mapping[str, npt.NDArray[np.integer]]
) -> RingRead:
    """Like ``collect`` but ``columns`` hold only the slots of ``seqs``, in seq order."""
    want = np.arange(seqs.start, seqs.stop, dtype=np.int64)
    return _assemble(head, want, np.arange(len(want)), columns, gap)


def _assemble(
    head: int,
    want: npt.NDArray[np.int64],
    rows: npt.NDArray[np.int64],
    columns: Mapping[str, npt.NDArray[np.integer]],
    gap: Gap | None,
) -> RingRead:
    got = {name: np.asarray(col)[rows].astype(np.int64) for name, col in columns.items()}
    ok = got["seq"] == want
    names = list(got)
    table = [got[n][ok].tolist() for n in names]
    entries = tuple(dict(zip(names, row, strict=True)) for row in zip(*table, strict=True))
    lost = want[~ok].tolist()
    gaps = merge_gaps(lost)
    if gap is not None:
        if gaps and gaps[0].first == gap.last + 1:
            gaps[0] = Gap(gap.first, gaps[0].last)
        else:
            gaps.insert(0, gap)
    return RingRead(head=head, entries=entries, gaps=tuple(gaps))


def command_words(link: str, ring: str, spec: ModbusRing, entries: Sequence[Mapping[str, int]]) -> tuple[dict[int, int], int]:
    """A host->PLC ring's slots for ``entries`` as {register address: word}, and the last seq.

    Checked before anything is sent: consecutive seqs from 1 up, known fields, values in
    range, no more entries than the ring has slots (the caller's flow control keeps it so)."""
    if len(entries) > spec.size:
        raise PlcValueError(f"{link}: {len(entries)} entries overflow ring {ring} of {spec.size}")
    words: dict[int, int] = {}
    prev: int | None = None
    for e in entries:
        extra = set(e) - set(spec.fields)
        if extra or "seq" not in e:
            raise PlcValueError(f"{link}: ring {ring} entry {dict(e)}: unknown fields {sorted(extra)} or no seq")
        seq = e["seq"]
        if seq < 1 or (prev is not None and seq != prev + 1):
            raise PlcValueError(f"{link}: ring {ring}: seqs must be consecutive and >= 1, got {seq} after {prev}")
        prev = seq
        a = spec.slot_address(seq)
        for f, fs in spec.fields.items():
            try:
                ws = to_words(int(e.get(f, 0)), fs.type)
            except ValueError as exc:
                raise PlcValueError(f"{link}: ring {ring} seq {seq} field {f}: {exc}") from None
            for i, w in enumerate(ws):
                words[a + fs.offset + i] = w
    if prev is None:
        raise PlcValueError(f"{link}: ring {ring}: no entries")
    return words, prev

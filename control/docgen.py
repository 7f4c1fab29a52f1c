"""Tables the docs take from the code, so a page cannot drift from what runs: the PLC interface
(docs/plc-interface.md) from config/tagmap.yaml and the PackML command table the belt follows
(plant/packml.py), the fault table (docs/operations.md) from control/faults.py.

``python -m control.docgen`` rewrites the generated blocks in place; ``--check`` exits 1 when a
page is stale (a test runs the same check).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from control.faults import FAULTS, Clears
from plant.codes import PackMLCommand, PackMLState
from plant.packml import ACCEPTS, ACTING_STATES, SC_NEXT
from plant.tagmap import TagMap, load_tag_map

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "plc-interface.md"
OPERATIONS = ROOT / "docs" / "operations.md"
TAGMAP = ROOT / "config" / "tagmap.yaml"
BLOCK = re.compile(r"(<!-- BEGIN GENERATED: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- END GENERATED -->)", re.S)
DIRECTION = {"r": "PLC → controller", "w": "controller → PLC"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(head: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def conveyor_tags(tm: TagMap) -> str:
    c = tm.conveyor
    rows = [
        [f"`{n}`", f"`ns=<{c.namespace_uri}>;s={t.node}`", t.type, DIRECTION[t.access], t.unit or "-", t.doc]
        for n, t in c.tags.items()
    ]
    return _table(["name", "NodeId", "type", "direction", "unit", "meaning"], rows)


def conveyor_rings(tm: TagMap) -> str:
    c = tm.conveyor
    rows: list[list[str]] = []
    for rn, r in c.rings.items():
        rows.append([f"`{rn}`", "head", f"`s={r.head}`", "UInt32", DIRECTION["r"], "seq of the newest entry written"])
        rows.append([f"`{rn}`", "ack", f"`s={r.ack}`", "UInt32", DIRECTION["w"], "seq of the newest entry the controller stored"])
        for f, node in r.fields.items():
            meaning = r.docs.get(f, "")
            rows.append([f"`{rn}`", f"field `{f}`", f"`s={node}`", f"UInt32[{r.size}]", DIRECTION["r"],
                         f"{meaning}{'; ' if meaning else ''}entry seq at index seq % {r.size}"])
    return _table(["ring", "part", "NodeId", "type", "direction", "meaning"], rows)


def diverter_registers(tm: TagMap) -> str:
    d = tm.diverter
    rows = []
    for n, r in d.registers.items():
        span = f"{r.address}" if r.words == 1 else f"{r.address}-{r.address + r.words - 1}"
        rows.append([f"`{n}`", span, f"4{r.address + 1:04d}", r.type, DIRECTION[r.access], r.unit or "-", r.doc])
    for rn, ring in d.rings.items():
        owner_head = "w" if ring.direction == "w" else "r"
        owner_ack = "r" if ring.direction == "w" else "w"
        for part, reg, own in (("head", ring.head, owner_head), ("ack", ring.ack, owner_ack)):
            rows.append([f"`{rn}.{part}`", f"{reg.address}-{reg.address + 1}", f"4{reg.address + 1:04d}", reg.type,
                         DIRECTION[own], "seq", reg.doc or f"{rn} ring {part}"])
    rows.sort(key=lambda r: int(r[1].split("-")[0]))
    return _table(["name", "address (0-based)", "1-based ref", "type", "direction", "unit", "meaning"], rows)


def diverter_rings(tm: TagMap) -> str:
    d = tm.diverter
    out = []
    for rn, r in d.rings.items():
        last = r.base + r.size * r.slot_words - 1
        out.append(
            f"**`{rn}`** ({DIRECTION[r.direction]}): {r.size} slots of {r.slot_words} registers at "
            f"{r.base}-{last}; entry `seq` lives at `{r.base} + (seq % {r.size}) * {r.slot_words}`; "
            f"head at {r.head.address}, ack at {r.ack.address}.\n\n"
        )
        rows = [[f"`{f}`", f"+{fs.offset}", fs.type, fs.doc or "-"] for f, fs in r.fields.items()]
        out.append(_table(["field", "offset", "type", "meaning"], rows) + "\n")
    return "".join(out).rstrip("\n") + "\n"


def diverter_blocks(tm: TagMap) -> str:
    d = tm.diverter
    bits = ", ".join(f"bit{b} {n}" for n, b in sorted(d.chute_status.bits.items(), key=lambda kv: kv[1]))
    rows = [
        ["`chute_status`", f"{d.chute_status.base}-{d.chute_status.base + d.chute_status.size - 1}", "uint16",
         DIRECTION["r"], f"register `{d.chute_status.base} + chute id`: {bits}"],
        ["`chute_fill`", f"{d.chute_fill.base}-{d.chute_fill.base + d.chute_fill.size - 1}", "uint16",
         DIRECTION["r"], f"register `{d.chute_fill.base} + chute id`: parcels in the chute"],
    ]
    return _table(["block", "addresses (0-based)", "type", "direction", "meaning"], rows) + (
        f"\nThe server serves holding registers 0-{d.register_span - 1} (register_span {d.register_span}); "
        "unused addresses in that range read 0 and refuse writes.\n"
    )


def belt_commands(tm: TagMap) -> str:
    """The strict PackML table: every state, the commands it accepts and where they lead."""
    rows = []
    for st in sorted(PackMLState, key=int):
        acc = ", ".join(f"{c.name.title()} ({int(c)}) → {dst.name.title()}" for c, dst in
                        sorted(ACCEPTS[st].items(), key=lambda kv: int(kv[0])))
        done = f"→ {SC_NEXT[st].name.title()}" if st in ACTING_STATES else "-"
        rows.append([f"{int(st)} {st.name.title()}", "acting" if st in ACTING_STATES else "wait", acc or "-", done])
    numbers = f"{min(map(int, PackMLCommand))}..{max(map(int, PackMLCommand))}"
    return _table(["state", "kind", "accepted commands (result 0) → state entered", "when its work is done"], rows) + (
        "\nA command not listed for the state it arrives in: `belt_command_result` 1 (refused), state unchanged. "
        f"A number outside {numbers}: result 2 (unknown command).\n"
    )


_CLEARS = {
    Clears.BY_ITSELF: "by itself, when the condition is gone",
    Clears.ON_RECOVERY: "by the recovery command itself (Unhold; diverter: a new `reset_seq`)",
    Clears.ON_RESET: "latched in the PLC until its next Reset",
    Clears.BY_OPERATOR: "by an operator (see Operator commands)",
    Clears.EVENT: "an event: raised and cleared at once",
}


def fault_table(tm: TagMap) -> str:
    """docs/operations.md's fault table, from control/faults.py."""
    rows = []
    for f, r in FAULTS.items():
        does = r.reaction.value.title() if r.reaction.command is not None else "alarm"
        back = "- (alarm only)" if r.reaction.command is None else "yes" if r.auto_clear else "no: operator"
        rows.append([f"`{f.name.lower()}` ({int(f)})", r.source, f"**{does}**" if does != "alarm" else does,
                     "yes" if r.no_entry else "no", _CLEARS[r.clears], back, r.why])
    return _table(["fault (code)", "source", "unit does", "no-entry", "clears", "back to Execute by itself", "why"],
                  rows)


SECTIONS = {
    "belt-commands": belt_commands,
    "fault-table": fault_table,
    "conveyor-tags": conveyor_tags,
    "conveyor-rings": conveyor_rings,
    "diverter-registers": diverter_registers,
    "diverter-rings": diverter_rings,
    "diverter-blocks": diverter_blocks,
}


def render(doc: str, tm: TagMap) -> str:
    """``doc`` with every generated block replaced by the tables for ``tm``."""
    def sub(m: re.Match[str]) -> str:
        name = m.group("name")
        if name not in SECTIONS:
            raise ValueError(f"unknown generated block {name!r}")
        return m.group(1) + SECTIONS[name](tm) + m.group(4)

    return BLOCK.sub(sub, doc)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--check", action="store_true", help="exit 1 if a page is stale; write nothing")
    p.add_argument("--doc", type=Path, action="append", help="page to render (default: every generated page)")
    p.add_argument("--tagmap", type=Path, default=TAGMAP)
    args = p.parse_args(argv)
    tm = load_tag_map(args.tagmap)
    stale = 0
    for doc in args.doc or (DOC, OPERATIONS):
        text = doc.read_text(encoding="utf-8")
        new = render(text, tm)
        if new == text:
            continue
        if args.check:
            print(f"{doc} is stale: run python -m control.docgen", file=sys.stderr)
            stale = 1
        else:
            doc.write_text(new, encoding="utf-8")
    return stale


if __name__ == "__main__":
    sys.exit(main())

"""The generated docs (PLC interface from the tag map and the PackML table, fault table from the
fault table) must be current."""

from __future__ import annotations

from control import docgen
from plant.tagmap import load_tag_map


def test_interface_doc_is_current() -> None:
    assert docgen.main(["--check"]) == 0, "run: python -m control.docgen"


def test_doc_names_every_node_and_register() -> None:
    tm = load_tag_map(docgen.TAGMAP)
    text = docgen.DOC.read_text(encoding="utf-8")
    for tag in tm.conveyor.tags.values():
        assert f"s={tag.node}`" in text
    for ring in tm.conveyor.rings.values():
        for node in (ring.head, ring.ack, *ring.fields.values()):
            assert f"s={node}`" in text
    for name in tm.diverter.registers:
        assert f"`{name}`" in text
    for name, ring in tm.diverter.rings.items():
        assert f"`{name}.head` | {ring.head.address}-" in text


def test_a_changed_tag_map_makes_the_doc_stale() -> None:
    tm = load_tag_map(docgen.TAGMAP)
    text = docgen.DOC.read_text(encoding="utf-8")
    moved = tm.diverter.registers["faults"].model_copy(update={"doc": "something else"})
    regs = {**tm.diverter.registers, "faults": moved}
    changed = tm.model_copy(update={"diverter": tm.diverter.model_copy(update={"registers": regs})})
    assert docgen.render(text, changed) != text
    assert docgen.render(text, tm) == text

"""Independent clients read our PLC servers as docs/plc-interface.md says: the doc's proof."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.attribute_ids import AttributeIds
from pymodbus.client import AsyncModbusTcpClient

from plant.tagmap import TagMap
from plant.words import to_words
from plc_sim.servers import ConveyorPlcServer, DiverterPlcServer

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def conveyor(tag_map: TagMap) -> AsyncIterator[ConveyorPlcServer]:
    async with ConveyorPlcServer(tag_map.conveyor) as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module")
async def diverter(tag_map: TagMap) -> AsyncIterator[DiverterPlcServer]:
    async with DiverterPlcServer(tag_map.diverter, device_id=3) as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module")
async def ua_client(conveyor: ConveyorPlcServer) -> AsyncIterator[Client]:
    client = Client(conveyor.url)
    await client.connect()
    yield client
    await client.disconnect()


async def test_browse_path_finds_every_tag_with_type_access_and_doc(
    ua_client: Client, tag_map: TagMap, conveyor: ConveyorPlcServer
) -> None:
    ns = await ua_client.get_namespace_index(tag_map.conveyor.namespace_uri)
    expect_type = {"Boolean": ua.ObjectIds.Boolean, "Int32": ua.ObjectIds.Int32,
                   "UInt32": ua.ObjectIds.UInt32, "Double": ua.ObjectIds.Double}
    for name, tag in tag_map.conveyor.tags.items():
        path = [f"{ns}:{part}" for part in tag.node.split(".")]
        node = await ua_client.nodes.objects.get_child(path)
        assert node.nodeid == ua.NodeId(tag.node, ns), name
        assert (await node.read_data_type()).Identifier == expect_type[tag.type], name
        access = (await node.read_attribute(AttributeIds.UserAccessLevel)).Value.Value
        assert bool(access & ua.AccessLevel.CurrentWrite.mask) == (tag.access == "w"), name
        assert (await node.read_description()).Text == tag.doc
        if tag.unit:
            eu = await node.get_child("0:EngineeringUnits")
            assert (await eu.read_value()).DisplayName.Text == tag.unit


async def test_ring_fields_are_uint32_arrays_of_the_ring_size(ua_client: Client, tag_map: TagMap) -> None:
    ns = await ua_client.get_namespace_index(tag_map.conveyor.namespace_uri)
    for ring in tag_map.conveyor.rings.values():
        for node_id in ring.fields.values():
            node = ua_client.get_node(ua.NodeId(node_id, ns))
            value = await node.read_data_value()
            assert value.Value.VariantType == ua.VariantType.UInt32
            assert len(value.Value.Value) == ring.size
            assert await node.read_value_rank() == 1
        head = ua_client.get_node(ua.NodeId(ring.head, ns))
        with pytest.raises(ua.UaStatusCodeError):
            await head.write_value(ua.Variant(5, ua.VariantType.UInt32))
        ack = ua_client.get_node(ua.NodeId(ring.ack, ns))
        await ack.write_value(ua.Variant(0, ua.VariantType.UInt32))


async def test_write_with_the_wrong_variant_type_is_refused(ua_client: Client, tag_map: TagMap) -> None:
    ns = await ua_client.get_namespace_index(tag_map.conveyor.namespace_uri)
    node = ua_client.get_node(ua.NodeId(tag_map.conveyor.tags["host_heartbeat"].node, ns))
    with pytest.raises(ua.UaStatusCodeError):
        await node.write_value(7)  # a plain int goes out as Int64
    await node.write_value(ua.Variant(7, ua.VariantType.UInt32))


async def test_raw_pymodbus_reads_registers_as_documented(diverter: DiverterPlcServer, tag_map: TagMap) -> None:
    diverter.write("encoder_count", 0x1234_ABCD)
    diverter.write("faults", 0b100)
    diverter.set_chute_status(29, 0b011)
    diverter.set_chute_fill(29, 57)
    client = AsyncModbusTcpClient("127.0.0.1", port=diverter.port, timeout=1, retries=0)
    await client.connect()
    try:
        regs = (await client.read_holding_registers(4, count=3, device_id=3)).registers
        assert regs == [0x1234, 0xABCD, 0b100]  # high word first, 0-based addresses
        assert client.convert_from_registers(regs[:2], client.DATATYPE.UINT32) == 0x1234_ABCD
        status = tag_map.diverter.chute_status.base
        fill = tag_map.diverter.chute_fill.base
        assert (await client.read_holding_registers(status + 29, count=1, device_id=3)).registers == [3]
        assert (await client.read_holding_registers(fill + 29, count=1, device_id=3)).registers == [57]
        # host writes a host-owned register; the PLC sees the documented value
        await client.write_registers(2, to_words(0xDEAD_BEEF, "uint32"), device_id=3)
        assert diverter.read("host_heartbeat") == 0xDEAD_BEEF
        # a PLC-owned register refuses the write with an exception response
        assert (await client.write_registers(4, [0, 0], device_id=3)).isError()
        assert diverter.read("encoder_count") == 0x1234_ABCD
        # past the block: illegal address
        assert (await client.read_holding_registers(tag_map.diverter.register_span, count=1, device_id=3)).isError()
    finally:
        client.close()


async def test_hand_made_modbus_frame_reads_the_heartbeat(diverter: DiverterPlcServer) -> None:
    """An independent Modbus TCP implementation in 10 lines: MBAP header + function 3."""
    diverter.write("plc_heartbeat", 0x0102_0304)
    reader, writer = await asyncio.open_connection("127.0.0.1", diverter.port)
    try:
        # transaction 0x4242, protocol 0, length 6, unit 3 | fc 3, address 0, count 2
        writer.write(struct.pack(">HHHBBHH", 0x4242, 0, 6, 3, 3, 0, 2))
        await writer.drain()
        header = await asyncio.wait_for(reader.readexactly(7), 2)
        tid, proto, length, unit = struct.unpack(">HHHB", header)
        assert (tid, proto, unit) == (0x4242, 0, 3)
        body = await asyncio.wait_for(reader.readexactly(length - 1), 2)
        fc, nbytes, hi, lo = struct.unpack(">BBHH", body)
        assert (fc, nbytes) == (3, 4)
        assert (hi << 16) | lo == 0x0102_0304
    finally:
        writer.close()
        await writer.wait_closed()


async def test_other_device_ids_get_no_data(diverter: DiverterPlcServer) -> None:
    diverter.write("plc_heartbeat", 99)
    client = AsyncModbusTcpClient("127.0.0.1", port=diverter.port, timeout=0.3, retries=0)
    await client.connect()
    try:
        try:
            rr = await client.read_holding_registers(0, count=2, device_id=1)
        except Exception:  # silence (timeout) is also a correct refusal
            return
        assert rr.isError()
    finally:
        client.close()

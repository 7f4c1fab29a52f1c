"""Site and tag map files: the example loads; bad files are refused with file, line and field."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from control.service.settings import ServiceSettings, load_service_settings
from plant.errors import ConfigError
from plant.site import ChuteKind, load_site
from plant.tagmap import load_tag_map
from plant.words import from_words, to_words
from sortctl.cli import main
from vision.camstream import CameraFrame, StreamError, encode_frame, read_frame

CONFIG = Path(__file__).resolve().parent.parent / "config"


def test_example_site_loads() -> None:
    site = load_site(CONFIG / "site.yaml")
    assert len(site.chutes_of_kind(ChuteKind.NORMAL)) >= 24
    assert site.reject_chute.kind is ChuteKind.REJECT
    positions = [c.diverter.position_mm for c in site.chutes]
    assert len(set(positions)) == len(positions), "two diverters at one position"


def test_example_tag_map_loads() -> None:
    tags = load_tag_map(CONFIG / "tagmap.yaml")
    assert {"induct", "scan"} <= set(tags.conveyor.rings)
    assert {"arm", "arm_result", "confirm"} <= set(tags.diverter.rings)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_bad_field_names_file_line_and_field(tmp_path: Path) -> None:
    text = (CONFIG / "site.yaml").read_text()
    lines = text.splitlines()
    # corrupt the capacity of the third chute
    idx = [i for i, line in enumerate(lines) if line.strip().startswith("- {id:")][2]
    lines[idx] = lines[idx].replace("capacity: 60", "capacity: -3")
    p = _write(tmp_path, "site.yaml", "\n".join(lines))
    with pytest.raises(ConfigError) as info:
        load_site(p)
    err = info.value
    assert err.file == str(p)
    assert err.line == idx + 1
    assert err.field == "chutes[2].capacity"
    assert str(p) in str(err) and "capacity" in str(err)


def test_example_service_settings_are_the_defaults_and_name_every_key() -> None:
    assert load_service_settings(CONFIG / "service.yaml") == ServiceSettings()
    text = (CONFIG / "service.yaml").read_text()
    assert all(f"\n{name}:" in text for name in ServiceSettings.model_fields)


def test_bad_service_setting_refuses_to_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _write(tmp_path, "service.yaml", "cycle_s: 0.01\ndecode_deadline_s: -1\n")
    with pytest.raises(ConfigError) as info:
        load_service_settings(bad)
    assert (info.value.line, info.value.field) == (2, "decode_deadline_s")
    # sortctl run stops before it touches a PLC: exit 2, file, line and field on stderr
    code = main(["run", "--site", str(CONFIG / "site.yaml"), "--settings", str(bad), "--db", str(tmp_path / "e.db")])
    assert code == 2
    assert f"{bad}:2: decode_deadline_s" in capsys.readouterr().err
    assert main(["run", "--site", str(CONFIG / "site.yaml"), "--cycle-ms", "0", "--db", str(tmp_path / "e.db")]) == 2
    assert "--cycle-ms" in capsys.readouterr().err


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    text = (CONFIG / "site.yaml").read_text().replace("  speed_mps:", "  sped_mps: 3\n  speed_mps:")
    p = _write(tmp_path, "site.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_site(p)
    assert info.value.field == "sorter.sped_mps"
    assert info.value.line is not None


def test_duplicate_key_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="duplicate key"):
        load_site(_write(tmp_path, "a.yaml", "name: a\nname: b\n"))
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_site(_write(tmp_path, "b.yaml", "name: [unclosed\nsorter: 1\n"))
    assert info.value.line is not None


def test_fallback_to_unknown_chute_is_refused(tmp_path: Path) -> None:
    text = (CONFIG / "site.yaml").read_text().replace("fallback: [2]", "fallback: [777]", 1)
    with pytest.raises(ConfigError, match="777"):
        load_site(_write(tmp_path, "site.yaml", text))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_site(tmp_path / "nope.yaml")


def test_overlapping_registers_are_refused(tmp_path: Path) -> None:
    text = (CONFIG / "tagmap.yaml").read_text().replace("base: 700", "base: 420", 1)
    with pytest.raises(ConfigError, match="overlap"):
        load_tag_map(_write(tmp_path, "tagmap.yaml", text))


@given(st.integers(0, 0xFFFFFFFF))
def test_uint32_words_round_trip_high_word_first(v: int) -> None:
    words = to_words(v, "uint32")
    assert words == [v >> 16, v & 0xFFFF]
    assert from_words(words, "uint32") == v


@given(st.integers(-0x80000000, 0x7FFFFFFF))
def test_int32_words_round_trip(v: int) -> None:
    assert from_words(to_words(v, "int32"), "int32") == v


@pytest.mark.parametrize(("value", "type_"), [(-1, "uint16"), (0x10000, "uint16"), (2**32, "uint32"), (2**31, "int32")])
def test_out_of_range_values_are_refused(value: int, type_: str) -> None:
    with pytest.raises(ValueError, match="out of range"):
        to_words(value, type_)


@pytest.mark.parametrize("encoding", ["gray8", "png"])
async def test_camera_stream_round_trip_over_tcp(encoding: str) -> None:
    rng = np.random.default_rng(1)
    frames = [
        CameraFrame(seq=i, tracking_id=100 + i, trigger_count=2**32 - 5 + i, camera="top",
                    timestamp=1.5 * i, image=rng.integers(0, 256, (48, 64), dtype=np.uint8))
        for i in range(3)
    ]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for f in frames:
            writer.write(encode_frame(f, encoding))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    got = [await read_frame(reader) for _ in frames]
    with pytest.raises(asyncio.IncompleteReadError):
        await read_frame(reader)
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    for a, b in zip(frames, got, strict=True):
        assert (a.seq, a.tracking_id, a.trigger_count, a.camera) == (b.seq, b.tracking_id, b.trigger_count, b.camera)
        assert np.array_equal(a.image, b.image)


async def test_camera_stream_rejects_garbage() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"HTTP/1.1 200 OK\r\n\r\n")
    reader.feed_eof()
    with pytest.raises(StreamError, match="bad magic"):
        await read_frame(reader)


def test_configuration_reference_names_every_service_setting() -> None:
    doc = (CONFIG.parent / "docs" / "configuration.md").read_text()
    section = doc[doc.index("## `service.yaml`"):]
    assert all(f"| `{name}` |" in section for name in ServiceSettings.model_fields)


def test_configuration_reference_names_every_plc_endpoint_field() -> None:
    from plant.site import Camera, ModbusEndpoint, OpcuaEndpoint

    doc = (CONFIG.parent / "docs" / "configuration.md").read_text()
    section = doc[doc.index("### `plc`"):doc.index("## `service.yaml`")]
    for model in (OpcuaEndpoint, ModbusEndpoint, Camera):
        for name in model.model_fields:
            assert f".{name}`" in section or f"`{name}`" in section, (model.__name__, name)

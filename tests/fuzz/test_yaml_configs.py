"""Site, tag map, routing settings, service settings and scenario files from arbitrary bytes and
from mutations of the valid example files: a model or a ConfigError with file and line."""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from control.routing.settings import load_settings, settings_from_text
from control.service.settings import load_service_settings
from plant.errors import ConfigError
from plant.site import load_site
from plant.tagmap import load_tag_map
from plc_sim.scenario import load_scenario
from tests.fuzz.conftest import ANY_TEXT, CONFIG, FEW, FUZZ, check_config_error, mutate

pytestmark = pytest.mark.timeout(60)

LOADERS: dict[str, tuple[Callable[[Path], Any], Path]] = {
    "site": (load_site, CONFIG / "site.yaml"),
    "tagmap": (load_tag_map, CONFIG / "tagmap.yaml"),
    "routing": (load_settings, CONFIG / "routing.yaml"),
    "service": (load_service_settings, CONFIG / "service.yaml"),
    "scenario": (load_scenario, CONFIG / "scenarios" / "faults.yaml"),
}


def _load(kind: str, data: bytes) -> None:
    loader, _example = LOADERS[kind]
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        path = Path(tmp) / f"{kind}.yaml"
        path.write_bytes(data)
        try:
            loader(path)
        except ConfigError as exc:
            check_config_error(exc, path, data)


@pytest.mark.parametrize("kind", sorted(LOADERS))
@FUZZ
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes(kind: str, data: bytes) -> None:
    _load(kind, data)


@pytest.mark.parametrize("kind", sorted(LOADERS))
@FUZZ
@given(text=ANY_TEXT)
def test_arbitrary_text(kind: str, text: str) -> None:
    _load(kind, text.encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize("kind", sorted(LOADERS))
@FUZZ
@given(seed=st.integers(0, 2**32 - 1), edits=st.integers(1, 6))
def test_mutated_example_files(kind: str, seed: int, edits: int) -> None:
    text = LOADERS[kind][1].read_text(encoding="utf-8")
    _load(kind, mutate(text, random.Random(seed), edits).encode("utf-8", "surrogatepass"))


@FEW
@given(text=ANY_TEXT)
def test_routing_settings_from_an_upload(text: str) -> None:
    try:
        settings_from_text(text, "upload.yaml")
    except ConfigError as exc:
        check_config_error(exc, "upload.yaml", text)


@pytest.mark.parametrize("doc", [
    "a: &a [*a]\n",  # an alias that contains itself
    "a: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    "g: [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n",  # a billion laughs
    "[" * 5000 + "]" * 5000,  # nesting deeper than the composer's recursion
    "? [1, 2]\n: x\n",  # a key that is not a plain value
    "name: !!python/object/apply:os.system ['true']\n",
    "sorter:\n  length_mm: .inf\n",
])
def test_hostile_yaml_is_a_config_error_quickly(doc: str) -> None:
    for kind in LOADERS:
        with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
            path = Path(tmp) / "x.yaml"
            path.write_text(doc, encoding="utf-8")
            with pytest.raises(ConfigError) as err:
                LOADERS[kind][0](path)
            check_config_error(err.value, path, doc)

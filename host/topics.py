"""The ISA-95 topic tree of one sorter: ``<site>/<area>/<sorter>/...``, built in one place."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["REQUEST_KINDS", "Topics", "parse_request_topic"]

_LEVEL = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # no '/', '+', '#', spaces: a plain topic level
REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
REQUEST_KINDS = ("manifest", "plan", "plan-rollback")


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic the relay publishes or subscribes to, for one sorter."""

    site: str
    area: str
    sorter: str

    def __post_init__(self) -> None:
        for name, value in (("site", self.site), ("area", self.area), ("sorter", self.sorter)):
            if not _LEVEL.match(value):
                raise ValueError(f"{name} {value!r}: letters, digits, '_', '.', '-' only (1-64), it is a topic level")

    @property
    def root(self) -> str:
        return f"{self.site}/{self.area}/{self.sorter}"

    @property
    def status(self) -> str:
        return f"{self.root}/status"

    @property
    def confirmation(self) -> str:
        return f"{self.root}/parcel/confirmation"

    @property
    def recirculation(self) -> str:
        return f"{self.root}/parcel/recirculation"

    @property
    def state(self) -> str:
        return f"{self.root}/unit/state"

    @property
    def alarm(self) -> str:
        return f"{self.root}/unit/alarm"

    @property
    def event(self) -> str:
        return f"{self.root}/unit/event"

    @property
    def counters(self) -> str:
        return f"{self.root}/counters"

    @property
    def requests(self) -> str:
        """The subscription filter for the host's requests."""
        return f"{self.root}/request/#"

    def request(self, kind: str, request_id: str) -> str:
        return f"{self.root}/request/{kind}/{request_id}"

    def response(self, request_id: str) -> str:
        return f"{self.root}/response/{request_id}"

    @property
    def everything(self) -> str:
        return f"{self.root}/#"


def parse_request_topic(topics: Topics, topic: str) -> tuple[str, str] | str:
    """``(kind, request id)`` of a request topic, or why it is not one (a string)."""
    prefix = f"{topics.root}/request/"
    if not topic.startswith(prefix):
        return f"not a request topic: {topic[:200]!r}"
    parts = topic[len(prefix):].split("/")
    if len(parts) != 2:
        return f"a request topic is {prefix}<kind>/<request id>, not {topic[:200]!r}"
    kind, rid = parts
    if kind not in REQUEST_KINDS:
        return f"unknown request kind {kind[:64]!r} (expected one of {', '.join(REQUEST_KINDS)})"
    if not REQUEST_ID.match(rid):
        return f"request id {rid[:200]!r}: 1-128 of letters, digits, '_', '.', ':', '-'"
    return kind, rid

"""The relay: the event store published to the host over MQTT, and the host's requests taken
to the running controller.

At least once, nothing lost: every message is published with QoS 1, and a stream's cursor
moves (in the relay's state file) only after the broker acknowledged every message up to it
(PUBACK). A crash, a kill or a broker outage of any length therefore ends in re-sending what
was not acknowledged - with the same event ids, so the host drops the copies.

Requests arrive on a persistent session (the broker keeps them while the relay is away) and
are acknowledged to the broker only once recorded in the state file; the state file is then
the queue the controller is fed from, one request at a time, and the record of every request
id already answered (a replay gets the same answer again and is not applied twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from host.endpoint import BrokerEndpoint
from host.handover import Handover, errors_of
from host.messages import counters, encode, response, status
from host.outbox import Batch, StoreTail
from host.requests import MAX_PAYLOAD, check_request
from host.state import PendingRequest, RelayState
from host.topics import Topics, parse_request_topic
from plant.site import Site

__all__ = ["Relay", "RelayConfig"]

log = logging.getLogger(__name__)


class _OncePerOutage(logging.Filter):
    """The MQTT client's own messages (a TLS alert, a refused socket) say why a connection
    failed, but it repeats them at every retry of an outage that may last hours: each distinct
    message passes once until the relay is connected again."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if msg in self.seen:
            return False
        if len(self.seen) < 100:
            self.seen.add(msg)
        return True


_client_log = logging.getLogger(__name__ + ".mqtt")
_client_once = _OncePerOutage()
_client_log.addFilter(_client_once)


@dataclass(frozen=True, slots=True)
class RelayConfig:
    db: Path
    topics: Topics
    site: Site
    broker: BrokerEndpoint = field(default_factory=BrokerEndpoint)
    state_file: Path | None = None  # default: beside the store, <db>.relay-<sorter>.sqlite
    poll_s: float = 0.02  # how often the store is read for new rows when idle
    batch: int = 200  # rows per stream per read, published concurrently, then one cursor write (aiomqtt and
    # paho scan their in-flight lists on every publish: far bigger batches get slower, not faster)
    counters_s: float = 10.0
    keepalive_s: int = 10
    publish_timeout_s: float = 10.0
    max_payload: int = MAX_PAYLOAD
    client_id: str = ""  # default: sortcentre-relay-<site>-<area>-<sorter>
    reconnect_s: tuple[float, float] = (0.2, 5.0)  # first and longest wait between connection attempts

    @property
    def state_path(self) -> Path:
        return self.state_file or self.db.with_name(f"{self.db.name}.relay-{self.topics.sorter}.sqlite")

    @property
    def identifier(self) -> str:
        t = self.topics
        return self.client_id or f"sortcentre-relay-{t.site}-{t.area}-{t.sorter}"


@dataclass(slots=True)
class RelayStats:
    """What the relay did in this process (tests and the bench read it)."""

    published: int = 0
    connects: int = 0
    requests: int = 0
    ignored: list[str] = field(default_factory=list)  # why payloads were not taken


class _Stopping(Exception):
    """The relay was asked to stop: ends the connection's task group."""


class Relay:
    def __init__(self, cfg: RelayConfig) -> None:
        self.cfg = cfg
        self.topics = cfg.topics
        self.state = RelayState(cfg.state_path)
        self.tail = StoreTail(cfg.db, cfg.topics)
        self.handover = Handover(cfg.db)
        self.stats = RelayStats()
        self.connected = asyncio.Event()
        self.relay_id = f"{socket.gethostname()}:{os.getpid()}"
        self._cursors = self.state.cursors()
        self._wake = asyncio.Event()
        self._down_since: float | None = None
        self._behind_warned = False

    def close(self) -> None:
        self.tail.close()
        self.handover.close()
        self.state.close()

    # ------------------------------------------------------------------ connection
    async def run(self, stop: asyncio.Event) -> None:
        """Connect, publish, take requests; reconnect with backoff until ``stop`` is set."""
        first, longest = self.cfg.reconnect_s
        delay = first
        while not stop.is_set():
            try:
                await self._session(stop)
                delay = first
            except* (aiomqtt.MqttError, OSError, TimeoutError) as eg:
                self.connected.clear()
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    log.warning("broker %s: %s; retrying (publishing resumes from the last acknowledged row)",
                                self.cfg.broker.url, _first(eg))
            if not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(longest, delay * 2)

    def _client(self) -> aiomqtt.Client:
        will = aiomqtt.Will(self.topics.status, encode(status(self.topics.sorter, False, time.time(),
                                                              "connection lost (last will)", self.relay_id)),
                            qos=1, retain=True)
        client = aiomqtt.Client(
            **self.cfg.broker.client_options(), identifier=self.cfg.identifier, clean_session=False, logger=_client_log,
            will=will, keepalive=self.cfg.keepalive_s, timeout=self.cfg.publish_timeout_s,
            max_inflight_messages=50,
        )
        client.pending_calls_threshold = 1 << 30  # thousands of publishes in flight is our normal
        # a request is acknowledged to the broker only once it is recorded (see _take): paho's
        # manual acknowledgement is not exposed by aiomqtt, so it is set on its paho client
        client._client.manual_ack_set(True)
        return client

    async def _session(self, stop: asyncio.Event) -> None:
        async with self._client() as client:
            self.stats.connects += 1
            _client_once.seen.clear()
            if self._down_since is not None:
                log.warning("broker %s back after %.1f s", self.cfg.broker.url,
                            time.monotonic() - self._down_since)
                self._down_since = None
            await client.publish(self.topics.status, encode(status(self.topics.sorter, True, time.time(), "connected",
                                                                   self.relay_id)), qos=1, retain=True)
            await client.subscribe(self.topics.requests, qos=1)
            self.connected.set()
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._publish_loop(client))
                    tg.create_task(self._intake(client))
                    tg.create_task(self._worker(client))
                    tg.create_task(self._counters_loop(client))
                    tg.create_task(_raise_when(stop))
            except* _Stopping:
                pass
            # a clean stop: say so (retained), then disconnect cleanly (no last will)
            with contextlib.suppress(aiomqtt.MqttError):
                await client.publish(self.topics.status, encode(status(self.topics.sorter, False, time.time(),
                                                                       "relay stopped", self.relay_id)),
                                     qos=1, retain=True, timeout=2.0)
            self.connected.clear()

    # ------------------------------------------------------------------ store -> host
    async def _publish_loop(self, client: aiomqtt.Client) -> None:
        while True:
            _checkpoint()
            try:
                batch = self.tail.fetch(self._cursors, self.cfg.batch)
                if not batch:
                    self._check_not_behind()
            except Exception as exc:  # a locked, missing or half-created store: keep trying, the cursor is safe
                log.warning("reading %s: %s", self.cfg.db, exc)
                self.tail.close()
                await asyncio.sleep(1.0)
                continue
            if not batch:
                await asyncio.sleep(self.cfg.poll_s)
                continue
            await self._publish(client, batch)

    async def _publish(self, client: aiomqtt.Client, batch: Batch) -> None:
        """Publish every message of the batch concurrently; move the cursors once all are acked."""
        timeout = self.cfg.publish_timeout_s
        async with asyncio.TaskGroup() as tg:
            for m in batch.messages:
                tg.create_task(client.publish(m.topic, m.payload, qos=1, retain=m.retain, timeout=timeout))
        self.state.advance(batch.cursors, batch.counts)
        self._cursors.update(batch.cursors)
        self.stats.published += len(batch.messages)

    def _check_not_behind(self) -> None:
        """A cursor past the store's last row: the store was replaced or emptied under the
        relay. Said once, loudly: new rows below the cursor would not be published."""
        if self._behind_warned:
            return
        top = self.tail.max_ids()
        behind = {s: c for s, c in self._cursors.items() if top and c > top.get(s, 0)}
        if behind:
            self._behind_warned = True
            log.error("the relay's cursors %s are past the store's last rows %s: was %s replaced? Start the relay"
                      " with a new --state-file for a new store", behind, top, self.cfg.db)

    async def _counters_loop(self, client: aiomqtt.Client) -> None:
        while True:
            _checkpoint()
            since, totals = self.state.totals()
            kinds = ("sorted", "rejected", "lost", "missorted", "recirculated")
            payload = counters(
                self.topics.sorter, time.time(), since, {k: totals.get(f"total:{k}", 0) for k in kinds},
                _group(totals, "reason:"), _group(totals, "chute:"), self.tail.health(),
            )
            await client.publish(self.topics.counters, encode(payload), qos=1, retain=True)
            _checkpoint()
            await asyncio.sleep(self.cfg.counters_s)

    # ------------------------------------------------------------------ host -> controller
    async def _intake(self, client: aiomqtt.Client) -> None:
        async for msg in client.messages:
            _checkpoint()
            await self._take(client, msg)
            client._client.ack(msg.mid, msg.qos)  # recorded (or answered): the broker may forget it

    async def _take(self, client: aiomqtt.Client, msg: aiomqtt.Message) -> None:
        topic = msg.topic.value
        payload = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload or "").encode()
        parsed = parse_request_topic(self.topics, topic)
        if isinstance(parsed, str):
            self._ignore(parsed)
            nack = response(self.topics.sorter, "_invalid", "", time.time(), accepted=False, stage="relay",
                            result=f"refused: {parsed}")
            await client.publish(self.topics.response("_invalid"), encode(nack), qos=1)
            return
        kind, rid = parsed
        self.stats.requests += 1
        known = self.state.known(rid)
        if known is not None:
            log.info("request %s again (a redelivery or a replay): answered once, not applied again", rid)
            if known[0] == "sent":
                self.state.answer(rid, _json(known[1]))  # send the same answer again
                self._wake.set()
            return
        try:
            checked = await asyncio.to_thread(check_request, kind, rid, payload, self.cfg.site, self.cfg.max_payload)
        except Exception as exc:  # a bug in a checker must cost one request, not the relay
            log.exception("checking request %s", rid)
            self._ignore(f"request {rid}: internal error {type(exc).__name__}")
            self.state.take(rid, kind, time.time(), response=response(
                self.topics.sorter, rid, kind, time.time(), accepted=False, stage="relay",
                result=f"refused: internal error while checking ({type(exc).__name__})"))
        else:
            if checked.ok:
                self.state.take(rid, kind, time.time(), command=checked.command, args=checked.args)
            else:
                self._ignore(f"request {rid}: {checked.reason}")
                self.state.take(rid, kind, time.time(), response=response(
                    self.topics.sorter, rid, kind, time.time(), accepted=False, stage="relay",
                    result=f"refused: {checked.reason}", errors=checked.errors))
        self._wake.set()

    def _ignore(self, why: str) -> None:
        log.warning("host request refused: %s", why[:500])
        self.stats.ignored.append(why[:500])
        del self.stats.ignored[:-100]

    async def _worker(self, client: aiomqtt.Client) -> None:
        """Send answers not yet acknowledged; hand the oldest pending request over and wait
        for the controller's answer (one at a time: the controller prepares one plan or
        pre-advice batch at a time and refuses a second meanwhile)."""
        while True:
            _checkpoint()
            for rid, resp in self.state.unsent():
                await client.publish(self.topics.response(rid), encode(resp), qos=1)
                self.state.sent(rid)
            pending = self.state.pending()
            if pending and await self._step(pending[0]):
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.05 if pending else 1.0)

    async def _step(self, p: PendingRequest) -> bool:
        """Queue ``p`` for the controller if not yet; True once it has been answered. The
        store is touched in a worker thread, the state file only here (one thread owns it)."""
        cid = p.command_id
        if cid is None:
            cid = await asyncio.to_thread(self._queue, p)
            self.state.handed_over(p.request_id, cid)
            log.info("request %s (%s) handed to the controller as command %d", p.request_id, p.command, cid)
        done, result = await asyncio.to_thread(self.handover.result, cid)
        if not done:
            return False
        accepted = result.startswith("accepted")
        self.state.answer(p.request_id, response(
            self.topics.sorter, p.request_id, p.kind, time.time(), accepted=accepted, stage="controller",
            result=result, errors=[] if accepted else errors_of(result), command_id=cid))
        log.info("request %s: %s", p.request_id, result[:300])
        return True

    def _queue(self, p: PendingRequest) -> int:
        return self.handover.find(p.command, p.request_id) or self.handover.queue(p.command, p.args)


def _checkpoint() -> None:
    """Honour a cancellation that was swallowed: on Python 3.11 ``asyncio.wait_for`` (which
    aiomqtt's publish uses) can eat the CancelledError when its inner future completes at the
    moment of the cancel, and the task then loops on as if nothing happened - a task group
    waiting for it never ends. Every loop calls this once a round."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _raise_when(stop: asyncio.Event) -> None:
    await stop.wait()
    raise _Stopping


def _group(totals: dict[str, int], prefix: str) -> dict[str, int]:
    return {k[len(prefix):]: n for k, n in sorted(totals.items()) if k.startswith(prefix)}


def _json(text: str) -> dict[str, Any]:
    data = json.loads(text)
    assert isinstance(data, dict)
    return data


def _first(eg: BaseExceptionGroup[BaseException]) -> str:
    exc: BaseException = eg
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"

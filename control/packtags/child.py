"""The PackTags process: ``python -m control.packtags.child``, started by PackTagsProcess.

Why a process of its own: building the asyncua server (its standard address space plus the
PackML NodeSet) is ~3-4 s of pure Python, and answering SCADA clients is more Python; in a
thread of the controller that holds the GIL long enough to trip the PLC's host watchdog
(measured: a 150-285 ms late cycle while it built). Here it costs the controller nothing but
one small JSON line per refresh.

Protocol, JSON lines. stdin: the settings first ``{"packtags": {...}, "security": {...}}``, then
``{"snap": {...}}`` per refresh, ``{"stop": true}`` (or EOF) to end. stdout: ``{"ready": port}``
or ``{"error": text}`` once, then ``{"ack": n, "commands": [[name, args], ...]}`` per snapshot,
and ``{"log": [level, logger, text]}`` for log records (the controller logs them as its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from typing import Any

from control.packtags.model import Snapshot
from control.packtags.server import PackTagsServer
from control.service.settings import PackTagsSettings
from plant.opcua_security import OpcuaSecuritySettings

log = logging.getLogger("control.packtags")


def _emit(msg: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(msg, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class _ToParent(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # a closed stdout: nobody to tell
            _emit({"log": [record.levelno, record.name, record.getMessage()]})


async def _main() -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    first = json.loads(await reader.readline() or b"{}")
    cfg = PackTagsSettings.model_validate(first.get("packtags", {}))
    sec = OpcuaSecuritySettings.model_validate(first.get("security", {}))
    configure = None
    if sec.mode != "None":
        from plant.opcua_security import server_configurator

        configure = server_configurator(sec, cfg.users_file)
    server = PackTagsServer(cfg, configure)
    try:
        await server.start()
    except Exception as exc:
        _emit({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    _emit({"ready": server.port, "url": server.url})
    n = 0
    try:
        while line := await reader.readline():
            msg = json.loads(line)
            if msg.get("stop"):
                break
            if "snap" in msg:
                try:
                    await server.apply(Snapshot.from_json(msg["snap"]))
                    reqs = await server.take_requests()
                except Exception as exc:  # one bad refresh must not end the server
                    log.warning("packtags: refresh failed: %s: %s", type(exc).__name__, exc)
                    reqs = []
                n += 1
                _emit({"ack": n, "commands": [[r.name, r.args] for r in reqs]})
    finally:
        await server.stop()
    return 0


def main() -> int:
    root = logging.getLogger()
    root.addHandler(_ToParent())
    root.setLevel(logging.INFO)
    for noisy in ("asyncua",):  # its per-connection chatter; warnings about security still pass
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        return asyncio.run(_main())
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())

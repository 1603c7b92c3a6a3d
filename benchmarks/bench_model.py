"""What the scenarios, tools and reports share: settings, where a run writes, images and tools."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench_images import BuiltImage, LayerFormat
from bench_infra import Registry, child_env
from bench_measure import Measurement
from bench_proxy import Proxy

MIB = 1024 * 1024
GB = 1000**3
TOOL_KEYS = (
    "bulkpull",
    "skopeo-seq",
    "skopeo-par",
    "skopeo-sync",
    "floor",
    "floor-tee",
    "floor-cat",
)
"""What ``--tools`` chooses from; a scenario runs those of its own that are chosen."""


@dataclass(frozen=True)
class Settings:
    """Everything the command line decides."""

    repeat: int
    bulkpull: tuple[str, ...]
    """The command that starts bulkpull."""
    bulkpull_args: tuple[str, ...]
    """Extra arguments for every bulkpull pull (and copy) run."""
    tools: frozenset[str]
    skopeo_parallel: int
    floor_parallel: int
    timeout: float
    shared_images: int
    shared_base_sizes: tuple[int, ...]
    shared_unique_sizes: tuple[int, ...]
    shared_format: LayerFormat
    """Layer format of every scenario but ``large``."""
    large_size: int
    large_format: LayerFormat
    rss_target_mib: float
    many_images: int = 100
    many_base_sizes: tuple[int, ...] = (MIB, MIB // 2)
    many_unique_size: int = 256 * 1024
    wan_rtt: float = 0.04
    """Seconds of added round-trip time."""
    wan_rate: int = 20 * MIB
    """Bytes per second per connection and direction."""
    fault_unavailable: float = 0.1
    fault_reset: float = 0.2
    fault_seed: int = 1
    fault_max_streak: int = 2
    fault_retry_delay: float = 0.05
    disk_interval: float = 0.025
    """Seconds between two samples of a run's disk use."""
    bulkpull_push_args: tuple[str, ...] = ()
    """Extra arguments for every ``bulkpull push`` run."""
    target_namespace: str = "mirror"
    """Namespace in the target registry that push and copy write below."""
    copy_sets: tuple[str, ...] = ("shared", "many")
    """The image sets the copy scenario copies."""
    floor_hasher: str = "openssl"
    """What hashes in the ``curl | tee | HASHER`` floor: ``openssl`` or ``sha256sum``."""
    copy_rtt: float = 0.0
    """Seconds of round-trip time added between the copying tools and the source registry."""


@dataclass(frozen=True)
class Context:
    """What a scenario works with.

    Every measured run gets the directory :attr:`run_root` afresh: the tool's output
    (:attr:`out`), its ``TMPDIR`` (:attr:`scratch`) and its working directory. Its size is what
    the disk columns report.
    """

    settings: Settings
    registry: Registry
    workdir: Path
    """A directory of the scenario's own, removed afterwards."""
    counts_writes: bool
    """Whether the work directory's file system counts ``write_bytes`` (tmpfs does not)."""

    @property
    def run_root(self) -> Path:
        return self.workdir / "run"

    @property
    def out(self) -> Path:
        return self.run_root / "out"

    @property
    def scratch(self) -> Path:
        return self.run_root / "tmp"

    @property
    def env(self) -> dict[str, str]:
        return child_env(self.scratch)


@dataclass(frozen=True)
class Route:
    """Where the tools pull from: the registry itself, or a proxy in front of it."""

    host: str
    """``127.0.0.1:PORT``."""
    proxy: Proxy | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}"


@dataclass(frozen=True)
class Pullable:
    """One image in the registry, as the tools name it."""

    repository: str
    """``repo`` without registry and tag."""
    archive_name: str
    """``repo:tag``: the name skopeo writes into a docker-archive."""
    image: BuiltImage

    def reference(self, route: Route) -> str:
        """``127.0.0.1:PORT/repo:tag`` by way of ``route``."""
        return f"{route.host}/{self.archive_name}"


Timing = Callable[[Callable[[], Measurement]], Measurement]
"""Runs a measured command and adds what the servers around it spent meanwhile."""


@dataclass(frozen=True)
class Tool:
    """A way of handling a scenario's images; ``run`` writes below an empty ``out``."""

    key: str
    """One of :data:`TOOL_KEYS` (what ``--tools`` chooses), or a scenario's own variant."""
    label: str
    run: Callable[[Path], Measurement]
    check: Callable[[Path], None]
    moved_bytes: int
    """Blob bytes one run downloads or uploads (shared blobs once or per image, as it does)."""
    group: str = ""
    """Rows of one group are compared with the group's bulkpull row (copy: set and state)."""

    @property
    def id(self) -> str:
        return f"{self.group}: {self.key}" if self.group else self.key


def distinct_blobs(pullables: Sequence[Pullable]) -> dict[str, int]:
    """Size of every distinct blob (configs and layers) of the images, by digest."""
    return {blob.digest: blob.size for p in pullables for blob in p.image.blobs}


def summed_bytes(pullables: Sequence[Pullable]) -> int:
    """Blob bytes of every image, shared blobs counted again for each image."""
    return sum(p.image.pulled_bytes for p in pullables)


def mib(size: float) -> str:
    return f"{size / MIB:.1f} MiB"


def size_text(size: int) -> str:
    return f"{size / MIB:.1f} MiB" if size >= MIB else f"{size / 1024:.0f} KiB"

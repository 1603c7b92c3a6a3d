"""Fixtures for tests against real components: registry, Docker engine, skopeo, the CLI.

Every test in this directory is marked ``real``. A missing component skips the test with the
reason; under ``CI=true`` the same condition fails it (see ``services.unavailable``).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.loaders import Containerd, start_containerd
from support.matrix import INTEROP
from support.services import (
    DockerEngine,
    Registry,
    require_tool,
    start_dockerd,
    start_registry,
    unavailable,
)
from support.testimages import PushedImages, build_and_push
from support.testreferrers import SignedImages, attach_to_test_images

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.real)


@pytest.fixture(scope="session")
def real_tool() -> Callable[[str], str]:
    """``real_tool("skopeo")``: the tool's path, or skip (fail under ``CI=true``) when missing."""
    return require_tool


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A distribution registry on 127.0.0.1 (plain HTTP) for the whole session."""
    with start_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerEngine]:
    """A private Docker engine on a unix socket for the whole session; ``.env`` for clients."""
    with start_dockerd(tmp_path_factory.mktemp("dockerd")) as engine:
        yield engine


@pytest.fixture(scope="session")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    """A private containerd (Debian's) on a unix socket for the whole session; ``.ctr(...)``."""
    with start_containerd(tmp_path_factory.mktemp("containerd")) as daemon:
        yield daemon


@pytest.fixture(scope="session")
def pushed_images(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> PushedImages:
    """The test image set, pushed to ``registry`` with digests checked."""
    require_tool("skopeo")
    return build_and_push(registry, tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="session")
def signed_images(pushed_images: PushedImages) -> SignedImages:
    """A cosign signature, an SBOM attestation and an oras SBOM for four of the test images."""
    return attach_to_test_images(pushed_images)


@pytest.fixture(scope="session")
def bulkpull_command() -> list[str]:
    """The command line that starts the bulkpull CLI of this environment."""
    try:
        found = importlib.util.find_spec("bulkpull.cli") is not None
    except ImportError:
        found = False
    if not found:
        unavailable("the bulkpull CLI (module bulkpull.cli) is not installed")
    script = Path(sys.executable).parent / "bulkpull"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "bulkpull"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the interop matrix (if its tests ran) and write it to $BULKPULL_MATRIX_FILE."""
    text = INTEROP.render()
    if text:
        terminalreporter.write_sep("=", "interop matrix (image x output x loader)")
        terminalreporter.write_line(text)
        written = INTEROP.write()
        if written is not None:
            terminalreporter.write_line(f"(written to {written})")

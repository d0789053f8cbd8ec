"""Downloads against a local server speaking the Hub's protocol, through the real huggingface_hub client."""

from __future__ import annotations

import hashlib
import itertools
import os
from pathlib import Path

import pytest

from llmctl.catalog.downloads import DownloadError, FileFinished, FileStarted, HubDownloader, safe_name

REPO = "org/tiny-GGUF"


@pytest.fixture(autouse=True)
def _online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the "Hub" here is a loopback test server


@pytest.fixture
def payload() -> bytes:
    return os.urandom(3 * 1024 * 1024 + 123)


def _pull(dl: HubDownloader, select=lambda n: n.endswith(".gguf")) -> list:
    return list(dl.pull(dl.plan(REPO, select)))


def _blobs(cache: Path) -> list[Path]:
    """Blobs and partial files (not the empty lock files beside them)."""
    return sorted(p for p in (cache / "models--org--tiny-GGUF" / "blobs").iterdir() if p.suffix != ".lock")


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


# a hostile mirror (HF_ENDPOINT is user-set: its names, digests, sizes and redirects are hostile) ---------------
def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() or p.is_symlink()]


@pytest.mark.parametrize("commit", ["../../../../escape", "main", "0123456789ABCDEF0123456789ABCDEF01234567"])
def test_a_malformed_commit_is_refused_before_it_becomes_a_path(hub, payload, tmp_path, commit: str) -> None:
    hub.add_file(REPO, "m.gguf", payload)
    hub.commit = commit
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="refusing the commit"):
        _pull(HubDownloader(cache, endpoint=hub.url))
    assert _files_under(tmp_path) == []
    assert not [r for r in hub.requests if "/resolve/" in r[1]]


@pytest.mark.parametrize("sha", ["../../../../../escape", "A" * 64, "0" * 63, "0" * 64 + "/x"])
def test_a_malformed_lfs_sha256_is_refused_before_it_becomes_a_path(hub, payload, tmp_path, sha: str) -> None:
    hub.add_file(REPO, "m.gguf", payload)
    hub.lie_sha256 = sha
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match=r"refusing the sha256 of m\.gguf"):
        HubDownloader(cache, endpoint=hub.url).plan(REPO, lambda n: True)
    assert _files_under(tmp_path) == []


def test_a_path_that_resolves_outside_the_repo_folder_is_refused(hub, payload, tmp_path) -> None:
    hub.add_file(REPO, "m.gguf", payload)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    folder = tmp_path / "models--org--tiny-GGUF"
    folder.mkdir()
    (folder / "snapshots").symlink_to(outside)  # planted: a snapshot folder that leads out of the cache
    with pytest.raises(DownloadError, match="outside the model cache"):
        _pull(HubDownloader(tmp_path, endpoint=hub.url))
    assert list(outside.iterdir()) == []


def test_a_body_longer_than_listed_is_not_read_past_its_size(hub, payload, tmp_path) -> None:
    hub.add_file(REPO, "m.gguf", payload)
    hub.oversize = 64 << 20
    with pytest.raises(DownloadError, match="more than the listed"):
        _pull(HubDownloader(tmp_path, endpoint=hub.url))
    assert _blobs(tmp_path) == []  # the untrusted partial went too
    assert hub.bytes_served() < len(payload) + (32 << 20)  # reading stopped; the 64 MiB tail never all came


def test_non_lfs_files_are_verified_by_git_blob_id(hub, tmp_path) -> None:
    hub.add_file(REPO, "tokenizer_config.json", b'{"eos": "</s>"}')
    hub.corrupt = True
    with pytest.raises(DownloadError, match="git blob id"):
        _pull(HubDownloader(tmp_path, endpoint=hub.url), lambda n: True)
    assert _blobs(tmp_path) == []


def test_a_new_revision_of_a_same_size_small_file_is_not_served_stale(hub, tmp_path) -> None:
    hub.add_file(REPO, "tokenizer_config.json", b'{"eos": "</s>"}')
    first = _pull(HubDownloader(tmp_path, endpoint=hub.url), lambda n: True)
    assert next(e for e in first if isinstance(e, FileFinished)).path.read_bytes() == b'{"eos": "</s>"}'
    hub.add_file(REPO, "tokenizer_config.json", b'{"eos": "<|e>"}')  # same size, new content
    assert len(b'{"eos": "<|e>"}') == len(b'{"eos": "</s>"}')
    hub.commit = "1" * 40
    again = _pull(HubDownloader(tmp_path, endpoint=hub.url), lambda n: True)
    done = next(e for e in again if isinstance(e, FileFinished))
    assert done.path.read_bytes() == b'{"eos": "<|e>"}' and done.downloaded == len(b'{"eos": "<|e>"}')
    assert done.path.parent.name == "1" * 40


def test_two_pulls_of_one_file_at_once_do_not_write_one_partial(hub, tmp_path) -> None:
    import threading

    payload = os.urandom(4 * 1024 * 1024)
    hub.add_file(REPO, "m.gguf", payload)
    hub.chunk_delay = 0.01
    results: dict[str, object] = {}

    def run(key: str) -> None:
        try:
            results[key] = _pull(HubDownloader(tmp_path, endpoint=hub.url))
        except Exception as exc:
            results[key] = exc

    first = threading.Thread(target=run, args=("first",))
    first.start()
    partial = tmp_path / "models--org--tiny-GGUF" / "blobs" / (hashlib.sha256(payload).hexdigest() + ".incomplete")
    for _ in range(400):
        if partial.exists() and partial.stat().st_size > 0:
            break
        threading.Event().wait(0.01)
    second = threading.Thread(target=run, args=("second",))
    second.start()
    first.join(60)
    second.join(60)
    assert not isinstance(results["first"], Exception), results["first"]
    assert not isinstance(results["second"], Exception), results["second"]
    assert [type(e).__name__ for e in results["second"]] == ["FileWaiting", "FileFinished"]
    blob = partial.with_name(partial.name.removesuffix(".incomplete"))
    assert blob.read_bytes() == payload
    assert hub.bytes_served() == len(payload)  # the second pull used the first one's blob


# retries: bounded, exponential, Retry-After honoured ------------------------------------------------------
def test_503_answers_are_retried_and_retry_after_is_honoured(hub, payload, tmp_path) -> None:
    hub.add_file(REPO, "m.gguf", payload)
    hub.status, hub.status_times, hub.retry_after = 503, 2, "1"
    events = _pull(HubDownloader(tmp_path, endpoint=hub.url, backoff=0.01))
    assert next(e for e in events if isinstance(e, FileFinished)).path.read_bytes() == payload
    resolves = [t for (m, p, _r), t in zip(hub.requests, hub.times, strict=True) if "/resolve/" in p]
    assert len(resolves) == 3
    assert all(b - a >= 0.9 for a, b in itertools.pairwise(resolves))  # Retry-After, not 0.01 s


def test_429_without_end_gives_up_after_bounded_retries(hub, payload, tmp_path) -> None:
    hub.add_file(REPO, "m.gguf", payload)
    hub.status = 429
    with pytest.raises(DownloadError, match=r"answered 429 for m.gguf 3 time\(s\)") as err:
        _pull(HubDownloader(tmp_path, endpoint=hub.url, retries=2, backoff=0.25))
    assert "run the same pull later to resume" in err.value.message
    resolves = [t for (_m, p, _r), t in zip(hub.requests, hub.times, strict=True) if "/resolve/" in p]
    assert len(resolves) == 3
    assert resolves[1] - resolves[0] >= 0.25 and resolves[2] - resolves[1] >= 0.5  # the backoff doubles


def test_a_retry_after_beyond_the_limit_ends_at_once(hub, payload, tmp_path) -> None:
    hub.add_file(REPO, "m.gguf", payload)
    hub.status, hub.retry_after = 503, "3600"
    with pytest.raises(DownloadError, match="asks to wait 3600 s"):
        _pull(HubDownloader(tmp_path, endpoint=hub.url, max_wait=5))
    assert len([r for r in hub.requests if "/resolve/" in r[1]]) == 1


def test_the_listing_is_retried_on_503(hub, payload, tmp_path) -> None:
    hub.add_file(REPO, "m.gguf", payload)
    hub.api_status, hub.status_times, hub.retry_after = 503, 1, "0"
    plan = HubDownloader(tmp_path, endpoint=hub.url).plan(REPO, lambda n: True)
    assert [f.name for f in plan.files] == ["m.gguf"]
    hub.status_times = None
    with pytest.raises(DownloadError, match=r"answered 503 when listing org/tiny-GGUF after 3 tries"):
        HubDownloader(tmp_path, endpoint=hub.url, retries=2).plan(REPO, lambda n: True)


def test_a_refused_connection_names_the_host_and_the_way_out(tmp_path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the with ends: nothing listens there
    with pytest.raises(DownloadError) as err:
        HubDownloader(tmp_path, endpoint=f"http://127.0.0.1:{port}").plan(REPO, lambda n: True)
    assert f"127.0.0.1:{port}" in err.value.title and "refused" in err.value.title
    assert "--offline" in err.value.message and "HF_ENDPOINT" in err.value.message


def test_a_stalled_body_times_out_with_a_sentence_and_keeps_the_partial(hub, payload, tmp_path) -> None:
    import httpx

    hub.add_file(REPO, "m.gguf", payload)
    hub.cut_after = 1_000_000
    with pytest.raises(DownloadError):
        _pull(HubDownloader(tmp_path, endpoint=hub.url))
    hub.cut_after, hub.stall = None, 1.5
    with pytest.raises(DownloadError) as err:
        _pull(HubDownloader(tmp_path, endpoint=hub.url, http=httpx.Client(timeout=0.3)))
    assert err.value.title.startswith("the download of m.gguf from 127.0.0.1:")
    assert "stopped at 1.0 of 3.0 MiB (32%): it did not answer in time" in err.value.title
    assert "partial file is kept" in err.value.message
    assert [p.stat().st_size for p in _blobs(tmp_path) if p.name.endswith(".incomplete")] == [1_000_000]

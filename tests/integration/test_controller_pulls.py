"""Pulls run by a real controller, from the local Hub test server (loopback): progress events, cancel (the partial
stays), resume, a joined second pull, and the model registered after."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from tiny_gguf import write_tiny_llama

from llmctl.app.client import wire
from llmctl.app.client.api import ControllerClient, ControllerError

sys.path.insert(0, str(Path(__file__).parents[1] / "tui"))
from shape_check import problems

REPO = "org/big-GGUF"
FILE = "big-F32.gguf"


async def _events(client: ControllerClient, pull_id: str, after: int = 0) -> list[dict]:
    return [e async for e in client.pull_events(pull_id, after)]


async def test_a_pull_through_the_controller_cancels_resumes_and_registers(controller, hub, tmp_path: Path) -> None:
    data = write_tiny_llama(tmp_path / "big.gguf", n_embd=512, n_vocab=8000, n_ff=1536).read_bytes()
    assert len(data) > 12 << 20  # several progress events (one every 4 MiB)
    hub.add_file(REPO, FILE, data)
    hub.chunk_delay = 0.01  # ~6 MB/s: slow enough to cancel mid-way
    hf_home = tmp_path / "hf"
    proc = controller(HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", HF_HOME=str(hf_home))
    async with ControllerClient(proc.url) as client:
        started = await client.start_pull(f"{REPO}:{FILE}")
        assert started["state"] == "downloading" and not started["joined"]
        assert problems(started, wire.StartedPull) == []
        assert started["files"][0]["name"] == FILE and started["total_bytes"] == len(data)
        joined = await client.start_pull(f"{REPO}:{FILE}")  # the same ref again joins the running pull
        assert joined["joined"] and joined["id"] == started["id"]
        seen: list[dict] = []
        async for event in client.pull_events(started["id"]):
            seen.append(event)
            if event["type"] == "progress" and event["done"] >= 4 << 20:
                break
        assert [e["type"] for e in seen][:2] in (["snapshot", "started"], ["started", "progress"])
        cancelled = await client.cancel_pull(started["id"])
        assert cancelled["state"] == "cancelled"
        assert "partial" in cancelled["error"]
        partial = next((hf_home / "hub" / "models--org--big-GGUF" / "blobs").glob("*.incomplete"))
        kept = partial.stat().st_size
        assert 0 < kept < len(data)
        tail = await _events(client, started["id"], after=seen[-1]["seq"])
        assert tail[-1]["type"] == "cancelled"  # the stream of a finished pull ends
        with pytest.raises(ControllerError) as again:
            await client.cancel_pull(started["id"])
        assert again.value.status == 409

        hub.chunk_delay = 0.0
        resumed = await client.start_pull(f"{REPO}:{FILE}", name="big")
        events = await _events(client, resumed["id"])
        kinds = [e["type"] for e in events]
        assert [problems(e, wire.PullEvent) for e in events + seen] == [[]] * len(events + seen)
        start = next(e for e in events if e["type"] == "started")
        assert start["resumed_from"] == kept  # resumed, not started over
        assert kinds[-2:] == ["registered", "done"] and events[-1]["model"] == "big"
        assert events[-1]["total_done"] == events[-1]["total"] == len(data)
        listed = await client.pulls()
        assert problems(listed, list[wire.PullStatus]) == []
        pulls = {p["id"]: p for p in listed}
        assert pulls[resumed["id"]]["state"] == "done" and pulls[started["id"]]["state"] == "cancelled"
        assert pulls[resumed["id"]]["files"][0]["state"] == "verified"
        models = {m["name"]: m for m in await client.models()}
        assert "big" in models and "models--org--big-GGUF/snapshots" in models["big"]["path"]
        ranges = [r for _m, path, r in hub.requests if path.startswith("/lfs/") and r]
        assert ranges and ranges[-1] == f"bytes={kept}-"

        with pytest.raises(ControllerError) as taken:  # the name is taken by another file: a clear 409
            hub.add_file(REPO, "other-Q8_0.gguf", data[:-1] + b"x")
            await client.start_pull(f"{REPO}:Q8_0", name="big")
        assert taken.value.status == 409 and "already belongs" in taken.value.message


async def test_offline_refuses_with_the_clis_sentence(controller, hub, tmp_path: Path) -> None:
    proc = controller(HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    async with ControllerClient(proc.url) as client:
        with pytest.raises(ControllerError) as refused:
            await client.start_pull(f"{REPO}:{FILE}")
    assert refused.value.status == 503
    assert "offline: cannot list org/big-GGUF" in refused.value.message
    assert "unset --offline / HF_HUB_OFFLINE to download" in refused.value.message
    assert not hub.requests


async def test_a_slow_hub_listing_holds_up_only_its_own_pull(controller, hub, tmp_path: Path) -> None:
    """The Hub takes 8 s to list one repo (bounds with seconds to spare: CI machines are loaded): another pull
    starts, and the pulls are listed, meanwhile; two starts of
    the slow ref at once share one listing and one pull."""
    import asyncio
    import time

    data = write_tiny_llama(tmp_path / "small.gguf").read_bytes()
    hub.add_file("org/slow-GGUF", "slow-Q4_0.gguf", data)
    hub.add_file("org/fast-GGUF", "fast-Q4_0.gguf", data)
    hub.api_delay["org/slow-GGUF"] = 8.0
    proc = controller(HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "hf"))
    async with ControllerClient(proc.url) as client:
        slow = [asyncio.ensure_future(client.start_pull("org/slow-GGUF:slow-Q4_0.gguf", name="slow"))
                for _ in range(2)]
        await asyncio.sleep(0.5)  # both starts are waiting for the Hub's listing
        t0 = time.monotonic()
        fast = await client.start_pull("org/fast-GGUF:fast-Q4_0.gguf", name="fast")
        listed = await client.pulls()
        took = time.monotonic() - t0
        assert took < 5.0, f"a pull start and the listing waited {took:.1f} s behind another repo's slow listing"
        assert not fast["joined"] and [p["id"] for p in listed] == [fast["id"]]
        assert not any(s.done() for s in slow)
        first, second = await asyncio.gather(*slow)
        assert first["id"] == second["id"] and sorted([first["joined"], second["joined"]]) == [False, True]
        infos = [p for _m, p, _r in hub.requests if p.startswith("/api/models/org/slow-GGUF/revision/")]
        assert len(infos) == 1  # one listing for both starts
        for pull in (fast, first):
            events = await _events(client, pull["id"])
            assert events[-1]["type"] == "done", events[-1]
        assert {"slow", "fast"} <= {m["name"] for m in await client.models()}


async def test_a_pull_start_still_listing_when_the_controller_stops_creates_no_pull(controller, hub,
                                                                                      tmp_path: Path) -> None:
    """A start waits 3 s for the Hub's listing while the controller is told to stop: it gets a clear 503 rather than
    a download nobody cancels, and the controller exits without waiting for one."""
    import asyncio
    import time

    data = write_tiny_llama(tmp_path / "big.gguf", n_embd=512, n_vocab=8000, n_ff=1536).read_bytes()
    hub.add_file("org/slow-GGUF", "slow-F32.gguf", data)
    hub.api_delay["org/slow-GGUF"] = 3.0
    hub.chunk_delay = 0.1  # a download would take ~20 s
    proc = controller(HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "hf"))
    async with ControllerClient(proc.url) as client:
        start = asyncio.ensure_future(client.start_pull("org/slow-GGUF:slow-F32.gguf", name="slow"))
        await asyncio.sleep(0.5)  # the start is waiting for the Hub's listing
        t0 = time.monotonic()
        await client.shutdown()
        with pytest.raises(ControllerError) as refused:
            await start
        assert refused.value.status == 503 and "stopping" in str(refused.value), refused.value
    assert await asyncio.to_thread(proc.proc.wait, 30) == 0
    took = time.monotonic() - t0
    assert took < 10, f"the controller took {took:.1f} s to exit: a pull created after it began stopping ran on"
    assert not [p for _m, p, _r in hub.requests if p.endswith("slow-F32.gguf")]  # no file was asked for

"""Control routes that touch files do it off the event loop, so one slow disk (or a store lock a CLI import holds)
never stalls every stream and every other request. The real controller, in-process; what runs where is observed with
an audit hook on ``open`` (nothing of llmctl's is replaced)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sys
import threading
import time

import httpx

from llmctl.app.controller.server import Controller
from llmctl.app.paths import resolve_paths
from llmctl.app.settings import load_settings
from llmctl.catalog.store import ModelStore
from llmctl.runtimes.process import free_port


class NoGpu:
    def read(self):
        return [], "no-device", "no GPU in this test"


async def start_controller() -> Controller:
    paths = resolve_paths()
    paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text('[engines.ollama]\nmode = "off"\n')
    controller = Controller(load_settings(paths, {"server.port": free_port()}), paths, gpu_probe=NoGpu())
    await controller.start()
    return controller


# which threads opened the watched file (an audit hook cannot be removed: it stays inert between tests)
_watched: dict[str, list[int]] = {}


def _audit(event: str, args: tuple) -> None:
    if event != "open" or not _watched or not isinstance(args[0], str | bytes | os.PathLike):
        return
    try:
        opened = os.fsdecode(os.fspath(args[0]))
    except (TypeError, ValueError):
        return
    if opened in _watched:
        _watched[opened].append(threading.get_ident())


sys.addaudithook(_audit)


async def test_a_log_is_read_off_the_event_loop() -> None:
    c = await start_controller()
    log = c.paths.logs_dir / "tiny.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(f"line {i}\n" for i in range(50)))
    _watched[str(log)] = []
    try:
        async with httpx.AsyncClient(base_url=c.url, timeout=10) as http:
            r = await http.get("/llmctl/v1/backends/tiny/logs", params={"tail": 3})
            assert r.status_code == 200, r.text
            assert r.json()["lines"] == ["line 47", "line 48", "line 49"]
            r = await http.get("/llmctl/v1/backends/nothing-here/logs")
            assert r.status_code == 404 and r.json()["error"]["code"] == "no_logs"
        readers = _watched[str(log)]
        assert readers and threading.get_ident() not in readers  # opened, never on the loop's thread
    finally:
        _watched.clear()
        await c.close()


async def test_removing_a_model_while_the_store_is_locked_leaves_the_controller_answering(tiny_gguf) -> None:
    """Another process (here: this test) holds the store's lock for 6 s; ``DELETE`` waits for it, /health does not
    (bounds with seconds to spare: CI machines are loaded)."""
    store = ModelStore(resolve_paths().data_dir)
    store.import_file(tiny_gguf, "tiny")
    c = await start_controller()
    lock_path = store.root / ".models.lock"
    holder = lock_path.open("a")
    fcntl.flock(holder, fcntl.LOCK_EX)
    release = threading.Timer(6.0, holder.close)  # closing the descriptor drops the flock
    _watched[str(lock_path)] = []
    try:
        async with httpx.AsyncClient(base_url=c.url, timeout=30) as http:
            t0 = time.monotonic()
            release.start()
            delete = asyncio.ensure_future(http.delete("/llmctl/v1/models/tiny",
                                                      headers={"Content-Type": "application/json"}))
            await asyncio.sleep(0.3)  # the DELETE is in the controller, waiting for the lock
            r = await http.get("/health")
            answered = time.monotonic() - t0
            assert r.status_code == 200
            assert answered < 4.0, f"/health took {answered:.1f} s while a DELETE waited for the store lock"
            assert not delete.done()
            r = await delete
            assert r.status_code == 200 and r.json()["name"] == "tiny"
            assert time.monotonic() - t0 >= 5.5  # it did wait for the lock
        assert "tiny" not in [e.name for e in store.list()]
        openers = _watched[str(lock_path)]
        assert openers and threading.get_ident() not in openers
    finally:
        _watched.clear()
        release.cancel()
        release.join()
        holder.close()
        await c.close()


async def test_a_request_during_a_removal_leaves_no_backend_running(tiny_gguf) -> None:
    """A request for the model arrives while its ``DELETE`` waits for the store's lock: it may start the model (the
    model is still registered), and once the removal ends no backend of it runs; a later request gets a 404."""
    store = ModelStore(resolve_paths().data_dir)
    store.import_file(tiny_gguf, "tiny")
    c = await start_controller()
    holder = (store.root / ".models.lock").open("a")
    fcntl.flock(holder, fcntl.LOCK_EX)
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    try:
        async with httpx.AsyncClient(base_url=c.url, timeout=60) as http:
            delete = asyncio.ensure_future(http.delete("/llmctl/v1/models/tiny",
                                                      headers={"Content-Type": "application/json"}))
            await asyncio.sleep(0.3)  # the DELETE is in the controller, waiting for the lock
            request = asyncio.ensure_future(http.post("/v1/chat/completions", json=chat))
            for _ in range(100):  # until the request has launched the model's backend
                backend = c.scheduler.get("tiny")
                if backend is not None and backend.alive:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the request never started the model")
            holder.close()  # the removal goes on
            r = await delete
            assert r.status_code == 200, r.text
            await asyncio.gather(request, return_exceptions=True)  # answered or failed: the model went away
            await asyncio.sleep(0.5)
            assert c.scheduler.get("tiny") is None or not c.scheduler.get("tiny").alive
            assert not backend.alive
            r = await http.post("/v1/chat/completions", json=chat)
            assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
            assert c.scheduler.get("tiny") is None
    finally:
        holder.close()
        await c.close()

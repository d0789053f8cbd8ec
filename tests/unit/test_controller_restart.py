"""A controller restarted between two requests of a client that proved the first one (the TUI's): the new one does
not know the old owner key and answers 401; the client must say the controller is unavailable (so the TUI's banner
and reconnect path run, which make a client from the state file again), not a refusal the TUI shows and keeps
polling with. Two real controllers, one after the other, on one state folder and port."""

from __future__ import annotations

import pytest

from llmctl.app.client.api import local_client
from llmctl.app.client.wire import ControllerUnavailable
from llmctl.app.controller.server import Controller
from llmctl.app.paths import resolve_paths
from llmctl.app.settings import load_settings
from llmctl.runtimes.process import free_port


class NoGpu:
    def read(self):
        return [], "no-device", "no GPU in this test"


async def test_a_client_of_a_restarted_controller_is_told_it_is_unavailable() -> None:
    paths = resolve_paths()
    paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text('[engines.ollama]\nmode = "off"\n'
                                 '[[server.keys]]\nname = "app"\nkey = "app-secret-123"\n')
    settings = load_settings(paths, {"server.port": free_port()})
    first = Controller(settings, paths, gpu_probe=NoGpu())
    await first.start()
    client = local_client(settings, paths)
    try:
        await client.status()  # proven, and its owner key accepted
        assert client.scope == "admin"
        await first.close()
        second = Controller(load_settings(paths, {"server.port": settings.server.port}), paths, gpu_probe=NoGpu())
        await second.start()
        try:
            with pytest.raises(ControllerUnavailable, match="no longer knows"):
                await client.status()
            # and not a refusal: the old code raised ControllerError (401) here, on every poll
            with pytest.raises(ControllerUnavailable):
                await client.status()  # the proof was forgotten: the old secret cannot prove the new controller
            async with local_client(load_settings(paths, {"server.port": settings.server.port}), paths) as again:
                await again.status()  # what the TUI's reconnect does: the state file read again
        finally:
            await second.close()
    finally:
        await client.aclose()
        await first.close()

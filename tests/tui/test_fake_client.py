"""The fake client cannot drift from the real one: same public methods with the same signatures, and what the fake
answers has the shapes of ``llmctl.app.client.wire`` -- the same shapes a real controller's answers are checked against
here (in-process, no model server needed)."""

from __future__ import annotations

import inspect
from typing import get_type_hints

import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeClient
from shape_check import problems

from llmctl.app.client import wire
from llmctl.app.client.api import ControllerClient, ControllerError
from llmctl.app.paths import resolve_paths
from llmctl.app.settings import load_settings


def public_methods(cls) -> dict[str, object]:
    return {name: member for name, member in inspect.getmembers(cls, callable)
            if not name.startswith("_") or name in ("__aenter__", "__aexit__")}


def test_the_fake_has_every_method_of_the_real_client_with_the_same_signature() -> None:
    real, fake = public_methods(ControllerClient), public_methods(FakeClient)
    missing = sorted(set(real) - set(fake))
    assert missing == [], f"FakeClient lacks {missing}"
    for name, method in real.items():
        want, got = inspect.signature(method), inspect.signature(fake[name])
        if name == "__aenter__":  # returns its own class
            want, got = want.replace(return_annotation=None), got.replace(return_annotation=None)
        assert got == want, name
        assert inspect.iscoroutinefunction(fake[name]) == inspect.iscoroutinefunction(method), name
        assert inspect.isasyncgenfunction(fake[name]) == inspect.isasyncgenfunction(method), name
    assert set(fake) - set(real) == set(), "the fake has methods the screens could call but the real client lacks"
    assert isinstance(FakeClient.base_url, str)


def test_the_signature_check_catches_a_drifted_fake() -> None:
    class Drifted(FakeClient):
        async def load(self, model: str, wait: bool = True) -> wire.BackendStatus:  # no timeout
            return await super().load(model, wait)

    assert inspect.signature(Drifted.load) != inspect.signature(ControllerClient.load)


def returns(name: str):
    return get_type_hints(getattr(ControllerClient, name))["return"]


FAKE_CALLS = [("hardware", ()), ("backends", ()), ("models", ()), ("catalog", ()), ("load", ("tiny",)),
              ("unload", ("tiny",)), ("logs", ("tiny",)), ("requests", ()), ("requests_snapshot", ()),
              ("engine_metrics", ()), ("remotes", ()), ("shutdown", ()), ("import_model", ("/m/x.gguf", "x")),
              ("remove_model", ("tiny",)),
              ("recommend", ()), ("recommend", (8192, "RTX 3090")), ("start_pull", ("qwen2.5-7b-instruct:Q4_K_M",)),
              ("pulls", ())]


@pytest.mark.parametrize(("name", "args"), FAKE_CALLS, ids=[f"{c[0]}{len(c[1])}" for c in FAKE_CALLS])
async def test_the_fakes_answers_have_the_real_clients_shapes(name: str, args: tuple) -> None:
    client = FakeClient()
    async for _ in client.stream_chat("tiny", [{"role": "user", "content": "x"}]):
        pass  # leaves a request record behind
    answer = await getattr(client, name)(*args)
    assert problems(answer, returns(name)) == []


def test_the_shape_check_catches_a_drifted_answer() -> None:
    from fakes import BACKENDS, MODELS

    assert problems([{**BACKENDS[0], "port": "40001"}], returns("backends")) == ["$[0].port: '40001' is not int"]
    drifted = {k: v for k, v in MODELS[0].items() if k != "state"}
    assert problems([{**drifted, "status": "ready"}], returns("models")) == ["$[0].state: missing",
                                                                            "$[0].status: not in LocalModel"]


class NoGpu:
    def read(self):
        return [], "no-device", "no GPU in this test"


async def test_a_real_controllers_answers_have_the_same_shapes(tiny_gguf) -> None:
    from llmctl.app.controller.server import Controller

    paths = resolve_paths()
    controller = Controller(load_settings(paths), paths, gpu_probe=NoGpu())
    server = TestServer(controller.build_app(), host="127.0.0.1")
    await server.start_server()
    try:
        async with ControllerClient(str(server.make_url(""))) as client:
            imported = await client.import_model(str(tiny_gguf), "tiny")
            assert problems(imported, returns("import_model")) == []
            for name in ("hardware", "models", "catalog", "backends", "requests_snapshot", "requests", "remotes",
                         "recommend", "pulls", "engine_metrics"):
                answer = await getattr(client, name)()
                assert problems(answer, returns(name)) == [], name
            models = await client.models()
            assert [m["name"] for m in models] == ["tiny"]
            with pytest.raises(ControllerError) as refused:
                await client.unload("tiny")
            assert refused.value.status == 404
            backend = await controller._make_backend(controller.store.get("tiny"))
            assert problems(backend.status(), wire.BackendStatus) == []
            assert problems(await client.remove_model("tiny"), returns("remove_model")) == []
    finally:
        await server.close()


async def test_the_fakes_pull_events_have_the_real_clients_shapes() -> None:
    from llmctl.app.client.wire import PullEvent

    client = FakeClient()
    pull = await client.start_pull("qwen2.5-7b-instruct:Q4_K_M")
    events = [e async for e in client.pull_events(pull["id"])]
    assert [problems(e, PullEvent) for e in events] == [[]] * len(events)
    assert events[-1]["type"] == "done" and problems(await client.pulls(), returns("pulls")) == []
    assert problems(await client.cancel_pull(pull["id"]), returns("cancel_pull")) == []

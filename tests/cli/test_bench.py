"""`llmctl bench --url` against a small fake OpenAI server (a remote peer, so a fake is fair): failed requests are
counted, token counts come from usage or from deltas, prompt length is calibrated on the server's counts."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from click.testing import CliRunner

from llmctl.app.cli.root import cli

TEMPLATE_TOKENS = 7  # the fake's "chat template"


@dataclass
class FakeOpenAI:
    fail_every: int = 0  # every Nth streamed request fails (HTTP 500 on odd failures, an error event on even)
    usage: bool = True
    refuse_ignore_eos: bool = False
    streamed: int = 0
    bodies: list[dict] = field(default_factory=list)
    auths: set[str | None] = field(default_factory=set)  # the Authorization headers chat requests came with
    url: str = ""

    def tokens(self, body: dict) -> int:
        return TEMPLATE_TOKENS + len(body["messages"][0]["content"].split())

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake-1b", "object": "model",
                                                              "owned_by": "fakeengine"}]})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        self.auths.add(request.headers.get("Authorization"))
        if self.refuse_ignore_eos and "ignore_eos" in body:
            return web.json_response({"error": {"message": "unknown field ignore_eos", "type": "invalid"}},
                                     status=400)
        n = body["max_tokens"]
        usage = {"prompt_tokens": self.tokens(body), "completion_tokens": n}
        if not body.get("stream"):
            answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}}]}
            return web.json_response({**answer, "usage": usage} if self.usage else answer)
        self.streamed += 1
        failing = self.fail_every and self.streamed % self.fail_every == 0
        if failing and (self.streamed // self.fail_every) % 2 == 1:
            return web.json_response({"error": {"message": "engine crashed", "type": "server_error"}}, status=500)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def send(obj: dict) -> None:
            await resp.write(f"data: {json.dumps(obj)}\n\n".encode())

        await send({"choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]})
        for i in range(n):
            await asyncio.sleep(0.002)
            if failing and i == 1:
                await send({"error": {"message": "backend died mid-stream"}})
                return resp
            key = "reasoning_content" if i == 0 else "content"  # a thinking model's first delta
            await send({"choices": [{"index": 0, "delta": {key: f"t{i} "}}]})
        await send({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
        if self.usage and (body.get("stream_options") or {}).get("include_usage"):
            await send({"choices": [], "usage": usage})
        await resp.write(b"data: [DONE]\n\n")
        return resp


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict = {}

    async def start() -> None:
        app = web.Application()
        app.router.add_get("/v1/models", server.models)
        app.router.add_post("/v1/chat/completions", server.chat)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder["runner"] = runner
        server.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/v1"
        started.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    assert started.wait(10)
    yield server
    asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def _bench(*args: str) -> dict:
    r = CliRunner().invoke(cli, ["bench", *args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_failed_requests_are_counted(fake: FakeOpenAI) -> None:
    fake.fail_every = 3  # requests 3 (HTTP 500) and 6 (error event mid-stream) of each 6 fail
    run = _bench("--url", fake.url, "--concurrency", "1,2", "--requests", "6", "--max-tokens", "5",
                 "--prompt-tokens", "40")
    assert run["target"]["model"] == "fake-1b" and run["target"]["engine"] == "fakeengine"
    assert run["machine"]["role"] == "client"
    for level in run["levels"]:
        assert level["completed"] + level["failed"] == 6 and level["failed"] == 2
        assert set(level["errors"]) == {"HTTP 500: engine crashed", "stream error: backend died mid-stream"}
        assert level["total_output_tokens"] == 4 * 5 and level["output_tokens_from"] == "usage"
        assert level["total_input_tokens"] == 4 * 40  # calibrated on the server's own prompt_tokens
        assert level["p50_ttft_ms"] > 0 and level["output_throughput"] > 0
    assert [lv["max_concurrency"] for lv in run["levels"]] == [1, 2]
    streamed = [b for b in fake.bodies if b.get("stream")]
    assert all(b["stream_options"] == {"include_usage": True} and b["ignore_eos"] for b in streamed)
    prompts = [b["messages"][0]["content"] for b in streamed]
    assert len(set(prompts)) == len(prompts)  # no prompt cache can serve one request from another


def test_without_usage_tokens_are_counted_from_deltas_and_length_is_approximated(fake: FakeOpenAI) -> None:
    fake.usage = False
    run = _bench("--url", fake.url, "--concurrency", "2", "--requests", "4", "--max-tokens", "6",
                 "--goodput", "ttft:60000", "e2el:60000")
    level = run["levels"][0]
    assert level["completed"] == 4 and level["output_tokens_from"] == "deltas"
    assert level["total_output_tokens"] == 4 * 6  # the reasoning_content delta counts too
    assert level["request_goodput"] == pytest.approx(level["request_throughput"])
    assert run["settings"]["prompt_calibration"].startswith("approximation")
    assert run["settings"]["goodput"] == {"ttft": 60000, "e2el": 60000}


def test_a_server_refusing_ignore_eos_is_benchmarked_without_it(fake: FakeOpenAI) -> None:
    fake.refuse_ignore_eos = True
    run = _bench("--url", fake.url, "--profile", "synchronous", "--requests", "2", "--max-tokens", "3")
    assert run["settings"]["ignore_eos"] is False and run["levels"][0]["completed"] == 2
    assert run["levels"][0]["profile"] == "synchronous"


def test_rate_shapes_and_llama_bench_view(fake: FakeOpenAI) -> None:
    run = _bench("--url", fake.url, "--profile", "poisson", "--rate", "50", "--requests", "5", "--max-tokens", "3")
    assert run["levels"][0]["profile"] == "poisson" and run["levels"][0]["request_rate"] == 50
    assert run["levels"][0]["completed"] == 5
    run = _bench("--url", fake.url, "fake-1b", "--llama-bench", "-r", "2", "--save")
    tests = {e["test"]: e for e in run["llama_bench"]}
    assert set(tests) == {"pp512", "tg128"} and len(tests["pp512"]["samples_ts"]) == 2
    assert tests["pp512"]["avg_ts"] > 0 and tests["tg128"]["avg_ts"] > 0
    assert any(b["messages"][0]["content"].count(" ") + 1 + TEMPLATE_TOKENS == 512 for b in fake.bodies)
    history = CliRunner().invoke(cli, ["bench", "history"])
    assert history.exit_code == 0 and "fake-1b" in history.output and "pp512" in history.output


def test_bad_arguments_are_one_clear_line() -> None:
    r = CliRunner().invoke(cli, ["bench", "--url", "http://127.0.0.1:9/v1", "--goodput", "itl:5"])
    assert r.exit_code != 0 and "--goodput" in str(r.exception or r.output)
    r = CliRunner().invoke(cli, ["bench", "--profile", "constant"])
    assert r.exit_code == 2 and "--rate" in r.output
    r = CliRunner().invoke(cli, ["bench", "--url", "http://127.0.0.1:9/v1"])
    assert r.exit_code == 1 and "nothing answers at http://127.0.0.1:9/v1" in str(r.exception)


def test_through_llmctl_no_key_goes_to_a_port_holder_that_is_not_the_controller(fake: FakeOpenAI,
                                                                                 llmctl_home) -> None:
    """No controller runs for this state folder, and something else (an OpenAI-compatible server) holds the
    configured port: the bench sends it nothing, not the configured key and not a request (issue 23, item 7). A
    real controller is benchmarked through its proved owner key: tests/integration/test_bench_controller.py."""
    port = fake.url.removesuffix("/v1").rsplit(":", 1)[1]
    (llmctl_home / "config").mkdir(parents=True, exist_ok=True)
    (llmctl_home / "config" / "config.toml").write_text(
        f'[server]\nport = {port}\n[[server.keys]]\nname = "alice"\nkey = "alice-secret-1"\n')
    r = CliRunner().invoke(cli, ["bench", "fake-1b", "--concurrency", "1", "--requests", "2", "--json"])
    assert r.exit_code != 0
    assert f"something else holds port {port}" in str(r.exception) + r.output
    assert fake.auths == set() and fake.bodies == []

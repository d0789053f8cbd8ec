"""A remote llmctl behind the local endpoint: two real controllers on loopback, each with a real llama.cpp backend on
the tiny model. The remote requires an API key, which the local one reads from an environment variable. Its model
is answered through the local endpoint with the openai SDK (streamed and not); killed, requests for it fail over to
the local copy (``fallback``) or get a clear 503 at once; back on the same port, the health check marks it ready."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import openai
import pytest
from harness import ControllerProcess, run_cli

from llmctl.catalog.store import ModelStore

ASK = [{"role": "user", "content": "hi"}]
KEY = "remote-secret"


@pytest.fixture
def remote_home(tmp_path: Path, tiny_gguf: Path) -> Path:
    home = tmp_path / "remote-home"
    store = ModelStore(home / "data")
    store.import_file(tiny_gguf, "tiny")
    store.import_file(tiny_gguf, "tiny2")
    return home


def _remote_state(local: ControllerProcess) -> dict:
    with local.client() as c:
        return c.get("/llmctl/v1/remotes").json()["remotes"][0]


def _wait_remote(local: ControllerProcess, state: str, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = _remote_state(local)
        if last["state"] == state:
            return last
        time.sleep(0.1)
    raise AssertionError(f"remote never became {state}: {last}\n{local.output}")


def test_a_remote_llmctl_is_served_here_fails_over_when_killed_and_is_ready_when_back(home: Path, remote_home: Path):
    procs: list[ControllerProcess] = []
    try:
        remote = ControllerProcess(remote_home, "--api-key", KEY).start()
        procs.append(remote)
        (home / "config").mkdir(parents=True, exist_ok=True)
        (home / "config" / "config.toml").write_text(
            f'[remotes.box]\nurl = "{remote.url}/v1"\nkey_env = "BOX_KEY"\n'
            "health_interval = 1\nbackoff_initial = 0.2\nbackoff_max = 1\n"
            '[models.tiny]\nfallback = "box/tiny"\n')
        local = ControllerProcess(home, BOX_KEY=KEY).start()
        procs.append(local)
        local.wait_output(f"[remote] box at {remote.url}: ready, 2 model(s)", timeout=15)

        sdk = openai.OpenAI(base_url=local.url + "/v1", api_key="unused", max_retries=0, timeout=60)
        models = {m.id: m for m in sdk.models.list().data}
        assert set(models) == {"tiny", "box/tiny", "box/tiny2"}
        assert models["box/tiny"].owned_by == "remote:box" and models["tiny"].owned_by == "llmctl"

        kw = dict(model="box/tiny", messages=ASK, max_tokens=8, temperature=0)
        raw = sdk.chat.completions.with_raw_response.create(**kw)
        plain = raw.parse()
        assert raw.headers["x-llmctl-served-by"] == "box/tiny"
        assert plain.choices[0].message.content and plain.usage.completion_tokens == 8
        chunks = list(sdk.chat.completions.create(stream=True, **kw))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
            plain.choices[0].message.content
        # it reached the remote under the remote's own name, with the key (the remote refuses anything else)
        with httpx.Client(base_url=remote.url, headers={"Authorization": f"Bearer {KEY}"}) as rc:
            seen = rc.get("/llmctl/v1/requests").json()["requests"]
        assert [(r["model"], r["stream"], r["status"]) for r in seen] == [("tiny", False, 200), ("tiny", True, 200)]
        # the local controller holds no memory for it, and `ps` shows it with the remote
        ps = run_cli(home, "ps")
        assert "box/tiny" in ps.stdout and "remote:box" in ps.stdout and "ready" in ps.stdout, ps.stdout

        # the remote dies: its model fails over to the local copy before the first byte, streamed and not
        remote.stop()
        t0 = time.monotonic()
        raw = sdk.chat.completions.with_raw_response.create(**kw)
        assert raw.headers["x-llmctl-served-by"] == "tiny" and raw.parse().choices[0].message.content
        streamed = list(sdk.chat.completions.create(stream=True, **kw))
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
        assert time.monotonic() - t0 < 30  # includes loading the local copy on its first request
        # a remote model with no local copy: a clear 503, at once
        t0 = time.monotonic()
        with pytest.raises(openai.APIStatusError) as err:
            sdk.chat.completions.create(model="box/tiny2", messages=ASK, max_tokens=4)
        assert err.value.status_code == 503 and time.monotonic() - t0 < 3
        assert "remote box" in err.value.body["message"]
        down = _wait_remote(local, "failed")
        assert "connect" in down["error"]
        ps = run_cli(home, "ps")
        assert "failed" in ps.stdout and "box" in ps.stdout

        # it comes back on the same port: the health check marks it ready, and its model is served from there again
        back = ControllerProcess(remote_home, "--api-key", KEY, port=remote.port).start()
        procs.append(back)
        _wait_remote(local, "ready")
        raw = sdk.chat.completions.with_raw_response.create(**kw)
        assert raw.headers["x-llmctl-served-by"] == "box/tiny"
        with local.client() as c:
            recent = c.get("/llmctl/v1/requests").json()["requests"]
        assert [r["served_by"] for r in recent if r["model"] == "box/tiny"] == [None, None, "tiny", "tiny", None]
    finally:
        for p in procs:
            p.kill_everything()

"""vLLM behind the Engine protocol: argv/env golden for a Deployment, refusals before launch, the registry's choices,
and the supervisor's readiness hook against a fake engine that passes /health and dies on its first request."""

from __future__ import annotations

import asyncio
import itertools
import json
import stat
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fake_engine import FakeEngine, FakeSocketEngine
from tiny_hf import write_tiny_hf_llama

from llmctl.app.deployments import launch_plan
from llmctl.app.settings import ModelProfile, Settings
from llmctl.catalog.estimate import VLLM_PROFILE, FitRequest, vllm_cpu_kv_bytes
from llmctl.catalog.safetensors_dir import facts_from_model_dir
from llmctl.catalog.store import ModelEntry
from llmctl.runtimes.base import (
    BackendState,
    ChecksDeployment,
    ChecksReadiness,
    Deployment,
    EngineUnavailable,
    Launch,
    PlansLaunch,
    ServesOnSocket,
)
from llmctl.runtimes.process import Backend, RestartPolicy, free_port
from llmctl.runtimes.registry import VllmWhere, describe_engines, pick_engine
from llmctl.runtimes.sockets import socket_path
from llmctl.runtimes.state_file import StateFile
from llmctl.runtimes.vllm import INSTALLED_STAMP, VllmRefused, managed_venv
from llmctl.runtimes.vllm_engine import VllmEngine

AVX2 = ("avx", "avx2", "fma")
ENGINE = VllmEngine("/e/bin/python", cpu_flags=AVX2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_tiny_hf_llama(tmp_path_factory.mktemp("hf") / "tiny")


def _d(model: Path, tmp_path: Path, **kw) -> Deployment:
    base = {"model_name": "tiny", "model_path": model, "port": 18000, "ctx_size": 1024, "parallel": 2,
            "threads": 2, "api_key": "secret", "run_dir": tmp_path / "run"}
    return Deployment(**(base | kw))


# argv / env ----------------------------------------------------------------------------------------------------
def test_deployment_argv_golden(tiny: Path, tmp_path: Path) -> None:
    d = _d(tiny, tmp_path)
    # one pool of 1024 tokens (8 blocks) the 2 sequences share, + the null block; 2 layers, 2 KV heads
    kv = (8 + 1) * 128 * (2 * 2 * 2 * 32 * 4)
    assert ENGINE.build_command(d) == [
        "/e/bin/python", "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(tiny), "--served-model-name", "tiny",
        "--uds", str(tmp_path / "run" / "sock" / "vllm.sock"),  # a socket in the launch's folder, never a port
        "--max-model-len", "1024", "--dtype", "float32",  # the checkpoint's own: auto would downcast to bf16
        "--load-format", "safetensors",  # never a pickle
        "--max-num-seqs", "2",  # the deployment's slots
        "--kv-cache-memory-bytes", str(kv),
        "--enable-prefix-caching", "--enforce-eager", "--disable-uvicorn-access-log",
    ]
    run = tmp_path / "run"
    env = ENGINE.build_env(d)
    assert env["VLLM_API_KEY"] == "secret" and "secret" not in " ".join(ENGINE.build_command(d))
    assert (env["TMPDIR"], env["VLLM_CACHE_ROOT"], env["TORCHINDUCTOR_CACHE_DIR"]) == \
        (str(run / "tmp"), str(run / "cache"), str(run / "inductor"))
    launch = ENGINE.launch(d)  # what the supervisor asks for, once per start
    assert launch.dirs == (run / "tmp", run / "cache", run / "inductor")
    command = ENGINE.build_command(d)
    assert (list(launch.argv[-len(command):]), launch.env) == (command, env)
    # where the machine allows it, vLLM's own command runs in a network namespace of its own (test_netns)
    assert launch.argv[:1] == (command[0],) or launch.argv[1:3] == ("-rn", "--")
    assert list(launch.runs) == command  # what the live process runs after the wrapper's execs: reap matches it
    assert isinstance(ENGINE, ServesOnSocket) and ENGINE.socket_path(d) == run / "sock" / "vllm.sock"
    # the KV space is the one `fit` and the ledger plan for this launch
    req = FitRequest(ctx=1024, parallel=2, profile=VLLM_PROFILE)
    assert kv == vllm_cpu_kv_bytes(facts_from_model_dir(tiny), req)


def test_speculation_parallelism_gpu_and_args(tiny: Path, tmp_path: Path) -> None:
    ngram = ENGINE.build_command(_d(tiny, tmp_path, speculative_ngram=True, extra_args=("--seed", "1")))
    spec = ngram[ngram.index("--speculative-config") + 1]
    assert json.loads(spec)["method"] == "ngram" and ngram[-2:] == ["--seed", "1"]
    draft = ENGINE.build_command(_d(tiny, tmp_path, draft_model=tiny, speculative_ngram=True))
    assert json.loads(draft[draft.index("--speculative-config") + 1]) == \
        {"method": "draft_model", "model": str(tiny), "num_speculative_tokens": 4}  # a draft wins over n-grams
    tp = _d(tiny, tmp_path, tensor_parallel=2)
    argv = ENGINE.build_command(tp)
    assert argv[argv.index("--tensor-parallel-size") + 1] == "2"
    assert ENGINE.build_env(tp)["VLLM_CPU_OMP_THREADS_BIND"] == "0|1"
    gpu = VllmEngine("/e/bin/python", device="gpu")
    argv = gpu.build_command(_d(tiny, tmp_path, gpu_memory_utilization=0.8))
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.8"
    assert "--kv-cache-memory-bytes" not in argv and "--enforce-eager" not in argv


def test_no_key_no_key_variable(tiny: Path, tmp_path: Path) -> None:
    assert "VLLM_API_KEY" not in ENGINE.build_env(_d(tiny, tmp_path, api_key=None))


# refusals before launch -------------------------------------------------------------------------------------------
def test_preflight_refuses_what_would_crash(tiny: Path, tmp_path: Path) -> None:
    assert isinstance(ENGINE, ChecksDeployment) and isinstance(ENGINE, ChecksReadiness)
    ENGINE.preflight(_d(tiny, tmp_path))
    h16 = write_tiny_hf_llama(tmp_path / "h16", hidden=64)
    with pytest.raises(VllmRefused, match="heads of size 16"):
        ENGINE.preflight(_d(h16, tmp_path))
    awq = tmp_path / "awq"
    awq.mkdir()
    cfg = json.loads((tiny / "config.json").read_text()) | {"quantization_config": {"quant_method": "awq"}}
    (awq / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(VllmRefused, match="AVX-512"):
        ENGINE.preflight(_d(awq, tmp_path))
    VllmEngine("/e/bin/python", cpu_flags=(*AVX2, "avx512f")).preflight(_d(awq, tmp_path))
    with pytest.raises(VllmRefused, match="no q8_0 KV cache"):
        ENGINE.preflight(_d(tiny, tmp_path, kv_type="q8_0"))
    with pytest.raises(VllmRefused, match="not a Hugging Face model folder"):
        ENGINE.preflight(_d(tiny, tmp_path, draft_model=tmp_path / "draft.gguf"))
    with pytest.raises(VllmRefused, match="is not a directory"):
        ENGINE.preflight(_d(tmp_path / "gone", tmp_path))


# registry -------------------------------------------------------------------------------------------------------
def _fake_vllm_python(folder: Path, dist: str = "vllm-cpu", version: str = "0.32.0") -> Path:
    """A 'python' that answers the version probe as an engine venv with ``dist`` would."""
    folder.mkdir(parents=True, exist_ok=True)
    py = folder / "python"
    py.write_text(f"#!/bin/sh\necho '[\"{dist}\", \"{version}\"]'\n")
    py.chmod(0o755)
    return py


def test_safetensors_go_to_vllm_when_it_is_found(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    data = tmp_path / "data"
    with pytest.raises(EngineUnavailable, match="not installed") as err:
        pick_engine("safetensors", vllm=VllmWhere(data))
    assert "llmctl runtimes install vllm" in err.value.message
    info = next(i for i in describe_engines(vllm=VllmWhere(data)) if i.engine == "vllm")
    assert not info.found and "llmctl runtimes install vllm" in info.how_to_get
    # the managed venv, once its install finished
    venv = managed_venv(data)
    managed = _fake_vllm_python(venv / "bin")
    with pytest.raises(EngineUnavailable):
        pick_engine("safetensors", vllm=VllmWhere(data))  # no stamp: a broken install
    (venv / INSTALLED_STAMP).write_text("{}")
    engine = pick_engine("safetensors", vllm=VllmWhere(data))
    assert isinstance(engine, VllmEngine)
    assert (engine.python, engine.device, engine.version, engine.source) == (str(managed), "cpu", "0.32.0", "managed")
    info = next(i for i in describe_engines(vllm=VllmWhere(data)) if i.engine == "vllm")
    assert info.found and info.version == "0.32.0" and info.formats == ("safetensors",)
    # engines.vllm.python wins, as it is; the GPU build runs on the GPU
    configured = _fake_vllm_python(tmp_path / "gpu-env", dist="vllm", version="0.32.0")
    engine = pick_engine("safetensors", vllm=VllmWhere(data, str(configured)))
    assert (engine.python, engine.device, engine.source) == (str(configured), "gpu", "configured")
    with pytest.raises(EngineUnavailable, match="does not exist"):
        pick_engine("safetensors", vllm=VllmWhere(data, str(tmp_path / "nope")))
    with pytest.raises(EngineUnavailable, match="cannot run vLLM"):
        pick_engine("safetensors", vllm=VllmWhere(data, sys.executable))  # a python without vLLM
    # GGUF stays with llama.cpp; vLLM cannot take a GGUF
    with pytest.raises(EngineUnavailable, match="cannot serve a gguf"):
        pick_engine("gguf", "vllm", vllm=VllmWhere(data))


def test_launch_plan_of_a_safetensors_model(tiny: Path, tmp_path: Path) -> None:
    configured = _fake_vllm_python(tmp_path / "env")
    settings = Settings(engines={"vllm": {"python": str(configured)}}, backends={"engine": "xllamacpp"},
                        models={"tiny": ModelProfile(speculative="ngram", ctx_size=1024)})
    entry = ModelEntry("tiny", str(tiny), "safetensors", facts={"context_length": 2048})
    plan = launch_plan(settings, entry, data_dir=tmp_path / "data")  # backends.engine is for GGUF models
    assert isinstance(plan.engine, VllmEngine) and plan.speculative_ngram and plan.ctx_size == 1024
    d = plan.deployment("tiny", tiny, port=1, n_gpu_layers=0, threads=2, api_key="k", run_dir=tmp_path / "r")
    assert d.speculative_ngram and d.run_dir == tmp_path / "r" and d.parallel == settings.backends.parallel
    assert plan.fit_request().profile == VLLM_PROFILE


# the supervisor's readiness hook ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FakeVllm(FakeSocketEngine):
    """The fake engine's process on vLLM's socket, with vLLM's readiness check, log reading and a launch plan with
    folders of its own."""

    def failure_reason(self, lines: list[str]) -> str | None:
        return VllmEngine(sys.executable).failure_reason(lines)

    async def ready(self, d: Deployment) -> str | None:
        return await VllmEngine(sys.executable).ready(d)

    def socket_path(self, d: Deployment) -> Path:
        return VllmEngine(sys.executable).socket_path(d)

    planned: list[Deployment] = field(default_factory=list)  # one entry per call of launch()

    def launch(self, d: Deployment) -> Launch:
        assert d.run_dir is not None
        self.planned.append(d)
        return Launch(tuple(self.build_command(d)), self.build_env(d), (d.run_dir / "tmp",))


POLICY = RestartPolicy(stop_grace=2, ready_timeout=20, backoff_initial=0.1)


def _backend(tmp_path: Path, engine) -> Backend:
    d = Deployment("m", tmp_path / "m", free_port(), api_key="k", run_dir=tmp_path / "run" / "m")
    return Backend(d, engine, log_dir=tmp_path / "logs", state=StateFile(tmp_path / "state.json"), policy=POLICY)


async def test_health_alone_is_fooled_by_an_engine_that_dies_on_its_first_request(tmp_path: Path) -> None:
    backend = _backend(tmp_path, FakeEngine(die_on_first_request=True))
    backend.start()
    try:
        await backend.wait_ready(15)
        assert backend.state is BackendState.READY  # what the engine-specific hook is for
    finally:
        await backend.stop()


async def test_the_readiness_hook_fails_an_engine_that_dies_on_its_first_request(tmp_path: Path) -> None:
    backend = _backend(tmp_path, FakeVllm(die_on_first_request=True))
    backend.start()
    with pytest.raises(Exception) as err:
        await backend.wait_ready(15)
    assert backend.state is BackendState.FAILED
    assert "while loading the model" in backend.error and "head_dim=16" in backend.error, backend.error
    assert any("1-token completion answered 500" in line for line in backend.tail), list(backend.tail)
    assert "head_dim=16" in str(err.value.message)
    assert not (tmp_path / "run" / "m").exists()  # the run folder goes with the process


async def test_the_readiness_hook_passes_a_healthy_engine_and_run_dirs_live_with_it(tmp_path: Path) -> None:
    engine = FakeVllm(load_delay=0.5)
    assert isinstance(engine, PlansLaunch) and isinstance(engine, ServesOnSocket)
    backend = _backend(tmp_path, engine)
    run = tmp_path / "run" / "m"
    backend.start()
    try:
        await backend.wait_ready(15)
        assert backend.state is BackendState.READY
        assert (run / "tmp").is_dir() and stat.S_IMODE(run.stat().st_mode) == 0o700
        sock = Path(backend.socket_path)
        # in the run folder while tmp_path is short enough for sun_path, else in a short folder of its own
        assert sock == socket_path(run, "vllm.sock") and stat.S_ISSOCK(sock.stat().st_mode)
        assert len(engine.planned) == 1  # the launch was worked out once for this start, not once per use
    finally:
        await backend.stop()
    assert not run.exists()


@dataclass(frozen=True, slots=True)
class SlowPlanVllm(FakeVllm):
    """A launch plan that takes a while to work out, as vLLM's does on a large checkpoint on a slow disk."""

    planners: list[int] = field(default_factory=list)  # the thread of each call of launch()

    def launch(self, d: Deployment) -> Launch:
        self.planners.append(threading.get_ident())
        time.sleep(1.0)
        return FakeVllm.launch(self, d)


async def test_a_slow_launch_plan_is_worked_out_off_the_event_loop(tmp_path: Path) -> None:
    engine = SlowPlanVllm()
    backend = _backend(tmp_path, engine)
    ticks: list[float] = []

    async def tick() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.05)

    ticker = asyncio.ensure_future(tick())
    backend.start()
    try:
        await backend.wait_ready(15)
        assert engine.planners and threading.get_ident() not in engine.planners
        gaps = [b - a for a, b in itertools.pairwise(ticks)]
        assert max(gaps) < 0.5, f"the event loop stalled {max(gaps):.1f} s while the launch was planned"
    finally:
        ticker.cancel()
        await backend.stop()

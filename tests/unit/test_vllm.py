"""vLLM engine knowledge: golden argv/env, refusals before launch, detection, log lines captured from real runs."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest
from tiny_hf import write_tiny_hf_llama

from llmctl.catalog.errors import ModelFileError
from llmctl.runtimes.process import free_port
from llmctl.runtimes.vllm import (
    INSTALLED_STAMP,
    DraftSpeculation,
    NgramSpeculation,
    NotReady,
    VllmDeployment,
    VllmFound,
    VllmModel,
    VllmRefused,
    build_launch,
    check_supported,
    engine_version,
    failure_reason,
    find_vllm,
    inspect_model,
    kv_cache_size,
    managed_venv,
    wait_ready,
)

LOGS = Path(__file__).parent.parent / "fixtures" / "vllm"
AVX2 = ("avx", "avx2", "fma", "f16c")
AVX512 = (*AVX2, "avx512f")


def _config(folder: Path, **extra) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 896,
           "num_attention_heads": 14, "num_key_value_heads": 2, "num_hidden_layers": 24, "torch_dtype": "float16"}
    (folder / "config.json").write_text(json.dumps(cfg | extra))
    return folder


def _deployment(tmp_path: Path, **kw) -> VllmDeployment:
    model = kw.pop("model", VllmModel(Path("/m/tiny"), "LlamaForCausalLM", None, 32, "float32"))
    base = {"python": "/e/bin/python", "model": model, "served_name": "tiny", "port": 18000, "api_key": "k",
            "run_dir": tmp_path / "run", "max_model_len": 1024, "dtype": "float32", "kv_cache_bytes": 64 << 20}
    return VllmDeployment(**(base | kw))


# argv / env -----------------------------------------------------------------------------------------------------
def test_cpu_launch_golden(tmp_path: Path) -> None:
    launch = build_launch(_deployment(tmp_path, uds=tmp_path / "run" / "sock" / "vllm.sock"))
    assert launch.argv == (
        "/e/bin/python", "-m", "vllm.entrypoints.openai.api_server",
        "--model", "/m/tiny", "--served-model-name", "tiny",
        "--uds", str(tmp_path / "run" / "sock" / "vllm.sock"),  # no --host/--port: it listens on no TCP port
        "--max-model-len", "1024", "--dtype", "float32", "--load-format", "safetensors",
        "--kv-cache-memory-bytes", "67108864",
        "--enable-prefix-caching", "--enforce-eager", "--disable-uvicorn-access-log",
    )
    run = tmp_path / "run"
    assert launch.env == {
        "VLLM_API_KEY": "k", "TMPDIR": str(run / "tmp"), "VLLM_CACHE_ROOT": str(run / "cache"),
        "TORCHINDUCTOR_CACHE_DIR": str(run / "inductor"), "PYTHONUNBUFFERED": "1", "VLLM_NO_USAGE_STATS": "1",
        "VLLM_DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1",
    }
    assert launch.dirs == (run / "tmp", run / "cache", run / "inductor")
    assert "k" not in launch.argv  # the key never shows in `ps`


def test_gpu_launch_golden(tmp_path: Path) -> None:
    awq = VllmModel(Path("/m/q"), "Qwen2ForCausalLM", "awq", 64, "float16")
    d = _deployment(tmp_path, model=awq, device="gpu", dtype="auto", kv_cache_bytes=None,
                    gpu_memory_utilization=0.85, kv_cache_dtype="fp8", tensor_parallel=2, pipeline_parallel=1,
                    prefix_caching=False, max_num_seqs=8,
                    speculative=DraftSpeculation(Path("/m/draft"), tokens=3))
    launch = build_launch(d)
    assert launch.argv[3:] == (
        "--model", "/m/q", "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", "18000",
        "--max-model-len", "1024", "--dtype", "auto", "--load-format", "safetensors", "--quantization", "awq",
        "--kv-cache-dtype", "fp8",
        "--max-num-seqs", "8", "--gpu-memory-utilization", "0.85",
        "--tensor-parallel-size", "2", "--pipeline-parallel-size", "1", "--no-enable-prefix-caching",
        "--speculative-config", '{"method":"draft_model","model":"/m/draft","num_speculative_tokens":3}',
        "--disable-uvicorn-access-log",
    )
    assert "VLLM_CPU_OMP_THREADS_BIND" not in launch.env and "VLLM_CPU_KVCACHE_SPACE" not in launch.env


def test_ngram_speculation_and_kv_space_env(tmp_path: Path) -> None:
    d = _deployment(tmp_path, kv_cache_bytes=None, kv_cache_space_gib=2, speculative=NgramSpeculation(5, 4, 2))
    launch = build_launch(d)
    spec = launch.argv[launch.argv.index("--speculative-config") + 1]
    assert json.loads(spec) == {"method": "ngram", "num_speculative_tokens": 5, "prompt_lookup_max": 4,
                                "prompt_lookup_min": 2}
    assert "--kv-cache-memory-bytes" not in launch.argv and launch.env["VLLM_CPU_KVCACHE_SPACE"] == "2"


def test_tensor_parallel_on_cpu_binds_one_core_group_per_rank(tmp_path: Path) -> None:
    launch = build_launch(_deployment(tmp_path, tensor_parallel=2, cpu_ids=(0, 1)))
    assert launch.env["VLLM_CPU_OMP_THREADS_BIND"] == "0|1"
    assert launch.env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    i = launch.argv.index("--tensor-parallel-size")
    assert launch.argv[i:i + 4] == ("--tensor-parallel-size", "2", "--pipeline-parallel-size", "1")
    four = build_launch(_deployment(tmp_path, tensor_parallel=2, cpu_ids=(0, 1, 2, 3, 4)))
    assert four.env["VLLM_CPU_OMP_THREADS_BIND"] == "0,1|2,3"
    with pytest.raises(VllmRefused, match="cores"):
        build_launch(_deployment(tmp_path, tensor_parallel=2))
    with pytest.raises(VllmRefused, match="at least 4"):
        build_launch(_deployment(tmp_path, tensor_parallel=2, pipeline_parallel=2, cpu_ids=(0, 1)))


def test_cpu_launch_needs_a_kv_size(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="most of the machine's RAM"):
        build_launch(_deployment(tmp_path, kv_cache_bytes=None))
    with pytest.raises(ValueError, match="not both"):
        build_launch(_deployment(tmp_path, kv_cache_space_gib=1))
    with pytest.raises(ValueError, match="KV cache dtype"):
        build_launch(_deployment(tmp_path, kv_cache_dtype="q4"))
    gpu = build_launch(_deployment(tmp_path, device="gpu", kv_cache_bytes=None))
    assert "--enforce-eager" not in gpu.argv and "--kv-cache-memory-bytes" not in gpu.argv


# the model: quantization and refusals ---------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "flag"), [("awq", "awq"), ("gptq", "gptq"), ("fp8", "fp8"),
                                              ("compressed-tensors", "compressed-tensors"), ("AWQ", "awq")])
def test_quantization_from_config(tmp_path: Path, method: str, flag: str) -> None:
    folder = _config(tmp_path / "m", quantization_config={"quant_method": method, "bits": 4})
    model = inspect_model(folder)
    assert (model.quantization, model.head_dim, model.architecture) == (flag, 64, "Qwen2ForCausalLM")
    argv = build_launch(_deployment(tmp_path, model=model)).argv
    assert argv[argv.index("--quantization") + 1] == flag


def test_unquantized_and_unknown_quantization(tmp_path: Path) -> None:
    assert inspect_model(_config(tmp_path / "plain")).quantization is None
    with pytest.raises(VllmRefused, match="'bitsandbytes'"):
        inspect_model(_config(tmp_path / "bnb", quantization_config={"quant_method": "bitsandbytes"}))


def test_config_reads_are_bounded(tmp_path: Path) -> None:
    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "config.json").write_text('{"pad": "' + "x" * (1 << 20) + '"}')
    with pytest.raises(ModelFileError, match=r"no usable config\.json"):
        inspect_model(folder)
    (folder / "config.json").write_text("[1, 2]")
    with pytest.raises(ModelFileError, match="not a JSON object"):
        inspect_model(folder)


def test_head_dims_the_cpu_kernels_cannot_run_are_refused_before_launch(tmp_path: Path) -> None:
    sixteen = inspect_model(_config(tmp_path / "h16", hidden_size=64, num_attention_heads=4))
    assert sixteen.head_dim == 16
    with pytest.raises(VllmRefused, match="heads of size 16") as err:
        check_supported(sixteen, "cpu", AVX2)
    assert "llama.cpp" in err.value.message
    check_supported(sixteen, "gpu")  # the GPU kernels take it
    nested = tmp_path / "mm16"  # a multimodal config: the language model's shapes under text_config
    nested.mkdir()
    (nested / "config.json").write_text(json.dumps({"architectures": ["Gemma3ForConditionalGeneration"],
                                                    "text_config": {"hidden_size": 64, "num_attention_heads": 4}}))
    assert inspect_model(nested).head_dim == 16
    with pytest.raises(VllmRefused, match="heads of size 16"):
        check_supported(inspect_model(nested), "cpu", AVX2)
    explicit = inspect_model(_config(tmp_path / "h80", head_dim=80))  # head_dim given beats hidden / heads
    assert explicit.head_dim == 80
    check_supported(explicit, "cpu", AVX2)


def test_awq_and_gptq_on_cpu_need_avx512(tmp_path: Path) -> None:
    for method in ("awq", "gptq"):
        model = inspect_model(_config(tmp_path / method, quantization_config={"quant_method": method}))
        with pytest.raises(VllmRefused, match="AVX-512"):
            check_supported(model, "cpu", AVX2)
        check_supported(model, "cpu", AVX512)
        check_supported(model, "gpu", AVX2)
    fp8 = inspect_model(_config(tmp_path / "fp8", quantization_config={"quant_method": "fp8"}))
    check_supported(fp8, "cpu", AVX2)


def test_the_tiny_test_model_is_servable_on_cpu(tmp_path: Path) -> None:
    model = inspect_model(write_tiny_hf_llama(tmp_path / "tiny"))
    assert (model.head_dim, model.quantization, model.architecture) == (32, None, "LlamaForCausalLM")
    check_supported(model, "cpu", AVX2)


# detection ------------------------------------------------------------------------------------------------------
def _script(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_find_order_configured_managed_path(tmp_path: Path) -> None:
    data = tmp_path / "data"
    script = _script(tmp_path / "bin" / "vllm", f"#!{sys.executable}\nprint('vllm')\n")
    which = {"vllm": str(script)}.get
    assert find_vllm(data, which=which) == VllmFound(sys.executable, "path")
    managed = _script(managed_venv(data) / "bin" / "python", "")
    assert find_vllm(data, which=which) == VllmFound(sys.executable, "path")  # an install that did not finish
    (managed_venv(data) / INSTALLED_STAMP).write_text("{}")
    assert find_vllm(data, which=which) == VllmFound(str(managed), "managed")
    assert find_vllm(data, configured=sys.executable, which=which) == VllmFound(sys.executable, "configured")
    with pytest.raises(VllmRefused, match="does not exist"):
        find_vllm(data, configured=str(tmp_path / "nope" / "python"))
    assert find_vllm(tmp_path / "other", which=lambda _: None) is None


def test_find_reads_env_shebangs(tmp_path: Path) -> None:
    script = _script(tmp_path / "bin" / "vllm", "#!/usr/bin/env python3\n")
    found = find_vllm(tmp_path / "data", which={"vllm": str(script), "python3": sys.executable}.get)
    assert found == VllmFound(sys.executable, "path")
    # no python3 on PATH and no python beside the script: nothing found
    assert find_vllm(tmp_path / "data", which={"vllm": str(script)}.get) is None
    sibling = _script(tmp_path / "bin" / "python", "")
    assert find_vllm(tmp_path / "data", which={"vllm": str(script)}.get) == VllmFound(str(sibling), "path")
    script.write_text(f"#!{sys.executable} -I\n")
    assert find_vllm(tmp_path / "data", which={"vllm": str(script)}.get) == VllmFound(sys.executable, "path")


def test_engine_version_runs_inside_the_given_python(tmp_path: Path) -> None:
    # llmctl's own venv has no vLLM: the probe answers None rather than failing
    assert engine_version(sys.executable) is None
    assert engine_version(str(tmp_path / "missing-python")) is None
    # a Python that hangs is bounded by the timeout
    slow = _script(tmp_path / "slow-python", "#!/bin/sh\nsleep 30\n")
    assert engine_version(str(slow), timeout=0.5) is None


# log lines (captured from real vllm-cpu 0.32.0 runs: tests/fixtures/vllm/*.log) ---------------------------------
def _log(name: str) -> list[str]:
    return (LOGS / name).read_text(encoding="utf-8").splitlines()


def test_kv_cache_line_of_a_real_run() -> None:
    kv = kv_cache_size(_log("start-ok.log"))
    assert kv is not None and (kv.device, kv.tokens) == ("CPU", 65536)
    assert failure_reason(_log("start-ok.log")) is None


def test_kv_cache_line_variants() -> None:
    line = "(EngineCore pid=9) INFO 01-02 03:04:05 [kv_cache_utils.py:2327] GPU KV cache size: 1,234,567 tokens, "
    found = kv_cache_size(["noise", line + "Maximum concurrency for 32,768 tokens per request: 37.68x"])
    assert found is not None and (found.device, found.tokens) == ("GPU", 1234567)
    assert kv_cache_size(["no figure here"]) is None


def test_failure_reason_names_the_root_cause_not_the_wrapper() -> None:
    why = failure_reason(_log("kv-too-small.log"))
    assert why is not None and why.startswith("ValueError: No available memory for the cache blocks")


def test_failure_reason_of_a_head_size_the_cpu_kernels_lack() -> None:
    """head_dim 16: /health was 200, the first request killed the engine (why check_supported refuses it)."""
    lines = _log("head-dim-16-first-request.log")
    assert failure_reason(lines) == (
        "RuntimeError: Unsupported CPU attention configuration: head_dim=16 isa=2 kv_cache_idx=0")
    assert kv_cache_size(lines).tokens == 131072


def test_failure_reason_of_argument_errors_and_warnings() -> None:
    warning = ("(APIServer pid=1) WARNING 11-23 17:30:12 [system_utils.py:255] Found ulimit of 20000 ... "
               "fd limit errors like `OSError: [Errno 24] Too many open files`.")
    assert failure_reason([warning]) is None
    assert failure_reason(["api_server.py: error: argument --dtype: invalid choice: 'f12'"]) == (
        "bad argument: argument --dtype: invalid choice: 'f12'")
    assert failure_reason(["RuntimeError: Engine core initialization failed. See root cause above."]) == (
        "RuntimeError: Engine core initialization failed. See root cause above.")


# readiness (the real server: tests/integration/test_vllm_real.py; here an aiohttp stand-in for its two routes) --
async def test_ready_only_after_a_real_completion_succeeds(tmp_path: Path) -> None:
    from aiohttp import web

    seen: list[tuple[str, str | None]] = []

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="")

    async def completions(request: web.Request) -> web.Response:
        seen.append(("completion", request.headers.get("Authorization")))
        if len(seen) < 3:  # vLLM can refuse the first requests after /health turns 200
            return web.json_response({"error": {"message": "not yet"}}, status=503)
        return web.json_response({"choices": [{"text": "x"}]})

    app = web.Application()
    app.add_routes([web.get("/health", health), web.post("/v1/completions", completions)])
    runner = web.AppRunner(app)
    await runner.setup()
    sock = tmp_path / "vllm.sock"  # served on a Unix socket, as llmctl runs vLLM
    await web.UnixSite(runner, str(sock)).start()
    try:
        took = await wait_ready("http://localhost", "secret", "tiny", uds=sock, timeout=30, interval=0.05)
    finally:
        await runner.cleanup()
    assert took < 30 and seen == [("completion", "Bearer secret")] * 3


async def test_not_ready_names_what_vllm_last_answered() -> None:
    from aiohttp import web

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="")

    async def completions(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "EngineCore encountered an issue"}}, status=500)

    app = web.Application()
    app.add_routes([web.get("/health", health), web.post("/v1/completions", completions)])
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    try:
        with pytest.raises(NotReady, match="not ready after 1 s") as err:
            await wait_ready(base, "k", "tiny", timeout=1, interval=0.05)
    finally:
        await runner.cleanup()
    assert "a 1-token completion answered 500" in err.value.message and "EngineCore" in err.value.message
    polls = iter([True, True, False])
    with pytest.raises(NotReady, match="exited before it was ready") as err:
        await wait_ready(base, "k", "tiny", timeout=30, interval=0.05, alive=lambda: next(polls))
    assert "Cannot connect" in err.value.message  # nothing ever answered on that port

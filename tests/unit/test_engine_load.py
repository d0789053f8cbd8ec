"""Engines' own series mapped onto llmctl's engine-neutral load figures: llama.cpp from a recorded scrape of the
real server (``tests/fixtures/llamacpp``), vLLM from its v1 logger's names; parsed with the same parser the
controller uses. Then the controller's side: which deployments get figures and which say why they have none."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmctl.app.controller.engine_load import NO_ANSWER, NO_METRICS, REMOTE, _model_load, gauge_families, series_of
from llmctl.runtimes.base import BackendState, EngineLoad, ReportsLoad
from llmctl.runtimes.llama_cpp import LlamaCppPython, LlamaServer, XLlamaCpp, llama_load, slots_kv_usage
from llmctl.runtimes.vllm import vllm_load
from llmctl.runtimes.vllm_engine import VllmEngine

FIXTURES = Path(__file__).parent.parent / "fixtures"


def scrape(path: Path) -> dict[str, list[float]]:
    return series_of(text_string_to_metric_families(path.read_text()))


def slots(name: str) -> object:
    return json.loads((FIXTURES / "llamacpp" / name).read_text())


def test_llama_cpp_busy() -> None:
    load = llama_load(scrape(FIXTURES / "llamacpp" / "metrics-busy.txt"),
                      {"/slots": slots("slots-busy-unified.json")})
    assert load == EngineLoad(requests_running=2, requests_waiting=1,
                              # two busy slots holding 39 and 40 tokens of the one 1024-cell pool they share
                              # (--kv-unified: each reports the whole pool as its n_ctx, counted once)
                              kv_cache_usage=(39 + 40) / 1024,
                              prefix_cache_hits=152, prefix_cache_queries=91 + 152,  # processed + reused
                              preemptions=None,  # llama.cpp defers, never preempts
                              tokens_prompt=243,
                              tokens_generated=716 + 0 + 1,  # finished requests' plus the running ones' so far
                              context_per_slot=1024)  # what one request may fill: the whole pool, from /slots
    assert load.prefix_cache_hit_rate == pytest.approx(152 / 243)
    assert load.to_json()["prefix_cache_hit_rate"] == pytest.approx(0.6255, abs=1e-4)


def test_llama_cpp_idle_holds_no_kv_for_running_requests() -> None:
    load = llama_load(scrape(FIXTURES / "llamacpp" / "metrics-idle.txt"), {"/slots": slots("slots-idle.json")})
    assert (load.requests_running, load.requests_waiting, load.kv_cache_usage) == (0, 0, 0.0)
    assert load.tokens_generated > 716  # counters only grow


def test_llama_cpp_tokens_generated_move_during_a_stream() -> None:
    """llama.cpp counts a request's tokens at its end: the running slots' decoded tokens make the figure move."""
    series = scrape(FIXTURES / "llamacpp" / "metrics-busy.txt")
    assert llama_load(series, {}).tokens_generated == 716  # no /slots: the engine's own counter only
    busy = slots("slots-busy.json")
    busy[0]["next_token"][0]["n_decoded"] = 90
    assert llama_load(series, {"/slots": busy}).tokens_generated == 716 + 90 + 55
    busy[1]["is_processing"] = False  # ended: its tokens are in the engine's counter now
    assert llama_load(series, {"/slots": busy}).tokens_generated == 716 + 90


def test_llama_cpp_without_slots_reports_no_kv_rather_than_zero() -> None:
    series = scrape(FIXTURES / "llamacpp" / "metrics-busy.txt")
    assert llama_load(series, {}).kv_cache_usage is None
    older = {**series, "llamacpp:kv_cache_usage_ratio": [0.25]}  # a build from before the series was dropped
    assert llama_load(older, {}).kv_cache_usage == 0.25
    assert llama_load(older, {"/slots": slots("slots-busy-unified.json")}).kv_cache_usage == \
        pytest.approx(79 / 1024)


@pytest.mark.parametrize("answer", [None, {}, [], "x", [{"id": 0}], [{"n_ctx": "512"}], [{"n_ctx": 0}],
                                    [{"n_ctx": 512, "is_processing": True, "n_prompt_tokens": "many"}]])
def test_an_odd_slots_answer_is_no_figure_or_a_bounded_one(answer) -> None:
    usage = slots_kv_usage(answer)
    assert usage is None or 0.0 <= usage <= 1.0


def test_a_slot_never_counts_more_than_its_context() -> None:
    slot = {"n_ctx": 100, "is_processing": True, "n_prompt_tokens": 90,
            "next_token": [{"n_decoded": 40}], "n_prompt_tokens_processed": 90}  # a build counting prompt only
    # one pool of 100 shared by both slots: the busy one holds all of it, not 130 tokens
    assert slots_kv_usage([slot, {"n_ctx": 100, "is_processing": False, "n_prompt_tokens": 80}]) == 1.0
    assert slots_kv_usage([slot, slot]) == 1.0  # the pool is counted once, and the share never passes 1


def test_vllm() -> None:
    load = vllm_load(scrape(FIXTURES / "vllm" / "metrics-busy.txt"))
    assert load == EngineLoad(requests_running=3, requests_waiting=2, kv_cache_usage=0.4375, prefix_cache_hits=1024,
                              prefix_cache_queries=1536, preemptions=1, tokens_prompt=1536, tokens_generated=96)
    assert load.prefix_cache_hit_rate == pytest.approx(2 / 3)


def test_vllm_data_parallel_cores_add_up_and_kv_is_their_mean() -> None:
    series = scrape(FIXTURES / "vllm" / "metrics-busy.txt")
    two = {name: values * 2 for name, values in series.items()}
    two["vllm:kv_cache_usage_perc"] = [0.25, 0.75]
    load = vllm_load(two)
    assert (load.requests_running, load.kv_cache_usage, load.preemptions) == (6, 0.5, 2)


def test_one_engine_never_reads_anothers_series() -> None:
    llama, vllm = scrape(FIXTURES / "llamacpp" / "metrics-busy.txt"), scrape(FIXTURES / "vllm" / "metrics-busy.txt")
    assert vllm_load(llama) is None and llama_load(vllm, {}) is None and llama_load({}, {}) is None


def test_which_engines_report_load() -> None:
    assert isinstance(XLlamaCpp(), ReportsLoad) and isinstance(LlamaServer("x"), ReportsLoad)
    assert isinstance(VllmEngine("python"), ReportsLoad)
    assert not isinstance(LlamaCppPython(), ReportsLoad)  # its server has no /metrics
    assert XLlamaCpp().load_paths == ("/slots",) and VllmEngine("python").load_paths == ()


# the controller's side ------------------------------------------------------------------------------------------
@dataclass
class Backend:
    """A stand-in for a RunningDeployment: what the engine-load scrape reads of one."""

    name: str
    engine: object = None
    state: BackendState = BackendState.READY
    remote: bool = False
    extra: dict = field(default_factory=dict)

    def status(self) -> dict:
        return {"engine": getattr(self.engine, "key", "ollama"), "state": self.state.value, "memory_bytes": 1 << 20}

    @property
    def load_reporter(self) -> ReportsLoad | None:  # as process.Backend's: its engine, when that engine reports load
        return self.engine if isinstance(self.engine, ReportsLoad) else None


def test_figures_or_why_not() -> None:
    families = list(text_string_to_metric_families((FIXTURES / "llamacpp" / "metrics-busy.txt").read_text()))
    pages = {"/slots": slots("slots-busy-unified.json")}
    ready = _model_load(Backend("tiny", XLlamaCpp()), families, pages)
    assert ready.note is None and ready.load.requests_running == 2
    assert ready.to_json()["figures"]["kv_cache_usage"] == pytest.approx(79 / 1024, abs=1e-4)
    hosted = _model_load(Backend("ollama/qwen3:0.6b"), None, {})  # an Ollama deployment has no engine of its own
    assert (hosted.load, hosted.note, hosted.to_json()["figures"]) == (None, NO_METRICS, None)
    assert _model_load(Backend("slow", XLlamaCpp()), [], {}).note == NO_ANSWER
    starting = _model_load(Backend("big", XLlamaCpp(), BackendState.STARTING), None, {})
    assert (starting.load, starting.note) == (None, "the model is starting")
    assert _model_load(Backend("r/m", remote=True), None, {}).note == REMOTE
    assert _model_load(Backend("py", LlamaCppPython()), [], {}).note == NO_METRICS


def test_llmctl_gauges_name_what_engines_report() -> None:
    families = list(text_string_to_metric_families((FIXTURES / "vllm" / "metrics-busy.txt").read_text()))
    loads = [_model_load(Backend("tiny-hf", VllmEngine("python")), families, {}),
             _model_load(Backend("ollama/qwen3:0.6b"), None, {})]
    samples = {(s.name, s.labels["model"]): s.value for f in gauge_families(loads) for s in f.samples}
    assert samples == {("llmctl_engine_requests_running", "tiny-hf"): 3,
                       ("llmctl_engine_requests_waiting", "tiny-hf"): 2,
                       ("llmctl_engine_kv_cache_usage_ratio", "tiny-hf"): 0.4375}

"""The engine families `llmctl fit --runtime` estimates for (``runtimes.registry.FitFamily``): the choices come
from the registry, each family's launch at the backend defaults from its engine module, and explicit overrides
win over the backend defaults."""

from __future__ import annotations

import pytest

from llmctl.app import fit_inputs
from llmctl.app.fit_inputs import serving_request
from llmctl.app.settings import Settings
from llmctl.catalog.estimate import VLLM_PROFILE, FitRequest
from llmctl.runtimes.base import EngineUnavailable
from llmctl.runtimes.llama_cpp import XLlamaCpp
from llmctl.runtimes.registry import FIT_FAMILIES, FIT_RUNTIMES, fit_family


def test_the_families_are_the_estimators_and_say_what_they_serve() -> None:
    assert FIT_RUNTIMES == ("llama.cpp", "vllm")
    assert fit_family().name == "llama.cpp"
    assert fit_family(fmt="gguf").name == "llama.cpp" and fit_family(fmt="safetensors").name == "vllm"
    for family in FIT_FAMILIES:
        req = family.default_request(1024, parallel=1, kv_type="f16", prompt_cache_mib=0, overrides={})
        assert req.runtime == family.name  # its engine module's memory rules are that family's formulas


def test_vllm_is_estimated_at_the_backend_defaults_without_llama_cpps_settings() -> None:
    settings = Settings(backends={"kv_type": "q8_0", "parallel": 3})
    assert serving_request(settings, 4096, runtime="vllm") == FitRequest(ctx=4096, parallel=3, profile=VLLM_PROFILE)
    assert serving_request(settings, 4096, runtime="vllm", parallel=5, kv_type="f32") == \
        FitRequest(ctx=4096, parallel=5, kv_type="f32", profile=VLLM_PROFILE)


def test_with_no_llama_cpp_engine_the_default_engines_rules_apply_and_overrides_win(tmp_path) -> None:
    # the configured engine cannot run here (its binary is missing): the real launch plan raises EngineUnavailable
    settings = Settings(backends={"kv_type": "q8_0", "parallel": 3, "prompt_cache_mib": 256,
                                  "engine": "llama-server", "llama_server": str(tmp_path / "missing-llama-server")})
    with pytest.raises(EngineUnavailable):
        fit_inputs.launch_plan(settings)
    default = FitRequest(ctx=2048, parallel=3, kv_type="q8_0", profile=XLlamaCpp().memory_profile(),
                         prompt_cache_bytes=256 << 20)
    assert serving_request(settings, 2048) == default
    assert serving_request(settings, 2048, parallel=4, kv_type="f16") == \
        FitRequest(ctx=2048, parallel=4, kv_type="f16", profile=default.profile, prompt_cache_bytes=256 << 20)

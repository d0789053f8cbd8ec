"""`recommend` and `fit` give one answer for the same launch; the recorded 3090's ranking; tables at 80 columns."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from llmctl.app.cli.root import cli
from llmctl.app.fit_inputs import serving_request
from llmctl.app.settings import Settings
from llmctl.catalog.estimate import Budget
from llmctl.catalog.known import find_model
from llmctl.catalog.recommend import quant_options

GiB = 1 << 30
RTX_3090 = ["--gpu", "RTX 3090", "--ram", "64GiB"]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _json(runner: CliRunner, args: list[str]) -> dict:
    r = runner.invoke(cli, args)
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


@pytest.mark.parametrize(("machine", "ctx"), [(RTX_3090, 8192), (["--vram", "8GiB", "--ram", "16GiB"], 4096),
                                              (["--vram", "0.5GiB", "--ram", "12GiB"], 8192)])
def test_each_recommended_option_is_what_fit_says(runner: CliRunner, machine: list[str], ctx: int) -> None:
    """Bytes, layers and verdict of every listed option equal `fit MODEL:QUANT --ctx N` on the same machine."""
    options = _json(runner, ["recommend", *machine, "--ctx", str(ctx), "--top", "8", "--json"])["options"]
    assert len(options) >= 5
    for o in options:
        est = _json(runner, ["fit", f"{o['model']}:{o['quant']}", *machine, "--ctx", str(o["ctx"]), "--json"])
        assert (o["total_bytes"], o["gpu_bytes"], o["cpu_bytes"], o["headroom_bytes"]) == (
            est["total_bytes"], est["gpu_bytes"], est["cpu_bytes"], est["headroom_bytes"]), o["model"]
        assert (o["gpu_layers"], o["n_layers"], o["fits"]) == (est["gpu_layers"], est["n_layers"] + 1, est["fits"])


def test_fit_follows_the_configured_gpu_layers_like_serve(runner: CliRunner, llmctl_home) -> None:
    (llmctl_home / "config").mkdir(parents=True, exist_ok=True)
    (llmctl_home / "config" / "config.toml").write_text("[backends]\nn_gpu_layers = 20\n")
    args = ["fit", "qwen3-8b:Q4_K_M", *RTX_3090, "--json"]
    assert _json(runner, args)["gpu_layers"] == 20
    assert _json(runner, [*args, "--gpu-layers", "auto"])["gpu_layers"] == 37
    rec = _json(runner, ["recommend", *RTX_3090, "--top", "40", "--json"])["options"]
    assert all(o["gpu_layers"] == 20 for o in rec if o["n_layers"] > 20)


def test_on_a_3090_a_32b_at_q4_k_m_ranks_above_its_q3_k_m(runner: CliRunner) -> None:
    """Qwen2.5-32B Q4_K_M at 8k on a 24 GiB card leaves more than the 1 GiB margin llama.cpp keeps: yes, all
    layers on the GPU, and it beats Q3_K_M; the top three are 27-32B models at Q4_K_M."""
    model, _ = find_model("qwen2.5-32b-instruct")
    launch = serving_request(Settings(), 8192)
    ranked = quant_options(model, Budget((24 * GiB,), 64 * GiB), launch, ctx=8192, gpu_bandwidth_gbs=936)
    by_quant = {o.quant: o for o in ranked}
    q4, q3 = by_quant["Q4_K_M"], by_quant["Q3_K_M"]
    assert q4.fits == "yes" and q4.gpu_layers == q4.n_layers and q4.headroom_bytes >= GiB
    assert q4.score > q3.score and ranked[0].quant == "Q4_K_M"
    top = _json(runner, ["recommend", *RTX_3090, "--ctx", "8192", "--json"])["options"][:3]
    assert all(o["quant"] == "Q4_K_M" and o["fits"] == "yes" and o["gpu_layers"] == o["n_layers"] for o in top)
    assert "qwen2.5-32b-instruct" in {o["model"] for o in top}
    assert all(find_model(o["model"])[0].params_b >= 27 for o in top)


def test_a_smaller_margin_turns_tight_into_yes(runner: CliRunner, llmctl_home) -> None:
    # a pool of 16384 tokens, which the 4 slots share (counted once)
    args = ["fit", "qwen2.5-32b-instruct:Q4_K_M", *RTX_3090, "--ctx", "16384", "--gpu-layers", "99", "--json"]
    assert _json(runner, args)["fits"] == "yes"  # 1.2 GiB left, over the default 1 GiB margin
    (llmctl_home / "config").mkdir(parents=True, exist_ok=True)
    (llmctl_home / "config" / "config.toml").write_text('[backends]\nmemory_margin = "2GiB"\n')
    est = _json(runner, args)
    assert est["fits"] == "tight" and "under the 2.0 GiB margin" in est["reason"]


@pytest.mark.parametrize("machine", [RTX_3090, ["--vram", "8GiB", "--ram", "16GiB"], ["--vram", "6GiB", "--ram",
                                                                                          "5GiB"]])
def test_recommend_at_80_columns_keeps_verdicts_and_layers_whole(runner: CliRunner, machine) -> None:
    r = runner.invoke(cli, ["recommend", *machine, "--top", "12"], env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("#"))
    assert "FIT" in lines[header] and "QUANT" in lines[header]
    rows = [line for line in lines[header + 1:] if re.match(r"\s*\d+\s", line)]
    assert len(rows) >= 5
    for line in rows:
        assert len(line.rstrip()) <= 80 and "…" not in line
        assert line.split()[-1] in ("yes", "tight"), line
        if "GPU" in lines[header]:
            assert re.search(r"\s(\d+/\d+|CPU)\s", line), line


def test_the_other_tables_keep_whole_words_at_80_columns(runner: CliRunner, tiny_gguf, llmctl_home) -> None:
    long = "a-model-with-a-rather-long-name-for-its-own-good-q4_k_m"
    assert runner.invoke(cli, ["import", str(tiny_gguf), "--name", long]).exit_code == 0
    r = runner.invoke(cli, ["models", "list"], env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    assert all(len(line.rstrip()) <= 80 for line in r.output.splitlines())
    assert "F32" in r.output and "…" not in r.output and "QUANT" in r.output and "SIZE" in r.output

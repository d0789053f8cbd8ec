"""`llmctl deploy export` as a user runs it: golden files (compared exactly) for a 7B AWQ on one 24 GiB GPU and a 70B
on 4 × 80 GiB (TP 4), the [models.NAME] profile applied, and errors. Set LLMCTL_UPDATE_GOLDEN=1 to rewrite the
goldens after reviewing a change; the schema checks live in tests/unit/test_manifests.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from llmctl.app.cli.root import cli
from llmctl.catalog.errors import LlmctlError

UPDATE = bool(os.environ.get("LLMCTL_UPDATE_GOLDEN"))  # read at import: the autouse fixture clears LLMCTL_*
GOLDEN = Path(__file__).parent.parent / "fixtures" / "deploy"
CASES = {
    "qwen2.5-7b-instruct-awq-rtx4090": ["qwen2.5-7b-instruct", "--gpu-type", "RTX 4090"],
    "llama-3.3-70b-instruct-bf16-tp4-a100-80gb": ["llama-3.3-70b-instruct", "--gpu-type", "A100 80GB", "--quant",
                                                  "bf16", "--tensor-parallel", "4"],
}


def run(*args: str):
    return CliRunner().invoke(cli, ["deploy", "export", *args])


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("target", ["k8s", "compose"])
def test_golden(case: str, target: str, tmp_path: Path) -> None:
    r = run(*CASES[case], "--target", target, "--out", str(tmp_path))
    assert r.exit_code == 0, r.output
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == (["compose.yaml", "vllm.env.example"] if target == "compose" else
                       [next(n for n in written if n.endswith(".k8s.yaml"))])
    for name in written:
        want = GOLDEN / case / name
        got = (tmp_path / name).read_text("utf-8")
        if UPDATE:
            want.parent.mkdir(parents=True, exist_ok=True)
            want.write_text(got, "utf-8")
        assert got == want.read_text("utf-8"), f"{name} differs from {want}"


def test_stdout_without_out() -> None:
    r = run(*CASES["qwen2.5-7b-instruct-awq-rtx4090"], "--target", "k8s")
    assert r.exit_code == 0, r.output
    assert [d["kind"] for d in yaml.safe_load_all(r.output)] == [
        "PersistentVolumeClaim", "Deployment", "Service", "HorizontalPodAutoscaler"]


def test_the_model_profile_applies(llmctl_home: Path) -> None:
    config = llmctl_home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('[models."qwen2.5-7b-instruct"]\nctx-size = 16384\nparallel = 8\naliases = ["chat"]\n')
    from llmctl.app.paths import resolve_paths

    assert resolve_paths().config_file == config
    r = run("qwen2.5-7b-instruct", "--gpu-type", "RTX 4090", "--target", "compose")
    assert r.exit_code == 0, r.output
    args = yaml.safe_load(r.output)["services"]["vllm"]["command"]
    i = args.index("--served-model-name")
    assert args[i + 1: i + 3] == ["qwen2.5-7b-instruct", "chat"]
    assert args[args.index("--max-model-len") + 1] == "16384"
    assert args[args.index("--max-num-seqs") + 1] == "8"


def test_errors_say_what_to_do() -> None:
    r = run("llama-3.3-70b-instruct", "--quant", "bf16", "--gpu-type", "RTX 4090", "--target", "k8s")
    assert isinstance(r.exception, LlmctlError) and "does not fit" in r.exception.title
    r = run("qwen2.5-7b-instruct", "--gpu-type", "Voodoo 2", "--target", "k8s")
    assert isinstance(r.exception, LlmctlError) and "unknown GPU" in r.exception.title

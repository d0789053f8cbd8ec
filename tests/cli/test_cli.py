"""The CLI's offline commands through click's runner, and `--help` staying light."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmctl.app.cli.root import cli, main


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_import_list_rm(runner: CliRunner, tiny_gguf: Path, llmctl_home: Path) -> None:
    r = runner.invoke(cli, ["import", str(tiny_gguf), "--name", "Tiny"])
    assert r.exit_code == 0, r.output
    assert "imported tiny: llama F32" in r.output and "context 2048" in r.output
    listed = json.loads(runner.invoke(cli, ["models", "list", "--json"]).output)
    assert [m["name"] for m in listed] == ["tiny"] and listed[0]["facts"]["n_layers"] == 2
    table = runner.invoke(cli, ["models", "list"]).output
    assert "tiny" in table and "F32" in table
    r = runner.invoke(cli, ["models", "rm", "tiny"])
    assert r.exit_code == 0 and "left in place" in r.output
    assert tiny_gguf.exists()
    assert "no models yet" in runner.invoke(cli, ["models", "list"]).output


def test_paths_json(runner: CliRunner, llmctl_home: Path) -> None:
    data = json.loads(runner.invoke(cli, ["paths", "--json"]).output)
    assert data["config_file"] == str(llmctl_home / "config" / "config.toml")
    assert all(Path(v).is_relative_to(llmctl_home) for v in data.values())


def _main(args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["llmctl", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    return exc.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "expected"),
    [(["import", "/no/such/file.gguf"], "does not exist"),
     (["models", "rm", "ghost"], "no model named 'ghost'"),
     (["import", "{tiny}", "--name", "../../etc"], "not a valid model name")],
)
def test_errors_are_one_clear_line_and_exit_1(monkeypatch, capsys, tiny_gguf: Path, args, expected) -> None:
    code, err = _main([a.replace("{tiny}", str(tiny_gguf)) for a in args], monkeypatch, capsys)
    assert code == 1
    assert err.startswith("error: ") and expected in err
    assert "Traceback" not in err


def test_bad_model_file_error(monkeypatch, capsys, tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 16 + bytes(8))
    code, err = _main(["import", str(bad)], monkeypatch, capsys)
    assert code == 1 and "bad.gguf is not a valid GGUF file" in err and "Re-download" in err


def test_bad_config_error(monkeypatch, capsys, llmctl_home: Path) -> None:
    (llmctl_home / "config").mkdir(parents=True)
    (llmctl_home / "config" / "config.toml").write_text("[server]\nport = 'eighty'\n")
    code, err = _main(["ps"], monkeypatch, capsys)
    assert code == 1 and "configuration is invalid" in err and "server.port" in err


def test_a_bad_flag_is_named_as_a_flag(monkeypatch, capsys) -> None:
    code, err = _main(["serve", "--port", "99999"], monkeypatch, capsys)
    assert code == 1 and err.startswith("error: --port: input should be less than or equal to 65535")
    assert "config.toml" not in err and "LLMCTL_" not in err


def test_help_does_not_import_heavy_modules() -> None:
    code = ("import sys\nfrom llmctl.app.cli.root import main\nsys.argv=['llmctl','--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "heavy=[m for m in ('textual','httpx','aiohttp','llama_cpp','rich','pydantic','psutil') "
            "if m in sys.modules]\nprint('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "Usage: llmctl" in out
    assert "HEAVY []" in out


def test_export_then_import_on_another_machine(runner: CliRunner, tiny_gguf: Path, tmp_path: Path, monkeypatch) -> None:
    assert runner.invoke(cli, ["import", str(tiny_gguf), "--name", "tiny"]).exit_code == 0
    bundle = tmp_path / "tiny.tar"
    r = runner.invoke(cli, ["export", "tiny", "--to", str(bundle)])
    assert r.exit_code == 0 and bundle.exists(), r.output
    monkeypatch.setenv("LLMCTL_HOME", str(tmp_path / "airgapped"))
    r = runner.invoke(cli, ["import", str(bundle), "--json"])
    assert r.exit_code == 0, r.output
    entry = json.loads(r.output)
    assert entry["name"] == "tiny" and entry["path"].startswith(str(tmp_path / "airgapped"))
    assert Path(entry["path"]).read_bytes() == tiny_gguf.read_bytes()


def test_import_copy_puts_the_file_in_the_store(runner: CliRunner, tiny_gguf: Path, llmctl_home: Path) -> None:
    r = runner.invoke(cli, ["import", str(tiny_gguf), "--copy", "--json"])
    assert r.exit_code == 0, r.output
    path = Path(json.loads(r.output)["path"])
    assert path.is_relative_to(llmctl_home) and path.read_bytes() == tiny_gguf.read_bytes()


def test_models_info(runner: CliRunner, tiny_gguf: Path) -> None:
    runner.invoke(cli, ["import", str(tiny_gguf), "--name", "tiny"])
    data = json.loads(runner.invoke(cli, ["models", "info", "tiny", "--json"]).output)
    assert data["facts"]["n_layers"] == 2 and data["fit"]["fits"] == "yes" and data["fit"]["kv_cache_bytes"] > 0
    text = runner.invoke(cli, ["models", "info", "tiny"]).output
    assert "needs" in text and "fits: yes" in text


def test_prune_shows_then_frees(runner: CliRunner, tiny_gguf: Path, llmctl_home: Path, tmp_path: Path) -> None:
    import os

    partial = Path(os.environ["HF_HOME"]) / "hub" / "models--org--x" / "blobs" / ("a" * 64 + ".incomplete")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"x" * 4096)
    runner.invoke(cli, ["import", str(tiny_gguf), "--copy", "--name", "kept"])
    orphan = llmctl_home / "data" / "models" / "orphan.gguf"
    orphan.write_bytes(b"GGUF")
    gone = tmp_path / "gone.gguf"
    gone.write_bytes(tiny_gguf.read_bytes())
    runner.invoke(cli, ["import", str(gone), "--name", "gone"])
    gone.unlink()
    r = runner.invoke(cli, ["models", "prune"], input="n\n")
    assert "orphan.gguf" in r.output and ".incomplete" in r.output and "gone" in r.output
    assert "nothing deleted" in r.output and partial.exists()
    r = runner.invoke(cli, ["models", "prune", "--yes"])
    assert r.exit_code == 0 and "freed" in r.output
    assert not partial.exists() and not orphan.exists()
    names = [m["name"] for m in json.loads(runner.invoke(cli, ["models", "list", "--json"]).output)]
    assert names == ["kept"]  # the copied model's file is in use and stays

"""An offline laptop gets a sentence, never a traceback (issue 15): every command that can touch the network, run
as a user runs it, against a closed loopback port and against the local Hub test server failing (cut mid-body,
503, 429, TLS spoken to plain HTTP); `pull` then resumes and verifies against a working server."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_gguf import write_tiny_llama

from llmctl.app.cli.root import main

REPO = "org/m-GGUF"
FILE = "m-Q8_0.gguf"


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed when the with ends: nothing listens there


@pytest.fixture
def model(tmp_path: Path) -> bytes:
    return write_tiny_llama(tmp_path / "m.gguf", n_embd=256, n_vocab=4000, n_ff=768).read_bytes()


def _env(home: Path, tmp_path: Path, endpoint: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMCTL_", "HF_"))}
    env.update(LLMCTL_HOME=str(home), HF_HOME=str(tmp_path / "hf"))
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    return env


def _llmctl(env: dict[str, str], *args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "llmctl", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def _one_clear_error(r: subprocess.CompletedProcess | tuple[int, str, str]) -> str:
    code, out, err = (r.returncode, r.stdout, r.stderr) if isinstance(r, subprocess.CompletedProcess) else r
    assert code == 1, (out, err)
    assert "Traceback" not in out + err, err
    assert err.startswith("error: ") and err.count("error:") == 1, err
    return err


# pull ---------------------------------------------------------------------------------------------------------
def test_pull_against_a_closed_port_says_which_host_and_the_ways_out(llmctl_home, tmp_path, closed_port) -> None:
    err = _one_clear_error(_llmctl(_env(llmctl_home, tmp_path, f"http://127.0.0.1:{closed_port}"),
                                   "pull", f"{REPO}:Q8_0"))
    assert f"could not list {REPO} at 127.0.0.1:{closed_port}: the connection was refused" in err
    assert "--offline" in err and "HF_ENDPOINT" in err and "llmctl import" in err


def test_pull_speaking_tls_to_a_plain_server_is_one_line(hub, llmctl_home, tmp_path) -> None:
    err = _one_clear_error(_llmctl(_env(llmctl_home, tmp_path, f"https://127.0.0.1:{hub.port}"), "pull",
                                   f"{REPO}:Q8_0"))
    assert "TLS" in err and f"127.0.0.1:{hub.port}" in err


def _blob(tmp_path: Path, data: bytes) -> Path:
    return tmp_path / "hf" / "hub" / "models--org--m-GGUF" / "blobs" / hashlib.sha256(data).hexdigest()


def test_pull_cut_mid_body_keeps_the_partial_and_a_rerun_resumes_and_verifies(hub, model, llmctl_home,
                                                                               tmp_path) -> None:
    hub.add_file(REPO, FILE, model)
    hub.cut_after = len(model) // 3
    env = _env(llmctl_home, tmp_path, hub.url)
    err = _one_clear_error(_llmctl(env, "pull", f"{REPO}:Q8_0"))
    assert f"the download of {FILE} from 127.0.0.1:{hub.port} stopped at" in err
    assert "partial file is kept" in err and "resumes" in err and "--offline" in err
    partial = _blob(tmp_path, model).with_name(_blob(tmp_path, model).name + ".incomplete")
    assert partial.stat().st_size == len(model) // 3
    # 503 (with Retry-After: 0) on every try: bounded, and it says how far it got
    hub.cut_after, hub.status, hub.retry_after = None, 503, "0"
    err = _one_clear_error(_llmctl(env, "pull", f"{REPO}:Q8_0"))
    assert f"answered 503 for {FILE} 5 time(s)" in err and f"{len(model) // 3 / 2**20:.1f} of" in err
    assert partial.stat().st_size == len(model) // 3
    hub.status = None
    r = _llmctl(env, "pull", f"{REPO}:Q8_0")
    assert r.returncode == 0, r.stderr
    assert f"resuming {FILE}" in r.stdout and "registered as m-q8_0" in r.stdout
    assert _blob(tmp_path, model).read_bytes() == model and not partial.exists()
    assert hub.requests[-1][2] == f"bytes={len(model) // 3}-"


def test_pull_rate_limited_while_listing_gives_up_after_bounded_retries(hub, model, llmctl_home, tmp_path) -> None:
    hub.add_file(REPO, FILE, model)
    hub.api_status, hub.retry_after = 429, "0"
    env = _env(llmctl_home, tmp_path, hub.url)
    err = _one_clear_error(_llmctl(env, "pull", f"{REPO}:Q8_0"))
    assert f"answered 429 when listing {REPO} after 5 tries" in err
    assert len([r for r in hub.requests if "/api/models/" in r[1]]) == 5
    hub.api_status = None
    r = _llmctl(env, "pull", f"{REPO}:Q8_0")
    assert r.returncode == 0 and _blob(tmp_path, model).read_bytes() == model, r.stderr


def _netns_works() -> bool:
    if not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _netns_works(), reason="needs `unshare -rn` (an empty network namespace)")
@pytest.mark.parametrize("endpoint", [None, "http://192.0.2.1"])
def test_pull_with_no_route_at_all_says_so_once_and_suggests_the_offline_paths(llmctl_home, tmp_path,
                                                                              endpoint) -> None:
    # an empty network namespace: no interface up, no route, no DNS; nothing can leave this machine
    r = _llmctl(_env(llmctl_home, tmp_path, endpoint), "pull", f"{REPO}:Q8_0", prefix=("unshare", "-rn"))
    err = _one_clear_error(r)
    assert "this machine looks offline" in err
    assert ("huggingface.co does not resolve" in err) if endpoint is None else ("no network route to 192.0.2.1" in err)
    assert "--offline" in err and "llmctl import" in err and "HF_ENDPOINT" in err


def test_a_logged_in_user_can_pull_a_gated_repo(hub, model, llmctl_home, tmp_path) -> None:
    hub.add_file(REPO, FILE, model)
    hub.gated.add(REPO)
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "token").write_text("hf_logged_in")  # what `hf auth login` leaves
    r = _llmctl(_env(llmctl_home, tmp_path, hub.url), "pull", f"{REPO}:Q8_0")
    assert r.returncode == 0, r.stderr
    assert _blob(tmp_path, model).read_bytes() == model
    assert set(hub.auth) == {"Bearer hf_logged_in"}  # resolve requests only; the redirect target is the same host


# commands that talk to the controller -------------------------------------------------------------------------
CONTROLLER_COMMANDS = [["ps"], ["start", "m"], ["stop", "m"], ["logs", "m"], ["chat", "m", "-m", "hi"],
                       ["shutdown"]]


def _main(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["llmctl", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


@pytest.mark.parametrize("args", CONTROLLER_COMMANDS, ids=lambda a: a[0])
def test_controller_commands_with_no_controller(args, monkeypatch, capsys, closed_port) -> None:
    monkeypatch.setenv("LLMCTL_SERVER__PORT", str(closed_port))
    err = _one_clear_error(_main(args, monkeypatch, capsys))
    assert "no llmctl controller is running for" in err and "llmctl serve" in err


@pytest.mark.parametrize("switch", ["503", "429", "cut"])
@pytest.mark.parametrize("args", CONTROLLER_COMMANDS, ids=lambda a: a[0])
def test_controller_commands_against_a_failing_server(hub, args, switch, monkeypatch, capsys) -> None:
    if switch == "cut":
        hub.cut_after = 1000
    else:
        hub.status, hub.retry_after = int(switch), "1"
    from llmctl.app.paths import resolve_paths

    hub.as_controller(resolve_paths())
    err = _one_clear_error(_main(args, monkeypatch, capsys))
    if switch == "cut":
        # the controller client names what it lost (app/client/api.py maps every transport error to a sentence)
        assert f"lost the connection to the controller at http://127.0.0.1:{hub.port}" in err
    else:
        assert f"({switch})" in err

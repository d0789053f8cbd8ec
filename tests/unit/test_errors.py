"""app/errors.py: library failures become llmctl's one-line errors; anything else is logged with its traceback."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import httpx
import pytest

from llmctl.app.errors import as_error, report
from llmctl.catalog.errors import LlmctlError, NetworkError


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_httpx_failure_names_the_host_and_what_happened() -> None:
    port = _refused_port()
    with pytest.raises(httpx.ConnectError) as caught:
        httpx.get(f"http://127.0.0.1:{port}/x")
    error = as_error(caught.value)
    assert isinstance(error, NetworkError)
    assert error.title == f"talking to 127.0.0.1:{port} failed: the connection was refused (nothing listens there)"


def test_a_huggingface_hub_failure_is_mapped_too(monkeypatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    import httpx2  # huggingface_hub's HTTP library: a different class tree from httpx

    port = _refused_port()
    with pytest.raises(httpx2.ConnectError) as caught:
        httpx2.get(f"http://127.0.0.1:{port}/api/models/org/x")
    error = as_error(caught.value)
    assert isinstance(error, NetworkError) and "refused" in error.title and f"127.0.0.1:{port}" in error.title


@pytest.mark.parametrize(("exc", "title"), [
    (PermissionError(errno.EACCES, "Permission denied", "/x/models.json"), "permission denied: /x/models.json"),
    (OSError(errno.ENOSPC, "No space left on device", "/x/blob"), "the disk is full: /x/blob"),
])
def test_file_system_failures_say_what_to_do(exc: OSError, title: str) -> None:
    error = as_error(exc)
    assert isinstance(error, LlmctlError) and error.title == title and error.message


def test_a_bug_is_one_line_on_screen_and_its_traceback_goes_to_the_log(tmp_path: Path, capsys) -> None:
    def buggy() -> None:
        {}["missing"]

    try:
        buggy()
    except KeyError as exc:
        assert as_error(exc) is None
        code = report(exc, lambda: tmp_path / "logs")
    err = capsys.readouterr().err
    log = tmp_path / "logs" / "llmctl.log"
    assert code == 1 and err.startswith("error: unexpected KeyError: 'missing'") and str(log) in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 2
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "in buggy" in text

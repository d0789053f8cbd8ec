"""The TUI's chat history files: one per model, written whole, and a broken or foreign file reads as none."""

from __future__ import annotations

import json
import os
import stat

from llmctl.app.client import chat_history


def test_a_history_round_trips_per_model_and_clear_forgets_it(tmp_path) -> None:
    turns = [{"role": "user", "content": "Hi [b]"}, {"role": "assistant", "content": "Hello"}]
    chat_history.save(tmp_path, "ollama/qwen3:0.6b", turns)
    chat_history.save(tmp_path, "ollama-qwen3-0.6b", turns[:1])
    assert chat_history.load(tmp_path, "ollama/qwen3:0.6b") == turns
    assert chat_history.load(tmp_path, "ollama-qwen3-0.6b") == turns[:1]  # a lookalike name has its own file
    assert all(p.parent == tmp_path for p in tmp_path.iterdir())
    chat_history.clear(tmp_path, "ollama/qwen3:0.6b")
    assert chat_history.load(tmp_path, "ollama/qwen3:0.6b") == []
    chat_history.clear(tmp_path, "never-saved")  # nothing to forget is not an error


def test_a_broken_or_foreign_file_reads_as_no_history(tmp_path) -> None:
    path = chat_history.history_file(tmp_path, "m")
    path.write_text("{not json")
    assert chat_history.load(tmp_path, "m") == []
    path.write_text(json.dumps({"model": "other", "messages": [{"role": "user", "content": "x"}]}))
    assert chat_history.load(tmp_path, "m") == []
    path.write_text(json.dumps({"model": "m", "messages": [{"role": "system", "content": "x"}, {"role": "user"},
                                                           {"role": "user", "content": 3}, "text",
                                                           {"role": "user", "content": "kept"}]}))
    assert chat_history.load(tmp_path, "m") == [{"role": "user", "content": "kept"}]


def test_names_cannot_leave_the_folder(tmp_path) -> None:
    assert chat_history.history_file(tmp_path, "../../etc/passwd").parent == tmp_path
    assert chat_history.history_file(tmp_path, "..").parent == tmp_path


def test_a_history_is_private(tmp_path) -> None:
    """Conversations are the user's alone: the folder 0700 (also one made before, 0755), each file 0600, even where
    an old temporary file of another mode is in the way (O_CREAT keeps an existing file's mode)."""
    folder = tmp_path / "chats"
    old = os.umask(0o022)  # the usual umask: without care, 0755 folders and 0644 files
    try:
        chat_history.save(folder, "m", [{"role": "user", "content": "a secret"}])
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE(chat_history.history_file(folder, "m").stat().st_mode) == 0o600
        folder.chmod(0o755)
        path = chat_history.history_file(folder, "n")
        stale = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        stale.write_text("left over")
        stale.chmod(0o644)
        chat_history.save(folder, "n", [{"role": "user", "content": "another"}])
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert chat_history.load(folder, "n") == [{"role": "user", "content": "another"}]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        chat_history.history_file(folder, m).name for m in ("m", "n"))  # no temporary file left behind

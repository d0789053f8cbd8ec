"""The TUI's chat history, one file per model under llmctl's data folder (``<data>/chats``): the conversation is
there again when the TUI reopens, and ``clear`` forgets it. The files are the user's own but still read as
untrusted: anything that is not a list of user/assistant turns of text is ignored, never a crash. A conversation is
private: the folder is 0700 and each file 0600 from its first byte (``test_chat_history``)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

ROLES = ("user", "assistant")
MAX_TURNS = 200  # messages kept per model: older ones drop off (a history is a convenience, not an archive)


def history_file(folder: Path, model: str) -> Path:
    """The file of one model's history: a readable slug plus a short hash, so ``ollama/qwen3:0.6b`` and
    ``ollama-qwen3-0.6b`` never share a file and no name can point outside the folder."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model).strip(".-")[:80] or "model"
    return folder / f"{slug}-{hashlib.sha256(model.encode()).hexdigest()[:8]}.json"


def load(folder: Path, model: str) -> list[dict[str, str]]:
    """The model's turns, oldest first; [] when there are none or the file is not a history."""
    try:
        data = json.loads(history_file(folder, model).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(data, dict) or data.get("model") != model or not isinstance(data.get("messages"), list):
        return []
    return [{"role": m["role"], "content": m["content"]} for m in data["messages"][-MAX_TURNS:]
            if isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str)]


def save(folder: Path, model: str, messages: list[dict[str, str]]) -> None:
    """Replace the model's history (written whole, then renamed: a crash never leaves half a file)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if folder.stat().st_mode & 0o077:
        folder.chmod(0o700)  # made before histories were private (mkdir leaves an existing folder's mode)
    path = history_file(folder, model)
    kept = [{"role": m["role"], "content": m["content"]} for m in messages if m.get("role") in ROLES][-MAX_TURNS:]
    # a temporary name of this process's own (two TUIs saving at once never write into one file), 0600 before a
    # byte is written; an old tmp file of another mode keeps that mode through O_CREAT, hence the fchmod
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            fd = -1
            out.write(json.dumps({"model": model, "messages": kept}, ensure_ascii=False))
        os.replace(tmp, path)
    finally:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)


def clear(folder: Path, model: str) -> None:
    history_file(folder, model).unlink(missing_ok=True)

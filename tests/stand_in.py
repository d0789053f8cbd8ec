"""A test server standing in for this state folder's controller: the CLI talks only to a controller that proves
itself (its state file names it, and it answers the hello nonce with an HMAC keyed by the file's secret), so a fake
that plays the controller writes that file and answers the hello as the real one does (``app.controller.hello``)."""

from __future__ import annotations

import os

import psutil

from llmctl.app.handshake import HELLO_PATH, NONCE_HEADER, new_secret, proof, write_state

__all__ = ["HELLO_PATH", "claim", "hello_answer"]


def claim(paths, port: int) -> str:
    """Write the state file naming a server on ``port`` (and this live test process as its pid); returns the
    secret the server must prove it holds."""
    secret = new_secret()
    write_state(paths.controller_state, {
        "pid": os.getpid(), "create_time": psutil.Process().create_time(), "url": f"http://127.0.0.1:{port}",
        "host": "127.0.0.1", "port": port, "secret": secret,
    })
    return secret


def hello_answer(secret: str, headers) -> dict:
    return {"proof": proof(secret, headers.get(NONCE_HEADER, ""))}

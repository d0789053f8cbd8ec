"""What every CLI command shares: lazily resolved paths, settings and the controller client, and --json output."""

from __future__ import annotations

import json
from typing import Any

import click


class Context:
    """Lazily resolved paths, settings and controller client shared by the commands."""

    def __init__(self, overrides: dict[str, Any] | None = None) -> None:
        self.overrides = overrides or {}
        self._settings = None
        self._paths = None

    @property
    def paths(self):
        if self._paths is None:
            from llmctl.app.paths import resolve_paths

            self._paths = resolve_paths()
        return self._paths

    @property
    def settings(self):
        if self._settings is None:
            from llmctl.app.settings import load_settings

            self._settings = load_settings(self.paths, self.overrides)
        return self._settings

    def store(self):
        from llmctl.catalog.store import ModelStore

        return ModelStore(self.paths.data_dir)

    def client(self):
        """The client of this state folder's controller: it must prove itself before any key is sent, and the key
        is then its owner key (admin); see ``app.handshake``."""
        from llmctl.app.client.api import local_client

        return local_client(self.settings, self.paths, bench_dir=self.paths.data_dir / "benchmarks",
                            chats_dir=self.paths.data_dir / "chats")

    def call(self, use):
        """Run ``await use(client)`` with a fresh client and return its result (for one-shot commands)."""
        import asyncio

        async def main():
            async with self.client() as client:
                return await use(client)

        return asyncio.run(main())


pass_ctx = click.make_pass_decorator(Context, ensure=True)


def emit_json(data: Any, *, compact: bool = False) -> None:
    """Every command's --json output: indented, or one object per line (``compact``, for JSON Lines streams)."""
    click.echo(json.dumps(data, default=str) if compact else json.dumps(data, indent=2, default=str))

"""The one exception hierarchy of llmctl.

Every error a user can see carries a short ``title`` (what went wrong) and a ``message``
(what to do about it). The root lives here, in the lowest layer, so that every layer can raise it.

    LlmctlError
    ├── ModelFileError          a model file is missing, unreadable or malformed
    ├── StoreError              the local model store refused a change (bad name, duplicate, unknown)
    ├── ConfigError             config.toml, an environment override or a command-line flag is invalid
    ├── NetworkError            a host could not be reached or answered with an error (app/errors.py maps
    │                           httpx, huggingface_hub and aiohttp failures to it)
    └── RuntimeFailure          (runtimes) a backend could not be started or kept running
        ├── PortInUseError      the chosen port belongs to a process llmctl did not start
        └── BackendFailed       the backend crashed during load or crash-looped; carries its last log lines
"""

from __future__ import annotations


class LlmctlError(Exception):
    """Root of every error llmctl reports to a person."""

    def __init__(self, title: str, message: str = "") -> None:
        super().__init__(f"{title}: {message}" if message else title)
        self.title = title
        self.message = message


class ModelFileError(LlmctlError):
    """A model file is missing, unreadable or malformed."""


class StoreError(LlmctlError):
    """The local model store refused a change."""


class ConfigError(LlmctlError):
    """Configuration is invalid."""


class NetworkError(LlmctlError):
    """A host could not be reached, or answered with an error."""

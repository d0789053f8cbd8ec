"""Where llmctl keeps things. ``LLMCTL_HOME`` relocates all of it (tests, portable installs).

Nothing is created here; directories are made at first use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Paths:
    config_dir: Path
    data_dir: Path
    cache_dir: Path
    state_dir: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        """Per-launch scratch folders of running backends (temp files, engine caches); removed after each exit."""
        return self.state_dir / "run"

    @property
    def backends_state(self) -> Path:
        return self.state_dir / "backends.json"

    @property
    def controller_state(self) -> Path:
        return self.state_dir / "controller.json"

    def as_dict(self) -> dict[str, str]:
        return {
            "config_file": str(self.config_file),
            "config_dir": str(self.config_dir),
            "data_dir": str(self.data_dir),
            "models_dir": str(self.models_dir),
            "cache_dir": str(self.cache_dir),
            "state_dir": str(self.state_dir),
            "logs_dir": str(self.logs_dir),
            "run_dir": str(self.run_dir),
        }


def resolve_paths(env: dict[str, str] | None = None) -> Paths:
    env = os.environ if env is None else env
    home = env.get("LLMCTL_HOME")
    if home:
        root = Path(home).expanduser().resolve()
        return Paths(root / "config", root / "data", root / "cache", root / "state")
    import platformdirs

    return Paths(
        platformdirs.user_config_path("llmctl", appauthor=False),
        platformdirs.user_data_path("llmctl", appauthor=False),
        platformdirs.user_cache_path("llmctl", appauthor=False),
        platformdirs.user_state_path("llmctl", appauthor=False),
    )

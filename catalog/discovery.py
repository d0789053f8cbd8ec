"""GGUFs other tools already have on this machine, found without copying anything:

- the Hugging Face cache (``HF_HUB_CACHE`` / ``HF_HOME``): ``models--org--name/snapshots/<commit>/**/*.gguf``;
- Ollama's store (``OLLAMA_MODELS`` or ``~/.ollama/models``): ``manifests/<registry>/<ns>/<model>/<tag>`` JSON
  whose model layer digest names a file in ``blobs/`` (digests are validated before they become paths);
- LM Studio's folders (``~/.lmstudio/models``, ``~/.cache/lm-studio/models``): ``<publisher>/<repo>/*.gguf``.

`llmctl models list` shows them beside the registered models; `llmctl import PATH` registers one.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from llmctl.catalog.gguf import split_parts

_DIGEST = re.compile(r"^sha256[:-]([0-9a-f]{64})$")
_OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
MAX_MANIFEST = 1 << 20


@dataclass(frozen=True, slots=True)
class Found:
    name: str
    path: str
    source: str  # hf-cache | ollama | lm-studio
    size: int

    def to_json(self) -> dict:
        return asdict(self)


def hf_cache_dir(env: dict[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def _hf(cache: Path) -> list[Found]:
    found = []
    for repo in sorted(cache.glob("models--*")):
        snapshots = repo / "snapshots"
        if not snapshots.is_dir():
            continue
        repo_id = repo.name.removeprefix("models--").replace("--", "/", 1)
        for path in sorted(snapshots.glob("*/*.gguf")) + sorted(snapshots.glob("*/*/*.gguf")):
            target = path.resolve()
            if target.is_file() and ("-of-" not in path.name or "-00001-of-" in path.name):
                parts = split_parts(path)
                if len(parts) > 1:  # the snapshot's names, which tie the parts together (the blobs' do not)
                    found.append(Found(f"{repo_id}/{path.name}", str(path), "hf-cache", _total_size(parts)))
                else:
                    found.append(Found(f"{repo_id}/{path.name}", str(target), "hf-cache", target.stat().st_size))
    return found


def _ollama(root: Path) -> list[Found]:
    found = []
    manifests = root / "manifests"
    if not manifests.is_dir():
        return found
    for manifest in sorted(p for p in manifests.glob("*/*/*/*") if p.is_file()):
        try:
            if manifest.stat().st_size > MAX_MANIFEST:
                continue
            layers = json.loads(manifest.read_text("utf-8")).get("layers", [])
        except (OSError, ValueError, AttributeError):
            continue
        for layer in layers if isinstance(layers, list) else []:
            if not isinstance(layer, dict) or layer.get("mediaType") != _OLLAMA_MODEL_LAYER:
                continue
            m = _DIGEST.match(str(layer.get("digest", "")))
            if not m:
                continue  # a digest that is not sha256 hex never becomes a path
            blob = root / "blobs" / f"sha256-{m.group(1)}"
            if blob.is_file():
                _registry, namespace, model, tag = manifest.relative_to(manifests).parts
                label = f"{model}:{tag}" if namespace == "library" else f"{namespace}/{model}:{tag}"
                found.append(Found(label, str(blob), "ollama", blob.stat().st_size))
    return found


def _lm_studio(roots: list[Path]) -> list[Found]:
    found = []
    for root in roots:
        for path in sorted(root.glob("*/*/*.gguf")) if root.is_dir() else []:
            if path.is_file() and ("-of-" not in path.name or "-00001-of-" in path.name):
                publisher, repo = path.parts[-3], path.parts[-2]
                found.append(Found(f"{publisher}/{repo}/{path.name}", str(path), "lm-studio",
                                   _total_size(split_parts(path))))
    return found


def _total_size(parts: list[Path]) -> int:
    """Bytes of every part of a (split) model that is present."""
    return sum(p.stat().st_size for p in parts if p.is_file())


def discover(env: dict[str, str] | None = None) -> list[Found]:
    env = os.environ if env is None else env
    home = Path(env.get("HOME", "~")).expanduser()
    ollama = Path(env["OLLAMA_MODELS"]).expanduser() if env.get("OLLAMA_MODELS") else home / ".ollama" / "models"
    lm = [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"]
    return _hf(hf_cache_dir(env)) + _ollama(ollama) + _lm_studio(lm)

"""Search the Hugging Face Hub for models llmctl can pull (GGUF and safetensors repos), for the TUI's Models screen
through the client (a screen never does HTTP itself). Each result lists its quants with their sizes, read from
the repo's file tree; the answers are the Hub's (or a mirror's, ``HF_ENDPOINT``): untrusted, so anything
malformed is left out rather than trusted."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from llmctl.catalog.errors import LlmctlError
from llmctl.catalog.selectors import is_projector, quant_of

LIMIT = 20  # repos per search: each costs one tree listing
SAFETENSORS = "safetensors"  # the "quant" of a safetensors repo (pulled whole, served by vLLM)


class HubSearchError(LlmctlError):
    """The Hub did not answer the search."""


@dataclass
class HubQuant:
    quant: str
    size: int  # bytes, all shards together


@dataclass
class HubResult:
    repo: str
    downloads: int
    kind: str  # "gguf" or "safetensors"
    quants: list[HubQuant] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"repo": self.repo, "downloads": self.downloads, "kind": self.kind,
                "quants": [{"quant": q.quant, "size": q.size} for q in self.quants]}


def quants_of(files: list[tuple[str, int]]) -> tuple[str, list[HubQuant]]:
    """(kind, quants) of a repo's files: GGUF files grouped by quant (shards added up, projectors left out), else
    its safetensors weights as one entry."""
    sizes: dict[str, int] = {}
    for name, size in files:
        if name.endswith(".gguf") and not is_projector(name) and (quant := quant_of(name)):
            sizes[quant] = sizes.get(quant, 0) + size
    if sizes:
        return "gguf", sorted((HubQuant(q, s) for q, s in sizes.items()), key=lambda q: q.size)
    weights = sum(size for name, size in files if name.endswith(".safetensors"))
    return (SAFETENSORS, [HubQuant(SAFETENSORS, weights)]) if weights else ("", [])


def search(query: str, *, limit: int = LIMIT, token: str | None = None) -> list[HubResult]:
    """Repos matching ``query`` (GGUF first, then safetensors), most downloaded first, each with its quants."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true"):
        raise HubSearchError("the Hub is off (HF_HUB_OFFLINE)", "unset it to search, or pull a model you know")
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)  # a mirror, read now (not at import)
    results: list[HubResult] = []
    try:
        seen: set[str] = set()
        for tag in ("gguf", SAFETENSORS):
            for info in api.list_models(search=query, filter=tag, sort="downloads", limit=limit):
                repo = getattr(info, "id", None)
                if not isinstance(repo, str) or repo.count("/") != 1 or repo in seen:
                    continue
                seen.add(repo)
                files = [(f.path, f.size) for f in api.list_repo_tree(repo, recursive=True)
                         if isinstance(getattr(f, "size", None), int) and isinstance(getattr(f, "path", None), str)]
                kind, quants = quants_of(files)
                if quants:
                    downloads = getattr(info, "downloads", 0)
                    results.append(HubResult(repo, downloads if isinstance(downloads, int) else 0, kind, quants))
                if len(results) >= limit:
                    return results
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise HubSearchError("the Hub search failed", f"{type(exc).__name__}: {exc}".splitlines()[0]) from None
    return results

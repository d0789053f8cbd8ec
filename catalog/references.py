"""What a model reference names, shared by ``llmctl pull`` and the controller's pulls.

A reference is a catalog ``NAME[:QUANT]`` (the catalog's default quant when none is given), a Hub
``ORG/REPO:QUANT`` (exact: ``Q4_K`` is not ``Q4_K_M``) or ``ORG/REPO:FILE.gguf``, or a bare ``ORG/REPO`` that is not
a ``-GGUF`` repo (a safetensors model, for vLLM). ``resolve`` lists the repo, picks the files (every shard, the
projector), chooses the registry name and refuses to rebind a name that points at another file unless forced;
``register`` records the pulled model in the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from llmctl.catalog.downloads import HubDownloader, PullPlan, repo_folder, safetensors_files
from llmctl.catalog.errors import LlmctlError, StoreError
from llmctl.catalog.known import default_quant, find_model
from llmctl.catalog.selectors import SPLIT_RE, GgufChoice, choose_gguf
from llmctl.catalog.store import ModelEntry, ModelStore, name_from_path, validate_name


@dataclass(frozen=True, slots=True)
class Target:
    """What a reference names: a repo and, for a GGUF, a quant or a file (neither: a safetensors repo)."""

    repo: str
    quant: str | None
    file: str | None
    default_name: str | None
    what: str


def parse_reference(ref: str) -> Target:
    """The repo and selector a reference names (no network); an LlmctlError for an unknown catalog name or a GGUF
    repo without a quant or file."""
    ref = ref.strip()
    base, _, spec = ref.partition(":")
    if "/" not in base:
        model, quant = find_model(ref)
        quant = quant or default_quant(model)
        return Target(model.gguf.repo, quant, None, f"{model.name}-{quant.lower()}", f"{model.name} {quant}")
    if spec.lower().endswith(".gguf"):
        stem = SPLIT_RE.sub("", PurePosixPath(spec).name.removesuffix(".gguf"))
        return Target(base, None, spec, name_from_path(Path(stem)), spec)
    if spec:
        return Target(base, spec, None, f"{base.split('/')[1].lower().removesuffix('-gguf')}-{spec.lower()}", spec)
    if base.lower().endswith("-gguf"):
        raise LlmctlError(f"say which file of {base} to pull",
                          f"write {base}:QUANT (e.g. {base}:Q4_K_M) or {base}:FILE.gguf")
    return Target(base, None, None, None, f"{base} (safetensors, for vLLM)")


@dataclass(frozen=True, slots=True)
class ResolvedPull:
    """A reference made concrete: the files to fetch and, for a GGUF, the name to register them under."""

    target: Target
    plan: PullPlan
    choice: GgufChoice | None  # None: a safetensors repo (nothing is registered)
    name: str | None
    force: bool = False

    @property
    def key(self) -> tuple[str, str, tuple[str, ...]]:
        """Two pulls with the same key fetch the same files."""
        return (self.plan.repo, self.plan.commit, tuple(f.name for f in self.plan.files))


def resolve(downloader: HubDownloader, store: ModelStore, ref: str, *, name: str | None = None,
            revision: str = "main", force: bool = False) -> ResolvedPull:
    """List the repo (network) and decide what to fetch and under which name."""
    t = parse_reference(ref)
    if t.default_name is None:
        return ResolvedPull(t, downloader.plan(t.repo, safetensors_files, revision), None, None, force)
    listing = downloader.listing(t.repo, revision)
    choice = choose_gguf([f.name for f in listing.files], t.repo, quant=t.quant, file=t.file)
    plan = listing.only(choice.all_files)
    final = validate_name(name or t.default_name)
    existing = store.get(final)
    first = next(f for f in plan.files if f.name == choice.first)
    blob = (repo_folder(downloader.cache, t.repo) / "blobs" / first.key).resolve()
    if existing is not None and Path(existing.path).resolve() != blob and not force:
        raise StoreError(f"the name {final!r} already belongs to {existing.path}",
                         "pull with --name OTHER to keep both, or --force to point it at the new file.")
    return ResolvedPull(t, plan, choice, final, force)


def register(store: ModelStore, pull: ResolvedPull, paths: dict[str, Path]) -> ModelEntry | None:
    """Record a finished GGUF pull in the store (``paths``: file name -> its snapshot path); None for a
    safetensors pull, which vLLM serves from its folder."""
    if pull.choice is None or pull.name is None:
        return None
    projector = paths[pull.choice.projector] if pull.choice.projector else None
    return store.import_file(paths[pull.choice.first], pull.name, replace=pull.force, projector=projector)

"""Model files from the Hugging Face Hub into the Hugging Face cache, resumable and verified.

The listing (commit, file names, sizes, sha256 of LFS files) comes from the real ``huggingface_hub`` client, so
``HF_ENDPOINT``, tokens and the Hub's errors behave as everywhere else. The transfer is llmctl's own, because
``huggingface_hub`` names its partial files per process and so cannot resume after a kill: here the partial file
is ``blobs/<sha256>.incomplete`` in the standard cache layout, a rerun continues it with a ``Range`` request,
and nothing becomes a blob until its size and sha256 match the Hub's. Files land as
``models--org--name/blobs/<sha256>`` with ``snapshots/<commit>/<name>`` links, shared with every HF tool.
Progress is reported as typed events; the CLI draws them.
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import httpx

from llmctl.catalog.errors import LlmctlError

CHUNK = 1 << 20
PROGRESS_EVERY = 4 << 20  # bytes between progress events
DISK_MARGIN = 512 << 20  # keep this much free after a download


class DownloadError(LlmctlError):
    """A download could not be done or did not verify."""


@dataclass(frozen=True, slots=True)
class RemoteFile:
    name: str
    size: int
    sha256: str | None  # LFS files carry one; small git files do not


@dataclass(frozen=True, slots=True)
class PullPlan:
    repo: str
    revision: str
    commit: str
    files: tuple[RemoteFile, ...]

    @property
    def total(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True, slots=True)
class FileStarted:
    name: str
    size: int
    resumed_from: int


@dataclass(frozen=True, slots=True)
class FileProgressed:
    name: str
    done: int
    size: int


@dataclass(frozen=True, slots=True)
class FileFinished:
    name: str
    path: Path
    downloaded: int  # bytes fetched this time (0 when already in the cache)


Event = FileStarted | FileProgressed | FileFinished
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def safetensors_files(name: str) -> bool:
    """What vLLM needs from an AWQ/GPTQ/FP8 repo: configs, tokenizer, safetensors weights. Never pickles
    (RELIABILITY 4: llmctl does not fetch or load anything that unpickles)."""
    lowered = name.lower()
    if lowered.endswith(PICKLE_SUFFIXES) or lowered.endswith(".gguf"):
        return False
    return lowered.endswith((".safetensors", ".json", ".model", ".txt", ".tiktoken", ".jinja"))


def safe_name(name: str) -> str:
    """A repo file name that can become a path: relative, no '..', no drive, UNC or backslash forms."""
    if (not name or "\\" in name or name.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", name)
            or any(part in ("", ".", "..") for part in PurePosixPath(name).parts) or "\x00" in name):
        raise DownloadError(f"refusing the file name {name!r} from the Hub listing",
                            "it would escape the model cache; the repository (or a mirror) is not trustworthy.")
    return name


def repo_folder(cache: Path, repo: str) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", repo) or ".." in repo:
        raise DownloadError(f"{repo!r} is not a Hub repo id",
                            "write it as org/name, e.g. Qwen/Qwen2.5-7B-Instruct-GGUF")
    return cache / f"models--{repo.replace('/', '--')}"


class HubDownloader:
    def __init__(
        self,
        cache: Path,
        *,
        endpoint: str = "https://huggingface.co",
        token: str | None = None,
        offline: bool = False,
        disk_free: Callable[[Path], int] | None = None,
        http: httpx.Client | None = None,
        workers: int = 4,
    ) -> None:
        self.cache = cache
        self.endpoint = endpoint.rstrip("/")
        self.token = token
        self.offline = offline
        self._disk_free = disk_free or (lambda p: shutil.disk_usage(p).free)
        self._http = http or httpx.Client(timeout=httpx.Timeout(30.0, read=60.0))
        self.workers = workers
        self._stop = threading.Event()

    # listing -----------------------------------------------------------------------------------------------
    def plan(self, repo: str, select: Callable[[str], bool], revision: str = "main") -> PullPlan:
        folder = repo_folder(self.cache, repo)
        if self.offline:
            raise DownloadError(f"offline: cannot list {repo}",
                                "unset --offline / HF_HUB_OFFLINE to download, or `llmctl import` a local file.")
        from huggingface_hub import HfApi
        from huggingface_hub.errors import (
            GatedRepoError,
            HfHubHTTPError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        api = HfApi(endpoint=self.endpoint, token=self.token)
        try:
            commit = api.model_info(repo, revision=revision).sha or revision
            entries = list(api.list_repo_tree(repo, revision=commit, recursive=True))
        except OfflineModeIsEnabled:
            raise DownloadError(f"offline: cannot list {repo}",
                                "HF_HUB_OFFLINE is set; unset it to download.") from None
        except GatedRepoError:
            raise DownloadError(f"{repo} is gated", f"request access at {self.endpoint}/{repo}, then set HF_TOKEN "
                                "to a token of the account that has it.") from None
        except RepositoryNotFoundError:
            raise DownloadError(f"{repo} was not found on {self.endpoint}",
                                "check the name; a private repo needs HF_TOKEN.") from None
        except RevisionNotFoundError:
            raise DownloadError(f"{repo} has no revision {revision!r}", "check --revision.") from None
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            if status in (401, 403):
                raise DownloadError(f"{repo} needs access ({status})", f"request it at {self.endpoint}/{repo} and "
                                    "set HF_TOKEN.") from None
            raise DownloadError(f"the Hub refused to list {repo} ({status})", "try again later.") from None
        except httpx.HTTPError as exc:
            raise DownloadError(f"could not reach {self.endpoint}",
                                f"{exc}. Check the network or HF_ENDPOINT.") from None
        files = []
        for e in entries:
            if getattr(e, "size", None) is None:
                continue  # a folder
            name = safe_name(e.path)
            if select(name):
                lfs = getattr(e, "lfs", None)
                sha = (lfs.get("sha256") or lfs.get("oid")) if isinstance(lfs, dict) else getattr(lfs, "sha256", None)
                files.append(RemoteFile(name, int(e.size), sha))
        if not files:
            listing = ", ".join(e.path for e in entries)[:400]
            raise DownloadError(f"nothing in {repo} matches", f"files there: {listing}")
        folder.mkdir(parents=True, exist_ok=True)
        return PullPlan(repo, revision, commit, tuple(sorted(files, key=lambda f: f.name)))

    # transfer ----------------------------------------------------------------------------------------------
    def pull(self, plan: PullPlan) -> Iterator[Event]:
        folder = repo_folder(self.cache, plan.repo)
        need = sum(max(0, f.size - self._have(folder, f)) for f in plan.files)
        free = self._disk_free(folder)
        if need + DISK_MARGIN > free:
            raise DownloadError(f"not enough disk for {plan.repo}: {need / 2**30:.2f} GiB to fetch, "
                                f"{free / 2**30:.2f} GiB free at {folder}",
                                "free some space (or point HF_HOME elsewhere) and run pull again.")
        yield from self._fetch_all(folder, plan)
        refs = folder / "refs"
        refs.mkdir(exist_ok=True)
        (refs / safe_name(plan.revision)).write_text(plan.commit)

    def _fetch_all(self, folder: Path, plan: PullPlan) -> Iterator[Event]:
        """Files of a plan download concurrently (split GGUFs, safetensors shards); events interleave. Leaving
        early (an error, Ctrl-C) stops every transfer at its next chunk, keeping the partial files."""
        if len(plan.files) == 1:
            yield from self._fetch(folder, plan, plan.files[0])
            return
        events: queue.Queue = queue.Queue()
        errors: list[BaseException] = []
        done = object()

        def run(f: RemoteFile) -> None:
            try:
                for event in self._fetch(folder, plan, f):
                    events.put(event)
            except BaseException as exc:  # handed to the consumer below
                errors.append(exc)
                self._stop.set()
            finally:
                events.put(done)

        self._stop.clear()
        with ThreadPoolExecutor(max_workers=min(self.workers, len(plan.files))) as pool:
            try:
                for f in plan.files:
                    pool.submit(run, f)
                remaining = len(plan.files)
                while remaining:
                    event = events.get()
                    if event is done:
                        remaining -= 1
                    else:
                        yield event
            finally:
                self._stop.set()
        self._stop.clear()
        if errors:
            raise errors[0]

    def _blob(self, folder: Path, f: RemoteFile) -> Path:
        key = f.sha256 or hashlib.sha256(f"{f.name}:{f.size}".encode()).hexdigest()
        return folder / "blobs" / key

    def _have(self, folder: Path, f: RemoteFile) -> int:
        blob = self._blob(folder, f)
        if blob.exists():
            return blob.stat().st_size
        partial = blob.with_name(blob.name + ".incomplete")
        return partial.stat().st_size if partial.exists() else 0

    def _headers(self, url: str) -> dict[str, str]:
        """Credentials only for the configured Hub host, never for a redirect elsewhere (RELIABILITY 3)."""
        if self.token and urlsplit(url).netloc == urlsplit(self.endpoint).netloc:
            return {"Authorization": f"Bearer {self.token}"}
        return {}

    def _fetch(self, folder: Path, plan: PullPlan, f: RemoteFile) -> Iterator[Event]:
        blob = self._blob(folder, f)
        link = folder / "snapshots" / plan.commit / f.name
        if blob.exists() and blob.stat().st_size == f.size:
            self._link(link, blob)
            yield FileFinished(f.name, link, 0)
            return
        blob.parent.mkdir(parents=True, exist_ok=True)
        partial = blob.with_name(blob.name + ".incomplete")
        offset = partial.stat().st_size if partial.exists() else 0
        if offset > f.size:
            partial.unlink()
            offset = 0
        digest = hashlib.sha256()
        if offset:
            with partial.open("rb") as existing:
                while chunk := existing.read(CHUNK):
                    digest.update(chunk)
        yield FileStarted(f.name, f.size, offset)
        url = f"{self.endpoint}/{plan.repo}/resolve/{plan.commit}/{f.name}"
        fetched = 0
        try:
            for _hop in range(5):
                headers = {**self._headers(url), "Accept-Encoding": "identity"}
                if offset:
                    headers["Range"] = f"bytes={offset}-"
                with self._http.stream("GET", url, headers=headers) as r:
                    if r.status_code in (301, 302, 303, 307, 308):
                        url = str(httpx.URL(url).join(r.headers["Location"]))
                        continue
                    if r.status_code in (401, 403):
                        raise DownloadError(f"{plan.repo} needs access ({r.status_code})",
                                            f"request it at {self.endpoint}/{plan.repo} and set HF_TOKEN.")
                    if r.status_code >= 400:
                        raise DownloadError(f"the Hub answered {r.status_code} for {f.name}", "run pull again later.")
                    if offset and r.status_code != 206:  # the server ignored Range: start over
                        offset, digest = 0, hashlib.sha256()
                        partial.unlink(missing_ok=True)
                    reported = offset
                    with partial.open("ab", buffering=CHUNK) as out:
                        for chunk in r.iter_raw():  # as it arrives (identity encoding): a cut keeps what came
                            if self._stop.is_set():
                                raise DownloadError(f"{f.name} stopped at {offset} of {f.size} bytes",
                                                    "run pull again: it resumes where it stopped.")
                            out.write(chunk)
                            digest.update(chunk)
                            offset += len(chunk)
                            fetched += len(chunk)
                            if offset - reported >= PROGRESS_EVERY or offset == f.size:
                                reported = offset
                                yield FileProgressed(f.name, offset, f.size)
                break
        except httpx.HTTPError as exc:
            raise DownloadError(f"the download of {f.name} broke off at {offset} of {f.size} bytes",
                                f"{type(exc).__name__}. Run pull again: it resumes where it stopped.") from None
        if offset != f.size:
            raise DownloadError(f"{f.name} arrived incomplete ({offset} of {f.size} bytes)",
                                "run pull again: it resumes where it stopped.")
        if f.sha256 and digest.hexdigest() != f.sha256:
            partial.unlink(missing_ok=True)
            raise DownloadError(f"{f.name} does not match the Hub's sha256; the bad copy was deleted",
                                "run pull again; if it repeats, the mirror or the network corrupts data.")
        os.replace(partial, blob)
        self._link(link, blob)
        yield FileFinished(f.name, link, fetched)

    @staticmethod
    def _link(link: Path, blob: Path) -> None:
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))

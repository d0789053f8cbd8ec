"""Model files from the Hugging Face Hub into the Hugging Face cache, resumable and verified.

The listing (commit, file names, sizes, sha256 of LFS files) comes from the real ``huggingface_hub`` client, so
``HF_ENDPOINT``, tokens and the Hub's errors behave as everywhere else. The transfer is llmctl's own, because
``huggingface_hub`` names its partial files per process and so cannot resume after a kill: here the partial file
is ``blobs/<sha256>.incomplete`` in the standard cache layout, a rerun continues it with a ``Range`` request,
and nothing becomes a blob until its size and sha256 match the Hub's. Files land as
``models--org--name/blobs/<sha256>`` with ``snapshots/<commit>/<name>`` links, shared with every HF tool.
Progress is reported as typed events; the CLI draws them.

A mirror (``HF_ENDPOINT``) is not trusted: every commit sha, LFS sha256 and git blob id is checked for its form
before it becomes a path part, every path is checked to stay inside the repo's cache folder, a body is read only
up to its listed size, and every file (LFS or not) is verified before it becomes a blob. A file lock beside each
partial file keeps two pulls of one file from writing it together. Network failures become one ``DownloadError``
that says which host, which file and how far it got.
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import shutil
import threading
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import httpx
from filelock import FileLock, Timeout

from llmctl.catalog.errors import LlmctlError
from llmctl.catalog.network import OFFLINE_HINT, RETRY_STATUSES, host_of, reason, retry_after, route_problem
from llmctl.catalog.text import has_control, printable

CHUNK = 1 << 20
PROGRESS_EVERY = 4 << 20  # bytes between progress events
DISK_MARGIN = 512 << 20  # keep this much free after a download
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")  # a git commit or blob id (sha1)
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")  # an LFS object id


class DownloadError(LlmctlError):
    """A download could not be done or did not verify."""


@dataclass(frozen=True, slots=True)
class RemoteFile:
    name: str
    size: int
    sha256: str | None  # LFS files carry one; small git files do not
    blob_id: str | None = None  # the git blob id (sha1 of "blob {size}\0" + content); verifies non-LFS files

    @property
    def key(self) -> str:
        """The blob's name in the cache, as huggingface_hub names it: the sha256 (LFS) or the git blob id."""
        key = self.sha256 or self.blob_id
        if key is None:
            raise DownloadError(f"the listing gives no checksum for {self.name}",
                                "it cannot be verified; the repository (or a mirror) is not trustworthy.")
        return key


@dataclass(frozen=True, slots=True)
class PullPlan:
    repo: str
    revision: str
    commit: str
    files: tuple[RemoteFile, ...]

    @property
    def total(self) -> int:
        return sum(f.size for f in self.files)

    def only(self, names: Collection[str]) -> PullPlan:
        """The same listing narrowed to ``names`` (in the listing's order)."""
        return PullPlan(self.repo, self.revision, self.commit, tuple(f for f in self.files if f.name in names))


@dataclass(frozen=True, slots=True)
class FileStarted:
    name: str
    size: int
    resumed_from: int


@dataclass(frozen=True, slots=True)
class FileWaiting:
    """Another pull (another process) is fetching this file; this one waits for it, then uses its blob."""

    name: str


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


Event = FileStarted | FileWaiting | FileProgressed | FileFinished
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def safetensors_files(name: str) -> bool:
    """What vLLM needs from an AWQ/GPTQ/FP8 repo: configs, tokenizer, safetensors weights. Never pickles
    (loading a pickle runs whatever code it holds: llmctl fetches and loads nothing that unpickles)."""
    lowered = name.lower()
    if lowered.endswith(PICKLE_SUFFIXES) or lowered.endswith(".gguf"):
        return False
    return lowered.endswith((".safetensors", ".json", ".model", ".txt", ".tiktoken", ".jinja"))


def safe_name(name: str) -> str:
    """A repo file name that can become a path: relative, no '..', no drive, UNC or backslash forms, no control
    characters (an escape sequence would reach the terminal, and cannot be part of a URL)."""
    if has_control(name):
        raise DownloadError(f"refusing the file name {printable(name)!r} from the Hub listing",
                            "it holds control characters (a terminal escape sequence); the repository (or a mirror) "
                            "is not trustworthy.")
    if (not name or "\\" in name or name.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", name)
            or any(part in ("", ".", "..") for part in PurePosixPath(name).parts) or "\x00" in name):
        raise DownloadError(f"refusing the file name {name!r} from the Hub listing",
                            "it would escape the model cache; the repository (or a mirror) is not trustworthy.")
    return name


def _untrusted(what: str, value: object, endpoint: str) -> DownloadError:
    return DownloadError(f"refusing {what} {value!r} from {endpoint}",
                         "it is not a well-formed hash; the repository (or a mirror) is not trustworthy.")


def inside(folder: Path, path: Path) -> Path:
    """``path`` when it resolves inside ``folder``; a DownloadError otherwise."""
    if not path.resolve().is_relative_to(folder.resolve()):
        raise DownloadError(f"refusing to write {path}", f"it resolves outside the model cache folder {folder}.")
    return path


def git_blob_hasher(size: int):
    """A sha1 primed as git hashes a blob, so its hexdigest is the file's git blob id."""
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(b"blob %d\0" % size)
    return digest


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
        retries: int = 4,
        backoff: float = 1.0,
        max_wait: float = 60.0,
    ) -> None:
        self.cache = cache
        self.endpoint = endpoint.rstrip("/")
        self.host = host_of(self.endpoint)
        self.token = token
        self.offline = offline
        self._disk_free = disk_free or (lambda p: shutil.disk_usage(p).free)
        self._http = http or httpx.Client(timeout=httpx.Timeout(30.0, read=60.0))
        self.workers = workers
        self.retries = retries  # tries after the first, for 408/429/5xx answers
        self.backoff = backoff  # seconds before the first retry, doubling each time, unless Retry-After says
        self.max_wait = max_wait  # a Retry-After longer than this ends the pull (with the wait in the error)
        self._stop = threading.Event()  # one file of a plan failed: stop its siblings
        self._cancelled = threading.Event()  # the user asked to stop (another thread): every transfer stops

    def cancel(self) -> None:
        """Stop a pull running in another thread at its next chunk; partial files stay for a resume."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def _stopping(self) -> bool:
        return self._stop.is_set() or self._cancelled.is_set()

    def _retry_delay(self, attempt: int, headers) -> float:
        asked = retry_after(headers)
        return asked if asked is not None else min(self.backoff * 2**attempt, self.max_wait)

    # listing -----------------------------------------------------------------------------------------------
    def plan(self, repo: str, select: Callable[[str], bool], revision: str = "main") -> PullPlan:
        """The files of ``repo`` at ``revision`` that ``select`` wants; an error when none does."""
        listing = self.listing(repo, revision)
        plan = listing.only([f.name for f in listing.files if select(f.name)])
        if not plan.files:
            names = ", ".join(f.name for f in listing.files)[:400]
            raise DownloadError(f"nothing in {repo} matches", f"files there: {names}")
        return plan

    def listing(self, repo: str, revision: str = "main") -> PullPlan:
        """Every file of ``repo`` at ``revision``, with the commit it resolved to. Checks the network route once
        first, retries 408/429/5xx answers with backoff, and refuses any hash that is not one."""
        folder = repo_folder(self.cache, repo)
        if self.offline:
            raise DownloadError(f"offline: cannot list {repo}",
                                "unset --offline / HF_HUB_OFFLINE to download, or `llmctl import` a local file.")
        problem = route_problem(self.endpoint)
        if problem:
            raise DownloadError(f"{problem}: this machine looks offline, so {repo} cannot be listed", OFFLINE_HINT)
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
            for attempt in range(self.retries + 1):
                try:
                    info = api.model_info(repo, revision=revision)
                    break
                except (GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError):
                    raise
                except HfHubHTTPError as exc:
                    status = exc.response.status_code if exc.response is not None else 0
                    if status not in RETRY_STATUSES or attempt == self.retries:
                        raise
                    delay = self._retry_delay(attempt, exc.response.headers)
                    if delay > self.max_wait:
                        raise
                    time.sleep(delay)
            commit = info.sha if info.sha is not None else revision
            if not COMMIT_RE.fullmatch(str(commit)):
                raise _untrusted(f"the commit of {repo}", commit, self.endpoint)
            entries = list(api.list_repo_tree(repo, revision=commit, recursive=True))
        except OfflineModeIsEnabled:
            raise DownloadError(f"offline: cannot list {repo}",
                                "HF_HUB_OFFLINE is set; unset it to download.") from None
        except GatedRepoError:
            raise DownloadError(f"{repo} is gated", f"request access at {self.endpoint}/{repo}, then log in with "
                                "`hf auth login` (or set HF_TOKEN) as the account that has it.") from None
        except RepositoryNotFoundError:
            raise DownloadError(f"{repo} was not found on {self.endpoint}",
                                "check the name; a private repo needs `hf auth login` or HF_TOKEN.") from None
        except RevisionNotFoundError:
            raise DownloadError(f"{repo} has no revision {revision!r}", "check --revision.") from None
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            if status in (401, 403):
                raise DownloadError(f"{repo} needs access ({status})", f"request it at {self.endpoint}/{repo} and "
                                    "log in with `hf auth login` (or set HF_TOKEN).") from None
            tries = f" after {self.retries + 1} tries" if status in RETRY_STATUSES else ""
            raise DownloadError(f"{self.host} answered {status} when listing {repo}{tries}",
                                f"the Hub (or the mirror) is failing; run pull again later. {OFFLINE_HINT}") from None
        except Exception as exc:
            why = reason(exc)
            if why is None:
                raise
            raise DownloadError(f"could not list {repo} at {self.host}: {why}", OFFLINE_HINT) from None
        files = []
        for e in entries:
            if getattr(e, "size", None) is None:
                continue  # a folder
            name = safe_name(e.path)
            lfs = getattr(e, "lfs", None)
            sha = (lfs.get("sha256") or lfs.get("oid")) if isinstance(lfs, dict) else getattr(lfs, "sha256", None)
            blob_id = getattr(e, "blob_id", None)
            if sha is not None and not SHA256_RE.fullmatch(str(sha)):
                raise _untrusted(f"the sha256 of {name}", sha, self.endpoint)
            if sha is None and not (blob_id and COMMIT_RE.fullmatch(str(blob_id))):
                raise _untrusted(f"the git blob id of {name}", blob_id, self.endpoint)
            files.append(RemoteFile(name, int(e.size), sha, None if sha else blob_id))
        folder.mkdir(parents=True, exist_ok=True)
        return PullPlan(repo, revision, commit, tuple(sorted(files, key=lambda f: f.name)))

    # transfer ----------------------------------------------------------------------------------------------
    def pull(self, plan: PullPlan) -> Iterator[Event]:
        folder = repo_folder(self.cache, plan.repo)
        if not COMMIT_RE.fullmatch(plan.commit):
            raise _untrusted(f"the commit of {plan.repo}", plan.commit, self.endpoint)
        need = sum(max(0, f.size - self._have(folder, f)) for f in plan.files)
        free = self._disk_free(folder)
        if need + DISK_MARGIN > free:
            raise DownloadError(f"not enough disk for {plan.repo}: {need / 2**30:.2f} GiB to fetch, "
                                f"{free / 2**30:.2f} GiB free at {folder}",
                                "free some space (or point HF_HOME elsewhere) and run pull again.")
        yield from self._fetch_all(folder, plan)
        refs = folder / "refs"
        ref = inside(folder, refs / safe_name(plan.revision))
        ref.parent.mkdir(parents=True, exist_ok=True)
        tmp = ref.with_name(f".{ref.name}.{os.getpid()}.tmp")
        tmp.write_text(plan.commit)
        os.replace(tmp, ref)

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
        return inside(folder, folder / "blobs" / f.key)

    def _have(self, folder: Path, f: RemoteFile) -> int:
        blob = self._blob(folder, f)
        if blob.exists():
            return blob.stat().st_size
        partial = blob.with_name(blob.name + ".incomplete")
        return partial.stat().st_size if partial.exists() else 0

    def _headers(self, url: str) -> dict[str, str]:
        """Credentials only for the configured Hub host, never for a redirect elsewhere: a
        mirror that redirects must not collect the user's token."""
        there, hub = urlsplit(url), urlsplit(self.endpoint)
        if self.token and (there.scheme, there.netloc) == (hub.scheme, hub.netloc):  # no downgrade to http
            return {"Authorization": f"Bearer {self.token}"}
        return {}

    def _fetch(self, folder: Path, plan: PullPlan, f: RemoteFile) -> Iterator[Event]:
        blob = self._blob(folder, f)
        link = inside(folder, folder / "snapshots" / plan.commit / f.name)
        blob.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(blob) + ".lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            yield FileWaiting(f.name)
            while True:
                if self._stopping():
                    raise DownloadError(f"{f.name}: stopped while another pull was fetching it",
                                        "run pull again once the other one is done.") from None
                try:
                    lock.acquire(timeout=0.5)
                    break
                except Timeout:
                    continue
        try:
            yield from self._fetch_locked(folder, plan, f, blob, link)
        finally:
            lock.release()

    def _fetch_locked(self, folder: Path, plan: PullPlan, f: RemoteFile, blob: Path, link: Path) -> Iterator[Event]:
        if blob.exists() and blob.stat().st_size == f.size:
            self._link(link, blob)
            yield FileFinished(f.name, link, 0)
            return
        partial = blob.with_name(blob.name + ".incomplete")
        offset = partial.stat().st_size if partial.exists() else 0
        if offset > f.size:
            partial.unlink()
            offset = 0
        digest = self._hasher(f)
        if offset:
            with partial.open("rb") as existing:
                while chunk := existing.read(CHUNK):
                    digest.update(chunk)
        yield FileStarted(f.name, f.size, offset)
        url = f"{self.endpoint}/{plan.repo}/resolve/{plan.commit}/{f.name}"
        fetched = 0
        attempt = 0
        try:
            hops = 0
            while True:
                headers = {**self._headers(url), "Accept-Encoding": "identity"}
                if offset:
                    headers["Range"] = f"bytes={offset}-"
                with self._http.stream("GET", url, headers=headers) as r:
                    if r.status_code in (301, 302, 303, 307, 308) and hops < 5:
                        url, hops = str(httpx.URL(url).join(r.headers["Location"])), hops + 1
                        continue
                    if r.status_code in RETRY_STATUSES:
                        delay = self._retry_delay(attempt, r.headers)
                        if attempt >= self.retries or delay > self.max_wait:
                            wait = f"; it asks to wait {delay:.0f} s" if delay > self.max_wait else ""
                            raise DownloadError(
                                f"{host_of(url)} answered {r.status_code} for {f.name} {attempt + 1} time(s){wait}, "
                                f"at {_progress(offset, f.size)}",
                                f"the partial file is kept; run the same pull later to resume it. {OFFLINE_HINT}")
                        attempt += 1
                        time.sleep(delay)
                        url, hops = f"{self.endpoint}/{plan.repo}/resolve/{plan.commit}/{f.name}", 0
                        continue
                    if r.status_code in (401, 403):
                        raise DownloadError(f"{plan.repo} needs access ({r.status_code})",
                                            f"request it at {self.endpoint}/{plan.repo} and log in with "
                                            "`hf auth login` (or set HF_TOKEN).")
                    if r.status_code >= 300:
                        raise DownloadError(f"{host_of(url)} answered {r.status_code} for {f.name}",
                                            "run pull again later.")
                    if offset and r.status_code != 206:  # the server ignored Range: start over
                        offset, digest = 0, self._hasher(f)
                        partial.unlink(missing_ok=True)
                    reported = offset
                    with partial.open("ab", buffering=CHUNK) as out:
                        for chunk in r.iter_raw():  # as it arrives (identity encoding): a cut keeps what came
                            if self._stopping():
                                raise DownloadError(f"{f.name} stopped at {_progress(offset, f.size)}",
                                                    "run pull again: it resumes where it stopped.")
                            room = f.size - offset
                            if len(chunk) > room:  # a body longer than listed never reaches the disk
                                raise _Oversize
                            out.write(chunk)
                            digest.update(chunk)
                            offset += len(chunk)
                            fetched += len(chunk)
                            if offset - reported >= PROGRESS_EVERY or offset == f.size:
                                reported = offset
                                yield FileProgressed(f.name, offset, f.size)
                break
        except _Oversize:
            partial.unlink(missing_ok=True)
            raise DownloadError(f"{host_of(url)} sent more than the listed {f.size} bytes of {f.name}; "
                                "llmctl stopped reading and deleted the partial file",
                                "the mirror (or a proxy) is not trustworthy; check HF_ENDPOINT.") from None
        except DownloadError:
            raise
        except Exception as exc:
            why = reason(exc)
            if why is None:
                raise
            raise DownloadError(f"the download of {f.name} from {host_of(url)} stopped at "
                                f"{_progress(offset, f.size)}: {why}",
                                "the partial file is kept and the same pull resumes it when run again; "
                                f"{OFFLINE_HINT}") from None
        if offset != f.size:
            raise DownloadError(f"{f.name} from {host_of(url)} arrived incomplete ({_progress(offset, f.size)})",
                                "the partial file is kept; run pull again: it resumes where it stopped.")
        expected = f.sha256 or f.blob_id
        if digest.hexdigest() != expected:
            partial.unlink(missing_ok=True)
            kind = "sha256" if f.sha256 else "git blob id"
            raise DownloadError(f"{f.name} does not match the Hub's {kind}; the bad copy was deleted",
                                "run pull again; if it repeats, the mirror or the network corrupts data.")
        os.replace(partial, blob)
        self._link(link, blob)
        yield FileFinished(f.name, link, fetched)

    @staticmethod
    def _hasher(f: RemoteFile):
        return hashlib.sha256() if f.sha256 else git_blob_hasher(f.size)

    @staticmethod
    def _link(link: Path, blob: Path) -> None:
        """Point ``link`` at ``blob`` atomically (a concurrent pull may be linking it too)."""
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(f".{link.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.path.relpath(blob, link.parent))
        os.replace(tmp, link)


class _Oversize(Exception):
    """A body went past its listed size."""


def _progress(done: int, size: int) -> str:
    pct = f" ({100 * done / size:.0f}%)" if size else ""
    return f"{done / 2**20:.1f} of {size / 2**20:.1f} MiB{pct}"

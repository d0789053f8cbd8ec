"""A local server that speaks the Hugging Face Hub's file protocol, for tests (no test may reach the Hub).

What the real `huggingface_hub` client and llmctl's downloader use:
- ``GET /api/models/{repo}/revision/{rev}``: model info with ``sha`` (the commit) and ``siblings``;
- ``GET /api/models/{repo}/tree/{rev}?recursive=...``: files with ``size``, ``oid`` (the git blob id) and, for
  LFS files, ``lfs: {oid: sha256, size}``;
- ``HEAD|GET /{repo}/resolve/{rev}/{file}``: ``X-Repo-Commit``, ``ETag``/``X-Linked-Etag`` (the sha256 of LFS
  files), ``X-Linked-Size``; LFS files redirect (302) to ``/lfs/{sha256}``, which honours ``Range``; small git
  files are served right there (also with ``Range``).

Any other path (where a client expects, say, llmctl's controller) answers 404 in the OpenAI error shape, and
obeys the same ``status`` and ``cut_after`` switches, so clients of other services can be failed the same way.

Switches on ``HubServer`` make it misbehave: cut a body after N bytes, corrupt a byte, answer a status (a number of
times, with ``Retry-After``), stall (before a body, or one repo's listing), and lie as a hostile mirror would: a
malformed commit or LFS sha, a body longer than listed.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubServer:
    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)
    cut_after: int | None = None  # close the connection after sending this many body bytes
    corrupt: bool = False  # flip one byte in file bodies
    status: int | None = None  # answer file requests (resolve, lfs) with this status
    api_status: int | None = None  # answer the listing API (model info) with this status
    status_times: int | None = None  # ...only this many times, then serve normally (None: always)
    retry_after: str | None = None  # the Retry-After header sent with a switched status
    controller_secret: str | None = None  # set by as_controller: it answers the controller's hello
    commit: str = COMMIT  # the commit the info route names (a hostile mirror lies here)
    lie_sha256: str | None = None  # list this as every LFS file's sha256
    oversize: int = 0  # append this many junk bytes to every body (Content-Length included)
    stall: float = 0.0  # seconds to wait before each body
    chunk_delay: float = 0.0  # seconds between 64 KiB chunks (a slow link)
    api_delay: dict[str, float] = field(default_factory=dict)  # repo -> seconds its model info takes (a slow Hub)
    gated: set[str] = field(default_factory=set)  # repos that need a token
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Range)
    times: list[float] = field(default_factory=list)  # time.monotonic() of each request, in order
    auth: list[str | None] = field(default_factory=list)  # the Authorization header of each file request
    port: int = 0

    def add_file(self, repo: str, name: str, data: bytes) -> None:
        self.repos.setdefault(repo, {})[name] = data

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def bytes_served(self) -> int:
        return self._served

    # lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> HubServer:
        self._served = 0
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            app = web.Application()
            app.add_routes([
                web.get("/api/models", self._search),
                web.get("/api/models/{org}/{name}/revision/{rev}", self._info),
                web.get("/api/models/{org}/{name}/tree/{rev}", self._tree),
                web.route("*", "/{org}/{name}/resolve/{rev}/{file:.+}", self._resolve),
                web.get("/lfs/{sha}", self._lfs),
                web.route("*", "/{tail:.*}", self._other),
            ])
            self._runner = web.AppRunner(app)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    # handlers ----------------------------------------------------------------------------------------------
    def _files(self, request: web.Request) -> dict[str, bytes]:
        repo = f"{request.match_info['org']}/{request.match_info['name']}"
        if repo not in self.repos:
            raise web.HTTPNotFound(headers={"X-Error-Code": "RepoNotFound"}, text=f"Repository {repo} not found")
        if repo in self.gated and "Authorization" not in request.headers:
            raise web.HTTPUnauthorized(headers={"X-Error-Code": "GatedRepo"},
                                       text=f"Access to model {repo} is restricted")
        return self.repos[repo]

    def _log(self, request: web.Request) -> None:
        self.requests.append((request.method, request.path, request.headers.get("Range")))
        self.times.append(time.monotonic())

    def _switched(self, status: int | None) -> web.Response | None:
        if not status or self.status_times == 0:
            return None
        if self.status_times is not None:
            self.status_times -= 1
        headers = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
        return web.Response(status=status, text="switched", headers=headers)

    async def _info(self, request: web.Request) -> web.Response:
        self._log(request)
        delay = self.api_delay.get(f"{request.match_info['org']}/{request.match_info['name']}")
        if delay:
            await asyncio.sleep(delay)
        if (switched := self._switched(self.api_status)) is not None:
            return switched
        files = self._files(request)
        repo = f"{request.match_info['org']}/{request.match_info['name']}"
        return web.json_response({"id": repo, "modelId": repo, "sha": self.commit, "private": False,
                                  "siblings": [{"rfilename": n} for n in files]})

    async def _search(self, request: web.Request) -> web.Response:
        """The model search (``HfApi.list_models``): repos whose name holds ``search``, with a file of the ``filter``
        tag's kind (gguf, safetensors), most files first as a stand-in for downloads."""
        self._log(request)
        if (switched := self._switched(self.api_status)) is not None:
            return switched
        query = request.query.get("search", "").lower()
        tags = request.query.getall("filter", [])
        found = []
        for repo, files in self.repos.items():
            kinds = {"gguf"} if any(n.endswith(".gguf") for n in files) else set()
            kinds |= {"safetensors"} if any(n.endswith(".safetensors") for n in files) else set()
            if query in repo.lower() and all(t in kinds for t in tags):
                found.append({"id": repo, "modelId": repo, "downloads": len(files), "tags": sorted(kinds)})
        found.sort(key=lambda m: -m["downloads"])
        return web.json_response(found[:int(request.query.get("limit", 1000))])

    async def _tree(self, request: web.Request) -> web.Response:
        files = self._files(request)
        out = []
        for name, data in files.items():
            entry = {"type": "file", "path": name, "size": len(data), "oid": git_blob_id(data)}
            if is_lfs(name):
                sha = self.lie_sha256 or hashlib.sha256(data).hexdigest()
                pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n".encode()
                entry["oid"] = git_blob_id(pointer)
                entry["lfs"] = {"oid": sha, "size": len(data), "pointerSize": len(pointer)}
            out.append(entry)
        return web.json_response(out)

    async def _resolve(self, request: web.Request) -> web.StreamResponse:
        self._log(request)
        self.auth.append(request.headers.get("Authorization"))
        if (switched := self._switched(self.status)) is not None:
            return switched
        files = self._files(request)
        name = request.match_info["file"]
        if name not in files:
            raise web.HTTPNotFound(headers={"X-Error-Code": "EntryNotFound"}, text=f"{name} not found")
        data = files[name]
        sha = hashlib.sha256(data).hexdigest()
        if not is_lfs(name):
            return await self._send(request, data, {"X-Repo-Commit": self.commit, "ETag": f'"{git_blob_id(data)}"'})
        headers = {"X-Repo-Commit": self.commit, "ETag": f'"{git_blob_id(data)}"',
                   "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data)),
                   "Location": f"/lfs/{sha}"}
        return web.Response(status=302, headers=headers)

    async def _lfs(self, request: web.Request) -> web.StreamResponse:
        self._log(request)
        if (switched := self._switched(self.status)) is not None:
            return switched
        sha = request.match_info["sha"]
        data = next((d for files in self.repos.values() for d in files.values()
                     if hashlib.sha256(d).hexdigest() == sha), None)
        if data is None:
            raise web.HTTPNotFound()
        return await self._send(request, data, {"ETag": f'"{sha}"'})

    def as_controller(self, paths) -> HubServer:
        """Also stand in for the controller of ``paths``' state folder (its hello proof is never switched), so the
        CLI's requests after the handshake meet the switches."""
        from stand_in import claim

        self.controller_secret = claim(paths, self.port)
        return self

    async def _other(self, request: web.Request) -> web.StreamResponse:
        if self.controller_secret is not None and request.path == "/llmctl/v1/hello":
            from stand_in import hello_answer

            return web.json_response(hello_answer(self.controller_secret, request.headers))
        if request.path.startswith("/api/"):  # huggingface_hub's side requests (e.g. /api/agent-harnesses)
            return web.json_response({"error": "not here"}, status=404)
        self._log(request)
        if (switched := self._switched(self.status)) is not None:
            return switched
        if self.cut_after is not None:
            return await self._send(request, b'{"backends": [' + b" " * (1 << 20) + b"]}",
                                    {"Content-Type": "application/json"})
        return web.json_response({"error": {"message": f"{request.path} is not here", "type": "not_found",
                                            "code": 404}}, status=404)

    async def _send(self, request: web.Request, data: bytes, extra: dict[str, str]) -> web.StreamResponse:
        start = 0
        rng = request.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
        body = data[start:]
        if self.corrupt and body:
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        if self.oversize:
            body += bytes(self.oversize)
        status = 206 if start else 200
        headers = {**extra, "Content-Length": str(len(body)), "Accept-Ranges": "bytes"}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(request)
        if self.stall:
            await asyncio.sleep(self.stall)
        sent = 0
        for i in range(0, len(body), 65536):
            chunk = body[i : i + 65536]
            if self.cut_after is not None and sent + len(chunk) > self.cut_after:
                chunk = chunk[: self.cut_after - sent]
                await response.write(chunk)
                self._served += len(chunk)
                request.transport.close()  # mid-body: the client sees a truncated response
                return response
            await response.write(chunk)
            sent += len(chunk)
            self._served += len(chunk)
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
        await response.write_eof()
        return response


def git_blob_id(data: bytes) -> str:
    """What git (and the Hub's listings, as ``oid``) name a file by."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def is_lfs(name: str) -> bool:
    return name.endswith((".gguf", ".safetensors", ".bin"))


def write_payload(path: Path, size: int, seed: int = 0) -> bytes:
    import random

    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data

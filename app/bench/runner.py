"""Runs a benchmark against an OpenAI-compatible endpoint: streamed chat completions under a load shape
(GuideLLM's names: synchronous, concurrent, constant, poisson), measured on the client's clock.

Prompt length. Every request gets its own prompt of random common English words (so no engine's prompt cache can
reuse one request's prompt for the next). Its length is calibrated through the endpoint itself: two probe requests
(``max_tokens: 1``) of different word counts give the server's own ``usage.prompt_tokens`` for each, hence tokens per
word and the chat template's fixed overhead; a third probe checks the fitted word count. ``--prompt-tokens N``
therefore means N tokens *as the engine counts them, chat template included*. llama.cpp's ``/tokenize`` would be
exact, but it sits behind the engine's private key, which llmctl does not hand out; a server that reports no usage
gets the documented approximation: 4 tokens per 3 words (OpenAI's rule of thumb), template not counted.

Output length. Requests ask for ``max_tokens`` with ``ignore_eos: true`` (llama.cpp and vLLM honour it), so every
request generates the same number of tokens; a server that refuses the field (HTTP 400 on the probe) is
benchmarked without it, and the run says so. Token counts are the server's (``stream_options.include_usage``);
a stream without usage is counted by its text-carrying deltas (``content`` or ``reasoning_content``).

Progress is reported through an ``on_event`` callback with the typed events below; nothing here prints.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from llmctl.app.bench.events import BenchEvent, Calibrated, LevelFinished, LevelStarted, Note, RequestFinished
from llmctl.app.bench.results import (
    BenchError,
    RequestSample,
    level_label,
    llama_bench_entry,
    summarize,
)

_WORD_TEXT = (
    "time year people way day man thing woman life child world school state family student group country problem "
    "hand part place case week company system program question work government number night point home water "
    "room mother area money story fact month lot right study book eye job word business issue side kind head "
    "house service friend father power hour game line end member law car city community name president team "
    "minute idea kid body information back parent face others level office door health person art war history "
    "party result change morning reason research girl guy moment air teacher force education foot boy age policy "
    "music market sense nation plan college interest death experience effect class control care field "
    "development role effort rate heart drug show leader light voice wife police mind price report decision son "
    "view relationship town road arm difference value building action model season society tax director position "
    "player record paper space ground form event official matter center couple site project activity star table "
    "need court oil situation cost industry figure street image phone data picture practice piece land product "
    "doctor wall patient worker news test movie north love support technology step baby computer type attention "
    "film tree source organization hair window evidence population truth song river garden stone bridge cloud "
    "summer winter"
)
WORDS = tuple(_WORD_TEXT.split())
TOKENS_PER_WORD_GUESS = 4 / 3  # OpenAI's rule of thumb (1 token ~ 0.75 English words)


# events ------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Target:
    base_url: str  # the OpenAI base, ending in /v1
    model: str
    api_key: str | None = None


@dataclass(slots=True)
class LoadSpec:
    profile: str = "concurrent"
    concurrency: list[int] = field(default_factory=lambda: [1, 4, 8])
    rates: list[float] = field(default_factory=list)
    requests: int | None = None  # per level; default 4 x concurrency (at least 8), or 10 s worth of the rate
    prompt_tokens: int = 128
    max_tokens: int = 64
    slos: dict[str, float] = field(default_factory=dict)
    ignore_eos: bool = True
    seed: int = 0
    request_timeout: float = 600.0


def openai_base(url: str) -> str:
    """``http://h:p``, ``http://h:p/`` or ``http://h:p/v1`` -> ``http://h:p/v1``."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


def _sse_events(line: str) -> dict | None:
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if not data or data == "[DONE]":
        return None
    try:
        event = json.loads(data)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


TEXT_FIELDS = ("content", "reasoning_content", "reasoning")


def is_token_chunk(choice: dict) -> bool:
    """Does this streamed choice stand for a generated token (a TTFT / ITL event)?

    A text field counts even when it is empty: vLLM sends one chunk per token and leaves ``content`` "" when the
    token ends inside a UTF-8 character (its detokenizer holds the bytes back), and ``vllm bench serve`` times those
    chunks too. Skipping them made ITL the gap between printable pieces (2-3x vLLM's on byte-level tokens), made
    TTFT wait for the first printable token, and failed a stream whose every token was partial. Not tokens: the
    role preamble (``role`` with no text, which vLLM and llama.cpp send first and Ollama with its finish) and a
    ``finish_reason``-only chunk (``delta: {}``, llama.cpp's last).
    """
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        return False
    texts = [v for k in TEXT_FIELDS if isinstance(v := delta.get(k), str)]
    if not texts:
        return False
    return any(texts) or "role" not in delta


def _error_text(response: httpx.Response) -> str:
    try:
        err = response.json().get("error")
        message = err.get("message") if isinstance(err, dict) else err
    except (ValueError, AttributeError):
        message = response.text
    return f"HTTP {response.status_code}: {str(message or response.reason_phrase).strip()[:160]}"


class Runner:
    """One endpoint, one model. Use as ``async with Runner(target, spec) as r: ...``."""

    def __init__(self, target: Target, spec: LoadSpec, on_event: Callable[[BenchEvent], None] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.target, self.spec = target, spec
        self.on_event = on_event or (lambda _e: None)
        headers = {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}
        limit = max([*spec.concurrency, 64])
        self.http = httpx.AsyncClient(
            base_url=target.base_url, headers=headers, transport=transport,
            timeout=httpx.Timeout(30.0, read=spec.request_timeout),
            limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit))
        self.words_for: Callable[[int], int] = lambda n: max(1, round(n / TOKENS_PER_WORD_GUESS))
        self.calibration = "not calibrated"

    async def __aenter__(self) -> Runner:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    # prompts -----------------------------------------------------------------------------------------------
    def prompt(self, words: int, rng: random.Random) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(max(1, words)))

    def body(self, prompt: str, max_tokens: int, stream: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.target.model, "messages": [{"role": "user", "content": prompt}],
                            "max_tokens": max_tokens, "temperature": 0, "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        if self.spec.ignore_eos:
            body["ignore_eos"] = True
        return body

    async def probe(self, prompt: str, deadline: float) -> dict:
        """One short non-streamed request; waits out 503s while a model loads; drops ``ignore_eos`` if refused."""
        while True:
            try:
                r = await self.http.post("/chat/completions", json=self.body(prompt, 1, stream=False))
            except httpx.ConnectError:
                raise BenchError(f"nothing answers at {self.target.base_url}",
                             "start the endpoint (`llmctl serve`) or check --url") from None
            if r.status_code == 503 and time.monotonic() < deadline:
                await asyncio.sleep(min(float(r.headers.get("Retry-After", "2") or 2), 10.0))
                continue
            if r.status_code == 400 and self.spec.ignore_eos:
                self.spec.ignore_eos = False
                self.on_event(Note(f"the server refused ignore_eos ({_error_text(r)}); "
                               "requests may stop before max_tokens"))
                continue
            if r.status_code >= 400:
                raise BenchError(f"the probe request to {self.target.model} failed", _error_text(r))
            try:
                return r.json()
            except ValueError:
                raise BenchError("the probe request did not answer JSON", r.text[:200]) from None

    async def calibrate(self, load_wait: float = 600.0) -> None:
        """Fit words -> prompt tokens on the server's own counts (see the module docstring)."""
        deadline = time.monotonic() + load_wait
        rng = random.Random(self.spec.seed ^ 0x5EED)
        w1, w2 = 8, 72
        u1 = (await self.probe(self.prompt(w1, rng), deadline)).get("usage") or {}
        u2 = (await self.probe(self.prompt(w2, rng), deadline)).get("usage") or {}
        p1, p2 = u1.get("prompt_tokens"), u2.get("prompt_tokens")
        if not isinstance(p1, int) or not isinstance(p2, int) or p2 <= p1:
            self.calibration = ("approximation: the server reports no usage.prompt_tokens; "
                                f"{TOKENS_PER_WORD_GUESS:.2f} tokens per word, chat template not counted")
            self.on_event(Calibrated("approximation", self.calibration))
            return
        slope = (p2 - p1) / (w2 - w1)
        overhead = p1 - slope * w1

        def words_for(n: int) -> int:
            return max(1, round((n - overhead) / slope))

        target = self.spec.prompt_tokens
        w3 = words_for(target)
        p3 = ((await self.probe(self.prompt(w3, rng), deadline)).get("usage") or {}).get("prompt_tokens")
        if isinstance(p3, int):  # anchor the line on the check: it is nearest the length asked for
            overhead = p3 - slope * w3
        self.words_for = words_for
        self.calibration = (f"probe: {slope:.2f} tokens per word + {overhead:.0f} tokens of chat template "
                            f"(the server's usage.prompt_tokens); a {w3}-word check prompt counted {p3}")
        self.on_event(Calibrated("probe", self.calibration))

    # one request -------------------------------------------------------------------------------------------
    async def stream_one(self, prompt: str, max_tokens: int) -> RequestSample:
        s = RequestSample(ok=False, tokens_from="deltas")
        deltas = 0
        t0 = time.perf_counter()
        last = t0
        try:
            async with self.http.stream("POST", "/chat/completions", json=self.body(prompt, max_tokens)) as r:
                if r.status_code >= 400:
                    await r.aread()
                    s.error = _error_text(r)
                    return s
                async for line in r.aiter_lines():
                    event = _sse_events(line)
                    if event is None:
                        continue
                    now = time.perf_counter()
                    if "error" in event:
                        err = event["error"]
                        s.error = "stream error: " + str(err.get("message") if isinstance(err, dict) else err)[:160]
                        return s
                    usage = event.get("usage")
                    if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
                        s.output_tokens = int(usage["completion_tokens"])
                        s.prompt_tokens = int(usage.get("prompt_tokens") or 0)
                        details = usage.get("prompt_tokens_details") or {}
                        s.cached_tokens = int(details.get("cached_tokens") or 0)
                        s.tokens_from = "usage"
                    for choice in event.get("choices") or []:
                        if is_token_chunk(choice):
                            if s.ttft is None:
                                s.ttft = now - t0
                            else:
                                s.itl.append(now - last)
                            last = now
                            deltas += 1
        except httpx.TimeoutException:
            s.error = "timed out"
            return s
        except httpx.HTTPError as exc:
            s.error = f"{type(exc).__name__}: {str(exc)[:120]}".rstrip(": ")
            return s
        s.e2el = time.perf_counter() - t0
        if s.ttft is None:
            s.error = "the stream ended without a token"
            return s
        if s.tokens_from == "deltas":
            s.output_tokens = deltas
        s.ok = True
        return s

    # load shapes -------------------------------------------------------------------------------------------
    def _requests_for(self, concurrency: int | None, rate: float | None) -> int:
        if self.spec.requests:
            return self.spec.requests
        if rate:
            return max(8, math.ceil(rate * 10))
        return max(8, 4 * (concurrency or 1))

    async def run_level(self, index: int, profile: str, concurrency: int | None = None,
                        rate: float | None = None) -> dict:
        n = self._requests_for(concurrency, rate)
        label = level_label({"profile": profile, "max_concurrency": concurrency, "request_rate": rate})
        rng = random.Random(self.spec.seed * 1000 + index)
        words = self.words_for(self.spec.prompt_tokens)
        prompts = [self.prompt(words, rng) for _ in range(n)]
        samples: list[RequestSample] = []
        self.on_event(LevelStarted(label, n))

        async def one(prompt: str) -> None:
            sample = await self.stream_one(prompt, self.spec.max_tokens)
            samples.append(sample)
            self.on_event(RequestFinished(label, len(samples), n, sample.ok))

        t0 = time.perf_counter()
        if profile in ("synchronous", "concurrent"):
            queue = list(reversed(prompts))

            async def worker() -> None:
                while queue:
                    await one(queue.pop())

            width = 1 if profile == "synchronous" else max(1, concurrency or 1)
            await asyncio.gather(*(worker() for _ in range(min(width, n))))
        else:
            assert rate and rate > 0
            arrivals, at = [], 0.0
            for _ in range(n):
                arrivals.append(at)
                at += rng.expovariate(rate) if profile == "poisson" else 1.0 / rate
            tasks = []
            for prompt, when in zip(prompts, arrivals, strict=True):
                delay = t0 + when - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.ensure_future(one(prompt)))
            await asyncio.gather(*tasks)
        duration = time.perf_counter() - t0
        result = {"profile": profile, "max_concurrency": concurrency if profile != "synchronous" else 1,
              "request_rate": rate, "num_prompts": n, **summarize(samples, duration, self.spec.slos or None)}
        self.on_event(LevelFinished(label, result))
        return result

    async def run(self) -> list[dict]:
        spec = self.spec
        if spec.profile == "synchronous":
            return [await self.run_level(0, "synchronous")]
        if spec.profile == "concurrent":
            return [await self.run_level(i, "concurrent", concurrency=c) for i, c in enumerate(spec.concurrency)]
        if spec.profile in ("constant", "poisson"):
            if not spec.rates:
                raise BenchError(f"--profile {spec.profile} needs --rate", "e.g. --rate 0.5,1,2 (requests/s)")
            return [await self.run_level(i, spec.profile, rate=r) for i, r in enumerate(spec.rates)]
        raise BenchError(f"unknown load shape {spec.profile!r}")

    async def llama_bench(self, n_prompt: int, n_gen: int, repetitions: int) -> list[dict]:
        """llama-bench's pp/tg view, through the endpoint: ppN = prompt tokens processed (minus any the server
        reports as cached) / TTFT of an N-token prompt with max_tokens 1; tgN = (N - 1) / (E2EL - TTFT) of an
        N-token generation from a short prompt."""
        rng = random.Random(self.spec.seed + 512)
        words = self.words_for(n_prompt)
        pp, tg = [], []
        label = f"pp{n_prompt}"
        self.on_event(LevelStarted(label, repetitions))
        for i in range(repetitions):
            s = await self.stream_one(self.prompt(words, rng), 1)
            if not s.ok or not s.ttft:
                raise BenchError(f"a {label} request failed", s.error or "")
            pp.append(((s.prompt_tokens - s.cached_tokens) or n_prompt) / s.ttft)
            self.on_event(RequestFinished(label, i + 1, repetitions, True))
        label = f"tg{n_gen}"
        self.on_event(LevelStarted(label, repetitions))
        for i in range(repetitions):
            s = await self.stream_one(self.prompt(8, rng), n_gen)
            rate = s.stream_rate
            if not s.ok or rate is None:
                raise BenchError(f"a {label} request failed", s.error or "it produced fewer than 2 tokens")
            tg.append(rate)
            self.on_event(RequestFinished(label, i + 1, repetitions, True))
        return [llama_bench_entry(f"pp{n_prompt}", n_prompt, 0, pp), llama_bench_entry(f"tg{n_gen}", 0, n_gen, tg)]


async def stream_run(target: Target, spec: LoadSpec, done: dict[str, Any],
                     transport: httpx.AsyncBaseTransport | None = None) -> AsyncIterator[BenchEvent]:
    """Calibrate, then run every level of ``spec`` against ``target``, yielding the progress events as they happen;
    ``done`` receives the ``levels`` and the ``calibration``. Closing the iterator (a cancelled TUI worker) stops the
    requests in flight; an error of the run is raised after the events that preceded it."""
    queue: asyncio.Queue[BenchEvent | None] = asyncio.Queue()

    async def drive() -> None:
        try:
            async with Runner(target, spec, on_event=queue.put_nowait, transport=transport) as runner:
                await runner.calibrate()
                done["levels"] = await runner.run()
                done["calibration"] = runner.calibration
        finally:
            queue.put_nowait(None)

    task = asyncio.ensure_future(drive())
    try:
        while (event := await queue.get()) is not None:
            yield event
        await task  # raises what the run raised
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def first_model(http: httpx.AsyncClient) -> tuple[str, dict]:
    """The model to benchmark when none is named: through llmctl, a loaded one first; else the first listed."""
    r = await http.get("/models")
    if r.status_code >= 400:
        raise BenchError("could not list the endpoint's models", _error_text(r))
    data = [m for m in (r.json().get("data") or []) if isinstance(m, dict) and m.get("id")]
    if not data:
        raise BenchError("the endpoint lists no models", "name one: llmctl bench MODEL")
    loaded = [m for m in data if (m.get("llmctl") or {}).get("state") in ("ready", "loaded")]
    m = (loaded or data)[0]
    return str(m["id"]), m


async def describe_model(http: httpx.AsyncClient, model: str) -> dict:
    """The ``/v1/models`` entry of ``model`` (llmctl adds quant, format, state under ``llmctl``), or {}."""
    try:
        r = await http.get("/models")
        for m in r.json().get("data") or []:
            if isinstance(m, dict) and m.get("id") == model:
                return m
    except (httpx.HTTPError, ValueError, AttributeError):
        pass
    return {}

"""Who may call, how often, and how many wait: named API keys with per-minute limits, and per-model queues.

- ``Bucket``: a token bucket holding up to ``limit``, refilled continuously at ``limit`` per minute. Requests are
  taken one each on admission. Tokens are not known until the answer is done, so a request is admitted while the
  tokens bucket is not empty and its usage is charged afterwards; the bucket may go into debt, and requests get
  429 until it has refilled (what LiteLLM does; OpenAI estimates up front instead).
- ``Keys``: the configured keys; ``identify`` compares a presented key with every secret in constant time (never
  stopping at the first match). ``admit``/``charge`` apply a key's limits and keep its usage. Headers follow
  OpenAI's: ``x-ratelimit-limit-requests``, ``-remaining-requests``, ``-reset-requests`` (time until the bucket is
  full again, as ``1s``, ``6m0s``) and the ``-tokens`` trio.
- ``ModelQueue``: how many requests are inside the gateway for one model (a counter: the path of a ready model
  takes no lock). Those beyond the model's capacity (its slots when ready, none while it loads, at most
  ``max_concurrent``) are waiting; one more than ``max_queue`` waiting is refused. With ``max_concurrent`` a
  semaphore holds the extra requests back from the backend.

Time is injected (``clock``) so the unit tests drive it.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from llmctl.app.controller.errors import ApiError

PERIOD = 60.0  # both limits are per minute
OWNER = "(llmctl)"  # the owner key's name in metrics and /llmctl/v1/keys: no configured name can take it


def duration(seconds: float) -> str:
    """OpenAI's form of a reset time: ``20ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{round(rest):d}s"


@dataclass(slots=True)
class Bucket:
    limit: int
    at: float
    level: float = field(init=False)
    period: float = PERIOD

    def __post_init__(self) -> None:
        self.level = float(self.limit)

    def _refill(self, now: float) -> None:
        if now > self.at:
            self.level = min(float(self.limit), self.level + (now - self.at) * self.limit / self.period)
        self.at = max(self.at, now)

    def take(self, n: float, now: float) -> bool:
        """Take ``n`` if the bucket holds that much."""
        self._refill(now)
        if self.level >= n:
            self.level -= n
            return True
        return False

    def has(self, n: float, now: float) -> bool:
        self._refill(now)
        return self.level >= n

    def charge(self, n: float, now: float) -> None:
        """Take ``n`` whatever the bucket holds (it may go below zero)."""
        self._refill(now)
        self.level -= n

    def remaining(self, now: float) -> int:
        self._refill(now)
        return max(0, math.floor(self.level))

    def reset_after(self, now: float) -> float:
        """Seconds until the bucket is full again."""
        self._refill(now)
        return (self.limit - self.level) * self.period / self.limit

    def wait_for(self, n: float, now: float) -> float:
        """Seconds until the bucket holds ``n``."""
        self._refill(now)
        return max(0.0, (n - self.level) * self.period / self.limit)


@dataclass(slots=True)
class KeyState:
    name: str
    role: str = "admin"  # inference | admin (``controller.scopes``)
    requests: Bucket | None = None
    tokens: Bucket | None = None
    served: int = 0  # requests admitted
    prompt_tokens: int = 0
    completion_tokens: int = 0
    limited: dict[str, int] = field(default_factory=lambda: {"requests": 0, "tokens": 0})


class Keys:
    """The configured keys: ``(name, secret, requests_per_minute, tokens_per_minute[, role])`` each (role: admin
    when left out). ``owner``: the controller's per-start owner key (admin, no limits, named ``OWNER``), which
    llmctl's own CLI and TUI send; it never turns keys on by itself: with no configured key every route stays open
    (loopback only), as before."""

    def __init__(self, keys: list[tuple], clock: Callable[[], float] = time.monotonic,
                 owner: str | None = None) -> None:
        self.clock = clock
        now = clock()
        self._secrets: list[tuple[bytes, KeyState]] = []
        self.states: dict[str, KeyState] = {}
        self.enabled = bool(keys)
        for name, secret, rpm, tpm, *role in keys:
            state = KeyState(name, role[0] if role else "admin", Bucket(rpm, now) if rpm else None,
                             Bucket(tpm, now) if tpm else None)
            self._secrets.append((secret.encode(), state))
            self.states[name] = state
        if owner is not None and self.enabled:
            state = KeyState(OWNER, "admin")
            self._secrets.append((owner.encode(), state))
            self.states[OWNER] = state

    def identify(self, presented: str) -> KeyState | None:
        """The key whose secret was presented, compared with every one in constant time."""
        given = presented.encode()
        if not given:
            return None  # no key presented is never a match, whatever is configured
        found = None
        for secret, state in self._secrets:
            if hmac.compare_digest(given, secret) and found is None:
                found = state
        return found

    def admit(self, state: KeyState, n: int = 1) -> dict[str, str]:
        """Let an inference request of this key through, counted as ``n`` requests (``n`` answers asked for), or
        raise a 429 ``ApiError``; returns its headers."""
        now = self.clock()
        if state.requests is not None and n > state.requests.limit:
            raise ApiError(400, f"this request counts as {n} requests, more than key '{state.name}' may make in a "
                           f"minute ({state.requests.limit}); ask for fewer answers (n, prompts) per request",
                           code="rate_limit_exceeded", param="n")
        if state.tokens is not None and not state.tokens.has(1, now):
            state.limited["tokens"] += 1
            wait = state.tokens.wait_for(1, now)
            raise self._refusal(state, "tokens", state.tokens.limit, wait, now)
        if state.requests is not None and not state.requests.take(n, now):
            state.limited["requests"] += 1
            wait = state.requests.wait_for(n, now)
            raise self._refusal(state, "requests", state.requests.limit, wait, now)
        state.served += n
        return self.headers(state)

    def _refusal(self, state: KeyState, kind: str, limit: int, wait: float, now: float) -> ApiError:
        unit = "requests" if kind == "requests" else "tokens"
        return ApiError(
            429, f"Rate limit reached for key '{state.name}' on {unit} per minute: limit {limit}. "
            f"Please try again in {duration(wait)}.", code="rate_limit_exceeded", type=kind,
            retry_after=max(1, math.ceil(wait)), headers=self.headers(state, now))

    def charge(self, state: KeyState, prompt_tokens: int | None, completion_tokens: int | None) -> None:
        """Count an answered request's usage against its key."""
        prompt, completion = prompt_tokens or 0, completion_tokens or 0
        state.prompt_tokens += prompt
        state.completion_tokens += completion
        if state.tokens is not None and prompt + completion:
            state.tokens.charge(prompt + completion, self.clock())

    def headers(self, state: KeyState, now: float | None = None) -> dict[str, str]:
        now = self.clock() if now is None else now
        out: dict[str, str] = {}
        for kind, bucket in (("requests", state.requests), ("tokens", state.tokens)):
            if bucket is not None:
                out[f"x-ratelimit-limit-{kind}"] = str(bucket.limit)
                out[f"x-ratelimit-remaining-{kind}"] = str(bucket.remaining(now))
                out[f"x-ratelimit-reset-{kind}"] = duration(bucket.reset_after(now))
        return out

    def snapshot(self) -> list[dict]:
        """Every key's limits, what is left of them and its usage (for ``GET /llmctl/v1/keys``)."""
        now = self.clock()
        out = []
        for state in self.states.values():
            out.append({
                "name": state.name,
                "role": state.role,
                "requests_per_minute": state.requests.limit if state.requests else None,
                "tokens_per_minute": state.tokens.limit if state.tokens else None,
                "remaining_requests": state.requests.remaining(now) if state.requests else None,
                "remaining_tokens": state.tokens.remaining(now) if state.tokens else None,
                "requests": state.served,
                "prompt_tokens": state.prompt_tokens,
                "completion_tokens": state.completion_tokens,
                "rate_limited": dict(state.limited),
            })
        return out


class ModelQueue:
    """Requests inside the gateway for one model, and how many of them may wait."""

    def __init__(self, name: str, max_queue: int, max_concurrent: int | None) -> None:
        self.name = name
        self.max_queue = max_queue
        self.max_concurrent = max_concurrent
        self.inside = 0  # admitted and not finished: waiting or being served
        self.rejected = 0
        self._permits = asyncio.Semaphore(max_concurrent) if max_concurrent else None

    def waiting(self, slots: int, inside: int | None = None) -> int:
        """Requests beyond what the model serves at once (``slots``: 0 while it loads)."""
        capacity = slots if self.max_concurrent is None else min(slots, self.max_concurrent)
        return max(0, (self.inside if inside is None else inside) - capacity)

    def admit(self, slots: int, loading: bool, n: int = 1) -> None:
        """Count a request in (as ``n``: one that asks for ``n`` answers), or raise 429 when it would wait beyond
        ``max_queue``."""
        if self.waiting(slots, self.inside + n) > self.max_queue:
            self.rejected += 1
            why = "is loading" if loading else "is busy"
            cap = f"max_concurrent {self.max_concurrent}" if self.max_concurrent else f"{slots} slot(s)"
            raise ApiError(
                429, f"'{self.name}' {why} and {self.max_queue} request(s) already wait for it (max_queue "
                f"{self.max_queue}, {cap}); retry shortly, or raise max_queue under [models.{self.name}]",
                code="queue_full", type="rate_limit_error", param="model", retry_after=5 if loading else 1)
        self.inside += n

    def leave(self, n: int = 1) -> None:
        self.inside -= n

    async def acquire(self) -> None:
        """Wait for a concurrency permit (only with ``max_concurrent``)."""
        if self._permits is not None:
            await self._permits.acquire()

    def release(self) -> None:
        if self._permits is not None:
            self._permits.release()

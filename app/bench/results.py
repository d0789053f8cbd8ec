"""Benchmark results: per-request samples -> the statistics vLLM's serving benchmark reports, under its key names
(so a run compares with a ``vllm bench serve`` run directly); llama-bench's pp/tg view; saved runs and the
comparison of two of them.

No click, no rich, no HTTP here (the runner is ``runner.py``, the command ``app/cli/bench.py``).

Definitions, as vLLM's ``vllm bench serve`` computes them (``vllm/benchmarks/serve.py`` ``calculate_metrics``):

- TTFT: request sent -> the first token chunk: a chunk whose delta has ``content``, ``reasoning_content`` or
  ``reasoning``, even "" (vLLM sends a token that ends inside a UTF-8 character as ""), the role-only preamble
  excepted (``bench_runner.is_token_chunk``). vLLM's client takes any chunk with ``choices``, its role chunk too;
  vLLM's server sends that right before the first token, so the two agree (benchmarks/bench_anchor.py).
- ITL: the gaps between successive token chunks, pooled over all requests of a level.
- TPOT: per request ``(e2el - ttft) / (output_tokens - 1)``, for requests with more than one output token.
- E2EL: request sent -> the stream's end.
- ``std`` is the population standard deviation; percentiles interpolate linearly (numpy's default).
- Throughputs divide by the level's wall-clock ``duration``; ``request_goodput`` counts completed requests that
  meet every SLO given with ``--goodput`` (a request with one output token has TPOT 0 for this test).

Where a statistic has no sample (every request failed), llmctl writes ``null`` where vLLM writes 0: a 0 ms TTFT
would read as a very fast server.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmctl.catalog.errors import LlmctlError

SCHEMA = "llmctl.bench/1"
METRICS = ("ttft", "tpot", "itl", "e2el")
STATS = ("mean", "median", "std", "p50", "p90", "p95", "p99")
PERCENTILES = (50, 90, 95, 99)
PROFILES = ("synchronous", "concurrent", "constant", "poisson")  # GuideLLM's names for load shapes
SLO_KEYS = ("ttft", "tpot", "e2el")


class BenchError(LlmctlError):
    """A benchmark could not run or a saved run could not be found."""


@dataclass(slots=True)
class RequestSample:
    """What one streamed request produced (times in seconds)."""

    ok: bool
    ttft: float | None = None
    e2el: float | None = None
    itl: list[float] = field(default_factory=list)
    output_tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    tokens_from: str = "usage"  # usage | deltas
    error: str | None = None

    @property
    def tpot(self) -> float | None:
        if not self.ok or self.ttft is None or self.e2el is None or self.output_tokens < 2:
            return None
        return (self.e2el - self.ttft) / (self.output_tokens - 1)

    @property
    def stream_rate(self) -> float | None:
        """This stream's own output tokens/s after the first token (what `llmctl chat` shows)."""
        tpot = self.tpot
        return 1.0 / tpot if tpot else None


# statistics --------------------------------------------------------------------------------------------------
def mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def std(xs: Sequence[float]) -> float | None:
    """Population standard deviation (numpy's ``np.std``, which vLLM uses)."""
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs)) if m is not None else None


def sample_std(xs: Sequence[float]) -> float:
    """Sample standard deviation (n - 1), as llama-bench's ``stddev_ts``; 0 for a single sample."""
    if len(xs) < 2:
        return 0.0
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def percentile(xs: Sequence[float], p: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default ``np.percentile``)."""
    if not xs:
        return None
    s = sorted(xs)
    k = (len(s) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def describe(name: str, seconds: Sequence[float]) -> dict[str, float | None]:
    """``{mean,median,std,p50,p90,p95,p99}_{name}_ms`` of samples given in seconds."""
    ms = [x * 1000.0 for x in seconds]
    out: dict[str, float | None] = {
        f"mean_{name}_ms": mean(ms), f"median_{name}_ms": percentile(ms, 50), f"std_{name}_ms": std(ms)}
    for p in PERCENTILES:
        out[f"p{p}_{name}_ms"] = percentile(ms, p)
    return out


def parse_goodput(items: Iterable[str]) -> dict[str, float]:
    """``["ttft:500", "tpot:50"]`` (vLLM's ``--goodput`` syntax, milliseconds) -> ``{"ttft": 500.0, ...}``."""
    slos: dict[str, float] = {}
    for item in items:
        for part in item.replace(",", " ").split():
            key, sep, value = part.partition(":")
            key = key.strip().lower()
            if not sep or key not in SLO_KEYS:
                raise BenchError(f"--goodput: {part!r} is not KEY:MILLISECONDS",
                                 f"keys are {', '.join(SLO_KEYS)}; e.g. --goodput ttft:500 tpot:50 e2el:10000")
            try:
                ms = float(value)
            except ValueError:
                raise BenchError(f"--goodput: {value!r} is not a number of milliseconds") from None
            if ms <= 0:
                raise BenchError(f"--goodput: {key} must be above 0 ms")
            slos[key] = ms
    return slos


def summarize(samples: Sequence[RequestSample], duration: float, slos: dict[str, float] | None = None,
              ) -> dict[str, Any]:
    """One level's figures under vLLM's keys (plus llmctl's per-stream rate)."""
    done = [s for s in samples if s.ok]
    out_tokens = sum(s.output_tokens for s in done)
    in_tokens = sum(s.prompt_tokens for s in done)
    dur = duration if duration > 0 else float("nan")
    good = None
    if slos:
        good = 0
        for s in done:
            measured = {"ttft": s.ttft or 0.0, "tpot": s.tpot or 0.0, "e2el": s.e2el or 0.0}
            if all(measured[k] * 1000.0 <= v for k, v in slos.items()):
                good += 1
    result: dict[str, Any] = {
        "duration": duration,
        "completed": len(done),
        "failed": len(samples) - len(done),
        "total_input_tokens": in_tokens,
        "total_output_tokens": out_tokens,
        "request_throughput": len(done) / dur,
        "request_goodput": None if good is None else good / dur,
        "output_throughput": out_tokens / dur,
        "total_token_throughput": (in_tokens + out_tokens) / dur,
    }
    result.update(describe("ttft", [s.ttft for s in done if s.ttft is not None]))
    result.update(describe("tpot", [t for s in done if (t := s.tpot) is not None]))
    result.update(describe("itl", [gap for s in done for gap in s.itl]))
    result.update(describe("e2el", [s.e2el for s in done if s.e2el is not None]))
    rates = [r for s in done if (r := s.stream_rate) is not None]
    result["output_throughput_per_stream"] = mean(rates)  # llmctl's own: mean over requests of 1 / TPOT
    result["output_tokens_from"] = "usage" if all(s.tokens_from == "usage" for s in done) else "deltas"
    errors: dict[str, int] = {}
    for s in samples:
        if not s.ok:
            errors[s.error or "unknown"] = errors.get(s.error or "unknown", 0) + 1
    result["errors"] = errors
    return result


def llama_bench_entry(test: str, n_prompt: int, n_gen: int, rates: Sequence[float]) -> dict[str, Any]:
    """One row of llama-bench's view: tokens/s mean and sample stddev over the repetitions."""
    return {"test": test, "n_prompt": n_prompt, "n_gen": n_gen, "avg_ts": mean(rates) if rates else None,
            "stddev_ts": sample_std(rates), "samples_ts": list(rates)}


# saved runs --------------------------------------------------------------------------------------------------
def new_run(target: dict, settings: dict, machine: dict) -> dict[str, Any]:
    now = time.time()
    model = re.sub(r"[^A-Za-z0-9._-]+", "-", str(target.get("model") or "model")).strip("-")[:60] or "model"
    return {"schema": SCHEMA, "id": time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f"-{model}",
            "created_at": now, "target": target, "settings": settings, "machine": machine, "levels": []}


def controller_run(target: Any, spec: Any, done: dict[str, Any], backends: list[dict], hardware: dict) -> dict:
    """A run made through the controller (the TUI's Bench screen) as ``llmctl bench --save`` records one: the
    engine and its settings from the controller's ``backends``, the machine from its ``hardware``."""
    model = target.model
    info: dict[str, Any] = {"url": target.base_url, "via": "llmctl", "model": model, "quant": None,
                            "format": None, "engine": None, "ctx_size": None, "parallel": None}
    for b in backends:
        if b.get("model") == model:
            info.update(engine=b.get("engine") or b.get("runtime"), runtime=b.get("runtime"),
                        ctx_size=b.get("ctx_size"), parallel=b.get("parallel"))
    machine = {**machine_summary(hardware), "role": "server"}
    settings = {"profile": "concurrent", "concurrency": spec.concurrency, "rates": None,
                "requests": spec.requests, "prompt_tokens": spec.prompt_tokens, "max_tokens": spec.max_tokens,
                "goodput": None, "ignore_eos": spec.ignore_eos, "temperature": 0, "seed": spec.seed,
                "prompt_calibration": done["calibration"], "repetitions": None}
    run = new_run(info, settings, machine)
    run["levels"] = done["levels"]
    return run


def level_label(level: dict) -> str:
    """``c=4`` for concurrent levels, ``sync``, ``rate=2/s`` (constant), ``poisson=2/s``."""
    profile = level.get("profile")
    if profile == "synchronous":
        return "sync"
    if profile == "concurrent":
        return f"c={level.get('max_concurrency')}"
    rate = level.get("request_rate")
    return f"{'rate' if profile == 'constant' else 'poisson'}={rate:g}/s"


def save_run(directory: Path, run: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{run['id']}.json"
    n = 1
    while path.exists():  # two runs in the same second
        n += 1
        path = directory / f"{run['id']}-{n}.json"
    run = {**run, "id": path.stem}
    tmp = path.with_suffix(".json.partial")
    tmp.write_text(json.dumps(run, indent=2, default=str), "utf-8")
    tmp.replace(path)
    return path


def list_runs(directory: Path) -> list[dict]:
    """Saved runs, oldest first; files that are not runs are skipped."""
    runs = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("schema") == SCHEMA:
            data["id"] = path.stem
            runs.append(data)
    runs.sort(key=lambda r: (r.get("created_at") or 0, r["id"]))
    return runs


def find_run(directory: Path, ref: str) -> dict:
    """A saved run by id, unique id prefix, history number (1 = oldest, -1 = newest) or a JSON file's path."""
    path = Path(ref).expanduser()
    if ref.endswith(".json") and path.is_file():
        data = json.loads(path.read_text("utf-8"))
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise BenchError(f"{ref} is not a saved llmctl benchmark", f"its schema is not {SCHEMA}")
        return data
    runs = list_runs(directory)
    if re.fullmatch(r"-?\d+", ref) and len(ref) < 6:
        i = int(ref)
        if 1 <= i <= len(runs):
            return runs[i - 1]
        if -len(runs) <= i <= -1:
            return runs[i]
    hits = [r for r in runs if r["id"] == ref] or [r for r in runs if r["id"].startswith(ref)]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise BenchError(f"no saved benchmark {ref!r}", "see `llmctl bench history` (runs are saved with --save)")
    raise BenchError(f"{ref!r} names {len(hits)} saved benchmarks", "give more of the id")


# comparison --------------------------------------------------------------------------------------------------
# (key, label, higher is better)
COMPARED = (
    ("output_throughput", "output tok/s", True),
    ("output_throughput_per_stream", "tok/s per stream", True),
    ("request_throughput", "requests/s", True),
    ("request_goodput", "goodput req/s", True),
    ("median_ttft_ms", "TTFT median ms", False),
    ("p99_ttft_ms", "TTFT p99 ms", False),
    ("median_tpot_ms", "TPOT median ms", False),
    ("median_itl_ms", "ITL median ms", False),
    ("p99_itl_ms", "ITL p99 ms", False),
    ("median_e2el_ms", "E2EL median ms", False),
    ("p99_e2el_ms", "E2EL p99 ms", False),
    ("failed", "failed", False),
)


@dataclass(frozen=True, slots=True)
class Delta:
    level: str
    metric: str
    label: str
    a: float | None
    b: float | None
    higher_is_better: bool

    @property
    def change(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a

    @property
    def percent(self) -> float | None:
        return None if self.change is None or not self.a else 100.0 * self.change / abs(self.a)

    @property
    def verdict(self) -> str:
        """better | worse | same (within 2 %) | - (a side is missing)."""
        if self.change is None:
            return "-"
        if (self.percent is not None and abs(self.percent) < 2.0) or self.change == 0:
            return "same"
        return "better" if (self.change > 0) == self.higher_is_better else "worse"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "change": self.change, "percent": self.percent, "verdict": self.verdict}


def compare_runs(a: dict, b: dict) -> list[Delta]:
    """B against A, level by level (levels are matched by load shape and concurrency or rate), metric by metric."""
    a_levels = {level_label(lv): lv for lv in a.get("levels", [])}
    b_levels = {level_label(lv): lv for lv in b.get("levels", [])}
    order = list(a_levels) + [k for k in b_levels if k not in a_levels]
    deltas = []
    for label in order:
        la, lb = a_levels.get(label, {}), b_levels.get(label, {})
        for key, name, up in COMPARED:
            if la.get(key) is None and lb.get(key) is None:
                continue
            deltas.append(Delta(label, key, name, la.get(key), lb.get(key), up))
    la_b = {e["test"]: e for e in a.get("llama_bench", [])}
    lb_b = {e["test"]: e for e in b.get("llama_bench", [])}
    for test in list(la_b) + [t for t in lb_b if t not in la_b]:
        deltas.append(Delta(test, "avg_ts", "tokens/s", la_b.get(test, {}).get("avg_ts"),
                            lb_b.get(test, {}).get("avg_ts"), True))
    return deltas


def setting_changes(a: dict, b: dict) -> list[tuple[str, Any, Any]]:
    """What differs between the two runs' target, settings and machine (what explains the change)."""
    out = []
    for section in ("target", "settings", "machine"):
        sa, sb = a.get(section) or {}, b.get(section) or {}
        for key in sorted(set(sa) | set(sb)):
            if key in ("url", "prompt_calibration"):
                continue
            if sa.get(key) != sb.get(key):
                out.append((f"{section}.{key}", sa.get(key), sb.get(key)))
    return out


def machine_summary(report: dict) -> dict[str, Any]:
    """The parts of a hardware report (``runtimes.hardware.probe(...).to_json()``) that explain a speed."""
    cpu = report.get("cpu") or {}
    return {"cpu": cpu.get("model"), "arch": cpu.get("arch"), "physical_cores": cpu.get("physical_cores"),
            "logical_cores": cpu.get("logical_cores"), "cpu_flags": list(cpu.get("flags") or []),
            "ram_total": report.get("ram_total"),
            "gpus": [{"name": g.get("name"), "vram_total": g.get("vram_total"), "driver": g.get("driver")}
                     for g in report.get("gpus") or []],
            "gpu_status": report.get("gpu_status")}

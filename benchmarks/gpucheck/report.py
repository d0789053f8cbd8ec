"""llama.cpp's own buffer lines, read from the engine's log, against `llmctl fit`'s estimate; and the table.

llama.cpp prints at verbosity 4 (which llmctl launches with) one line per buffer, named by its device:
``load_tensors: CUDA0 model buffer size = 7605.34 MiB``, ``CPU_Mapped model buffer size``, ``CPU_REPACK model
buffer size``, ``llama_kv_cache: CUDA0 KV buffer size``, ``llama_context: CUDA0 compute buffer size``,
``CUDA_Host output buffer size`` / ``compute buffer size`` (pinned host memory: the CPU's side), and
``load_tensors: offloaded 20/33 layers to GPU``.
"""

from __future__ import annotations

import re

MiB = 1 << 20
_BUFFER = re.compile(r"(\w+) +(model|KV|compute|output) buffer size = +([\d.]+) MiB")
_OFFLOADED = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")
KINDS = ("model", "repack", "KV", "compute", "output")


def parse_log(lines: list[str]) -> dict:
    """{"gpu": {kind: bytes}, "cpu": {kind: bytes}, "offloaded": [n, of] | None, "lines": [the buffer lines]} of
    the last load in the log (a model buffer after a compute buffer starts a new load)."""
    def empty() -> dict:
        return {"gpu": dict.fromkeys(KINDS, 0), "cpu": dict.fromkeys(KINDS, 0), "offloaded": None, "lines": []}

    out = empty()
    for line in lines:
        m = _OFFLOADED.search(line)
        if m:
            out["offloaded"] = [int(m.group(1)), int(m.group(2))]
        m = _BUFFER.search(line)
        if not m:
            continue
        device, kind, mib = m.group(1), m.group(2), float(m.group(3))
        if kind == "model" and not device.endswith("_REPACK") and (out["gpu"]["compute"] or out["cpu"]["compute"]):
            offloaded = out["offloaded"]
            out = empty()  # a second load: keep the last
            out["offloaded"] = offloaded
        if device.endswith("_REPACK"):
            kind = "repack"
        side = "gpu" if device.startswith("CUDA") and not device.startswith("CUDA_Host") else "cpu"
        out[side][kind] += round(mib * MiB)
        out["lines"].append(line.strip())
    return out


def compare(fit: dict, log: dict, cuda_context: int, nvml_delta: int | None) -> dict:
    """The estimate against what llama.cpp allocated. ``error`` = (estimate - measured) / measured: negative is
    an under-estimate (on a GPU: an out-of-memory crash). On the CPU only the buffers compare (the process's own
    baseline and the prompt-cache cap are estimated beside them); on the GPU, every CUDA0 buffer against
    ``gpu_bytes`` less the CUDA context, and NVML's used-memory growth against ``gpu_bytes`` whole."""
    gpu_buffers = sum(log["gpu"].values())
    cpu_buffers = sum(log["cpu"].values())
    terms = {
        "weights": [fit["weights_bytes"], log["gpu"]["model"] + log["cpu"]["model"]],
        "repack": [fit["repack_bytes"], log["cpu"]["repack"]],
        "kv": [fit["kv_cache_bytes"], log["gpu"]["KV"] + log["cpu"]["KV"]],
        "compute": [fit["compute_bytes"], log["gpu"]["compute"] + log["cpu"]["compute"]],
        "output": [fit["output_bytes"], log["gpu"]["output"] + log["cpu"]["output"]],
    }
    est_buffers = sum(e for e, _ in terms.values())
    out: dict = {
        "terms": {k: {"estimate": e, "measured": m, "error": _err(e, m)} for k, (e, m) in terms.items()},
        "buffers": {"estimate": est_buffers, "measured": gpu_buffers + cpu_buffers,
                    "error": _err(est_buffers, gpu_buffers + cpu_buffers)},
        "gpu_layers": {"estimate": fit["gpu_layers"], "measured": log["offloaded"][0] if log["offloaded"] else None,
                       "of": fit["n_layers"] + 1},
    }
    if fit["gpu_bytes"]:
        est_gpu = fit["gpu_bytes"] - cuda_context
        out["gpu_buffers"] = {"estimate": est_gpu, "measured": gpu_buffers, "error": _err(est_gpu, gpu_buffers)}
        if nvml_delta is not None:
            out["nvml"] = {"estimate": fit["gpu_bytes"], "measured": nvml_delta,
                           "error": _err(fit["gpu_bytes"], nvml_delta)}
    return out


def _err(estimate: int, measured: int) -> float | None:
    return None if not measured else round((estimate - measured) / measured, 4)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1%}"


def table(report: dict) -> str:
    """A short table: one line per case (fit error by term, on the GPU, by NVML), then tok/s per bench level."""
    rows = [f"{'case':34} {'ngl est/log':>11} {'buffers':>8} {'weights':>8} {'kv':>7} {'compute':>8} "
            f"{'gpu buf':>8} {'nvml':>7} {'est MiB':>8} {'log MiB':>8}"]
    for c in report["cases"] + ([report["offload"]] if report.get("offload") else []):
        if "comparison" not in c:
            rows.append(f"{c['name']:34} {(c.get('error') or c.get('skipped') or '')[:80]}")
            continue
        k = c["comparison"]
        t = k["terms"]
        layers = k["gpu_layers"]
        ngl = f"{layers['estimate']}/{'-' if layers['measured'] is None else layers['measured']}"
        rows.append(f"{c['name']:34} {ngl:>11} {_pct(k['buffers']['error']):>8} {_pct(t['weights']['error']):>8} "
                    f"{_pct(t['kv']['error']):>7} {_pct(t['compute']['error']):>8} "
                    f"{_pct(k.get('gpu_buffers', {}).get('error')):>8} {_pct(k.get('nvml', {}).get('error')):>7} "
                    f"{k['buffers']['estimate'] / MiB:8.1f} {k['buffers']['measured'] / MiB:8.1f}")
    for b in report.get("bench", []):
        for lv in b.get("levels", []):
            rows.append(f"bench {b['case']:28} concurrency {lv['concurrency']}: {lv['output_throughput'] or 0:8.1f} "
                        f"tok/s aggregate, {lv['per_stream'] or 0:7.1f} tok/s per stream, "
                        f"{lv['completed']} done, {lv['failed']} failed")
        if b.get("error"):
            rows.append(f"bench {b['case']:28} {b['error'][:80]}")
    return "\n".join(rows)

"""The GPU path, checked in one short run on a machine with an NVIDIA GPU and nothing downloadable.

    .venv/bin/python benchmarks/gpu_check.py OUT_DIR [--dry-run] [--llama-server PATH]   (or scripts/gpu-check.sh)

1. builds llama.cpp's ``llama-server`` with CUDA for the GPU found (its architecture only) from
   .gpu-check/llama.cpp-src.tar.gz (scripts/prepare-llama-source.sh), while
2. writing random-weight GGUFs of real shapes (Llama 3 8B in Q8_0, Llama 3.2 1B in F16);
3. runs llmctl as a user does, in subprocesses with a private LLMCTL_HOME: ``hw --json`` and ``doctor`` on the
   real NVML; per case ``fit NAME --ctx --parallel --json``, then ``start`` on the CUDA build under ``serve``, one
   ``chat`` message, the engine's log (``logs``) and NVML's used memory before/after; auto offload with the
   planned VRAM made smaller than the model (``backends.memory_margin`` raised: the layers are `fit`'s); ``bench
   run`` at concurrency 1 and 8;
4. writes OUT_DIR/gpu-check.json and prints a short table (README: "Checking the GPU path").

Without a GPU it says so and exits 2 in seconds. ``--dry-run`` runs the same steps but the build and the GPU ones,
with small shapes on the CPU engine (xllamacpp), so the script itself is tested (tests/cli/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import platform
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tests")]  # gpucheck/, and tests/tiny_gguf.py's tokenizer

from gpucheck.cli import Llmctl  # noqa: E402
from gpucheck.gpu import Gpu, build_llama_server, find_gpu, memory_used  # noqa: E402
from gpucheck.models import DRY_SMALL, DRY_TINY, LLAMA3_8B, LLAMA32_1B, Shape, write_llama  # noqa: E402
from gpucheck.report import compare, parse_log, table  # noqa: E402

REPORT_VERSION = 1
MiB = 1 << 20


@dataclass(frozen=True)
class Case:
    shape: Shape
    ctx: int  # per slot
    parallel: int
    bench: bool = False  # llmctl bench at concurrency 1 and 8 while it is loaded

    @property
    def name(self) -> str:
        return f"{self.shape.name}-c{self.ctx}x{self.parallel}".lower()  # as llmctl's store names it


# most telling first: a case the time budget has no room for is skipped (and says so)
GPU_CASES = [Case(LLAMA3_8B, 8192, 1), Case(LLAMA3_8B, 4096, 8, bench=True), Case(LLAMA32_1B, 4096, 1),
             Case(LLAMA3_8B, 32768, 4), Case(LLAMA32_1B, 32768, 2)]
GPU_OFFLOAD = Case(LLAMA3_8B, 8192, 1)
DRY_CASES = [Case(DRY_SMALL, 8192, 1), Case(DRY_TINY, 1024, 8, bench=True)]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="folder for gpu-check.json")
    ap.add_argument("--dry-run", action="store_true", help="no build, no GPU: small shapes on the CPU engine")
    ap.add_argument("--llama-server", type=Path, help="use this CUDA llama-server instead of building one")
    ap.add_argument("--source", type=Path, default=ROOT / ".gpu-check" / "llama.cpp-src.tar.gz")
    ap.add_argument("--budget", type=float, default=480,
                    help="seconds for the whole run: cases that would start after it are skipped (default 480)")
    ap.add_argument("--work", type=Path, default=ROOT / ".gpu-check" / "work",
                    help="build folder and models (default .gpu-check/work)")
    args = ap.parse_args(argv)
    started = time.monotonic()
    args.deadline = started + args.budget
    gpu: Gpu | None = None
    if not args.dry_run:
        gpu, how = find_gpu()
        if gpu is None:
            print(f"error: no NVIDIA GPU on this machine ({how})\n"
                  "  -> run it where one is, or add --dry-run to check the script itself on the CPU engine",
                  file=sys.stderr)
            return 2
        log(f"GPU {gpu.index}: {gpu.name}, compute {gpu.compute_cap}, {gpu.total_bytes / MiB:.0f} MiB ({how})")
        built = args.work / f"build-sm{gpu.arch}" / "bin" / "llama-server"
        if args.llama_server is None and not args.source.is_file() and not built.is_file():
            print(f"error: no llama.cpp source at {args.source}\n"
                  "  -> run scripts/prepare-llama-source.sh once where PyPI answers (it writes "
                  ".gpu-check/llama.cpp-src.tar.gz, which travels with the working tree), or pass --llama-server",
                  file=sys.stderr)
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {"version": REPORT_VERSION, "mode": "dry-run" if args.dry_run else "gpu",
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "machine": {"platform": platform.platform(), "python": platform.python_version()},
                    "gpu": asdict(gpu) if gpu else None, "build": None, "hw": None, "doctor": None, "models": {},
                    "cases": [], "offload": None, "bench": [], "errors": []}
    path = args.out / "gpu-check.json"

    def checkpoint() -> None:  # what is known so far, in case the run is stopped at its time limit
        path.write_text(json.dumps({**report, "complete": False}, indent=2) + "\n")

    with tempfile.TemporaryDirectory(prefix="llmctl-gpu-check-") as tmp:
        home = Path(tmp) / "home"
        cli = Llmctl(home, log)
        try:
            run(args, gpu, cli, Path(tmp), report, checkpoint)
        except Exception as exc:  # the report is still written, with what failed
            report["errors"].append(f"{type(exc).__name__}: {exc}")
            log(traceback.format_exc())
        finally:
            cli.shutdown()
        report["llmctl_commands"] = cli.commands
    report["seconds"] = round(time.monotonic() - started, 1)
    under = [c["name"] for c in report["cases"] + ([report["offload"]] if report["offload"] else [])
             if under_on_gpu(c.get("comparison") or {})]
    report["gpu_under_estimates"] = under
    report["complete"] = True
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    if under:
        print(f"\nunder-estimates on the GPU (an out-of-memory risk): {', '.join(under)}")
    print(f"\nreport: {path} ({report['seconds']} s)" + (f"; {len(report['errors'])} error(s): "
                                                          + "; ".join(e[:200] for e in report["errors"])
                                                          if report["errors"] else ""))
    return 1 if report["errors"] else 0


def under_on_gpu(comparison: dict) -> bool:
    """Whether CUDA allocated more than the estimate said (its buffers, or NVML's used-memory growth)."""
    errors = [(comparison.get(k) or {}).get("error") for k in ("gpu_buffers", "nvml")]
    return any(e is not None and e < 0 for e in errors)


def run(args, gpu: Gpu | None, cli: Llmctl, tmp: Path, report: dict, checkpoint) -> None:
    cases = DRY_CASES if args.dry_run else GPU_CASES
    shapes = {c.shape.name: c.shape for c in cases}
    models_dir = tmp / "models" if args.dry_run else args.work / "models"
    models_dir.mkdir(parents=True, exist_ok=True)

    def write_models() -> dict[str, Path]:
        paths = {}
        for name, shape in shapes.items():
            t = time.monotonic()
            paths[name] = write_llama(models_dir / f"{name}.gguf", shape)
            report["models"][name] = {**asdict(shape), "path": str(paths[name]),
                                      "bytes": paths[name].stat().st_size, "seconds": round(time.monotonic() - t, 1)}
            log(f"wrote {paths[name]} ({paths[name].stat().st_size / MiB:.0f} MiB)")
        return paths

    binary = args.llama_server
    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # the build and the writing overlap
        written = pool.submit(write_models)
        if gpu is not None and binary is None:
            args.work.mkdir(parents=True, exist_ok=True)
            binary, report["build"] = build_llama_server(args.source, args.work, gpu, log)
            cli.env.update(report["build"]["runtime_env"])  # llmctl, and the engine it starts, inherit it
            log(f"built {binary} in {report['build']['seconds']} s")
        paths = written.result()
    checkpoint()

    engine = f'engine = "llama-server"\nllama_server = "{binary}"\n' if gpu is not None else 'engine = "xllamacpp"\n'
    profiles = "".join(f'\n[models."{c.name}"]\nctx_size = {c.ctx}\nparallel = {c.parallel}\n' for c in cases)
    cli.config(f"[backends]\n{engine}ttl = -1\n{profiles}")
    for c in cases:
        cli.run("import", str(paths[c.shape.name]), "--name", c.name)

    report["hw"] = cli.json("hw")
    doctor = cli.run("doctor", check=False)
    report["doctor"] = {"rc": doctor.returncode, "output": doctor.stdout.splitlines()}
    if gpu is not None and not report["hw"].get("gpus"):
        report["errors"].append("llmctl hw --json found no GPU where nvidia-smi/NVML did")

    checkpoint()
    cli.serve()
    for c in cases:
        report["cases"].append(measure(cli, c, gpu, report) if time.monotonic() < args.deadline else
                               {"name": c.name, "skipped": f"the {args.budget:.0f} s budget was spent"})
        checkpoint()
    if gpu is not None:
        cli.shutdown()
        report["offload"] = offload(cli, GPU_OFFLOAD, gpu, report) if time.monotonic() < args.deadline else \
            {"name": f"offload-{GPU_OFFLOAD.name}", "skipped": f"the {args.budget:.0f} s budget was spent"}


def measure(cli: Llmctl, c: Case, gpu: Gpu | None, report: dict, fit_env: dict | None = None) -> dict:
    """fit, start, one chat message, the engine's log and NVML, bench (when asked), stop: one case's row."""
    row: dict = {"name": c.name, "model": c.shape.name, "ctx": c.ctx, "parallel": c.parallel}
    try:
        fit = cli.json("fit", c.name, "--ctx", str(c.ctx), "--parallel", str(c.parallel), env=fit_env)
        row["fit"] = fit
        before = memory_used(gpu.index) if gpu else None
        row["start"] = cli.json("start", c.name, timeout=600)
        loaded = memory_used(gpu.index) if gpu else None
        launched = (row["start"].get("ctx_size"), row["start"].get("parallel"))
        if launched != (c.ctx, c.parallel):  # the profile did not apply: fit and the launch would differ
            raise RuntimeError(f"{c.name} launched with context {launched[0]} x {launched[1]}, not the "
                               f"{c.ctx} x {c.parallel} fit estimated")
        if gpu is not None:  # a first request: what CUDA allocates beyond the load (cuBLAS workspaces, graphs)
            cli.run("chat", c.name, "-m", "Hello", "--max-tokens", "8", "--temperature", "0", timeout=300)
        after = memory_used(gpu.index) if gpu else None
        lines = cli.json("logs", c.name, "-n", "5000")["lines"]
        parsed = parse_log(lines)
        row["engine_log"] = {"buffers": {"gpu": parsed["gpu"], "cpu": parsed["cpu"]},
                             "offloaded": parsed["offloaded"], "lines": parsed["lines"]}
        if not parsed["lines"]:
            raise RuntimeError(f"no buffer lines in {c.name}'s engine log (last lines: {lines[-5:]})")
        delta = None
        if gpu is not None:
            delta = max(loaded["used"], after["used"]) - before["used"]
            row["nvml"] = {"before": before, "loaded": loaded, "after_request": after, "delta": delta}
        from llmctl.catalog.estimate import CUDA_CONTEXT

        row["comparison"] = compare(fit, parsed, CUDA_CONTEXT, delta)
        row["ps"] = [b for b in cli.json("ps") if b.get("model") == c.name]
        if c.bench:
            report["bench"].append(bench(cli, c, quick=gpu is None))
    except Exception as exc:
        row["error"] = f"{type(exc).__name__}: {exc}"
        report["errors"].append(f"{c.name}: {row['error'][:500]}")
    finally:
        cli.run("stop", c.name, check=False)
    return row


def bench(cli: Llmctl, c: Case, quick: bool) -> dict:
    args = ["bench", "run", c.name, "--concurrency", "1,8"]
    args += ["--requests", "8", "--prompt-tokens", "32", "--max-tokens", "8"] if quick else \
        ["--requests", "16", "--prompt-tokens", "128", "--max-tokens", "128"]
    try:
        data = cli.json(*args, timeout=300)
    except Exception as exc:
        return {"case": c.name, "error": f"{type(exc).__name__}: {exc}"}
    levels = [{"concurrency": lv.get("max_concurrency"), "output_throughput": lv.get("output_throughput"),
               "per_stream": lv.get("output_throughput_per_stream"), "completed": lv.get("completed"),
               "failed": lv.get("failed"), "mean_ttft_ms": lv.get("mean_ttft_ms")} for lv in data.get("levels", [])]
    return {"case": c.name, "settings": data.get("settings"), "levels": levels}


def offload(cli: Llmctl, c: Case, gpu: Gpu, report: dict) -> dict:
    """Auto offload: the planned VRAM made 60 % of the model file by raising ``backends.memory_margin`` (kept free
    on every device) to the free VRAM less that; fit and serve both read NVML and must agree on the layers."""
    size = report["models"][c.shape.name]["bytes"]
    free = memory_used(gpu.index)["free"]
    planned = int(size * 0.6)
    margin = max(1 << 30, free - planned)
    env = {"LLMCTL_BACKENDS__MEMORY_MARGIN": str(margin)}
    cli.serve(env=env)
    row = measure(cli, c, gpu, report, fit_env=env)
    row["name"] = f"offload-{c.name}"
    row["planned_vram"] = planned
    row["memory_margin"] = margin
    return row


if __name__ == "__main__":
    sys.exit(main())

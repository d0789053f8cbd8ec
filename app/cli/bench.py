"""`llmctl bench`: how fast a model serves here, as vLLM's serving benchmark and llama-bench report it; saved runs,
their history and the change between two. The figures come from ``app/bench/runner.py`` and ``app/bench/results.py``."""

from __future__ import annotations

from typing import Any

import click

from llmctl.app.cli.context import Context, emit_json, pass_ctx


class BenchGroup(click.Group):
    """``llmctl bench [MODEL] [OPTIONS]`` runs a benchmark; ``llmctl bench history|compare`` are subcommands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] in ("-h", "--help"):
            return super().parse_args(ctx, args)
        if not args or args[0] not in self.commands:
            args = ["run", *args]
        return super().parse_args(ctx, _spread_goodput(args))


def _spread_goodput(args: list[str]) -> list[str]:
    """vLLM's ``--goodput ttft:500 tpot:50`` (several values after one flag) as click's repeated option."""
    out, in_goodput = [], False
    for arg in args:
        if arg == "--goodput":
            in_goodput = True
            continue
        if in_goodput and not arg.startswith("-") and ":" in arg:
            out += ["--goodput", arg]
            continue
        if in_goodput and len(out) and out[-2:-1] != ["--goodput"]:
            out.append("--goodput")  # a bare --goodput with no value: let click say so
        in_goodput = False
        out.append(arg)
    if in_goodput and out[-2:-1] != ["--goodput"]:
        out.append("--goodput")
    return out


@click.group(cls=BenchGroup)
def bench() -> None:
    """Benchmark a model through llmctl's endpoint (or any OpenAI-compatible --url).

    \b
      llmctl bench [MODEL] [--concurrency 1,4,8] [--json] [--save]   (= llmctl bench run ...)
      llmctl bench MODEL --llama-bench [-r 3]                         pp512 / tg128 view
      llmctl bench history                                            saved runs
      llmctl bench compare A B                                        what changed between two
    """


def _ints(value: str | None, name: str) -> list[int]:
    try:
        out = [int(v) for v in (value or "").replace(" ", "").split(",") if v]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of whole numbers", param_hint=name) from None
    if not out or any(v < 1 for v in out):
        raise click.BadParameter("give one or more numbers from 1 up, e.g. 1,4,8", param_hint=name)
    return out


def _floats(value: str | None, name: str) -> list[float]:
    try:
        out = [float(v) for v in (value or "").replace(" ", "").split(",") if v]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers", param_hint=name) from None
    if any(v <= 0 for v in out):
        raise click.BadParameter("rates are requests per second, above 0", param_hint=name)
    return out


@bench.command("run")
@click.argument("model", required=False)
@click.option("--profile", type=click.Choice(["concurrent", "synchronous", "constant", "poisson"]),
              default="concurrent", show_default=True,
              help="Load shape (GuideLLM's names): N streams at once, one at a time, or arrivals at --rate "
                   "(fixed intervals, or Poisson).")
@click.option("--concurrency", default="1,4,8", show_default=True, help="Streams at once, one level per value.")
@click.option("--rate", help="Requests/s for --profile constant|poisson, one level per value (e.g. 0.5,1,2).")
@click.option("--requests", type=click.IntRange(1, 100000), help="Requests per level [default: 4 x concurrency, "
              "at least 8; 10 s of arrivals for a rate].")
@click.option("--prompt-tokens", type=click.IntRange(1, 1 << 17),
              help="Prompt length in the engine's tokens, chat template included, calibrated with probe requests "
                   "[default: 128; 512 with --llama-bench].")
@click.option("--max-tokens", type=click.IntRange(1, 1 << 17),
              help="Tokens to generate per request [default: 64; 128 with --llama-bench].")
@click.option("--goodput", multiple=True, metavar="KEY:MS",
              help="SLOs for request_goodput, vLLM's syntax: --goodput ttft:500 tpot:50 e2el:10000 (milliseconds).")
@click.option("--ignore-eos/--no-ignore-eos", default=True, show_default=True,
              help="Ask the server to generate exactly --max-tokens (llama.cpp and vLLM honour it).")
@click.option("--url", help="Benchmark this OpenAI-compatible endpoint instead of llmctl's (e.g. http://host:8000/v1).")
@click.option("--api-key", envvar="LLMCTL_BENCH_API_KEY", help="Bearer key for --url.")
@click.option("--llama-bench", "llama_bench", is_flag=True,
              help="llama-bench's view instead: pp512 (prompt tokens/s from the TTFT of a 512-token prompt) and tg128 "
                   "(tokens/s generating 128), mean ± stddev over -r runs. Measured through the server, so it "
                   "includes HTTP and scheduling; it is not llama-bench itself.")
@click.option("-r", "--repetitions", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Repetitions for --llama-bench.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random prompts and arrivals.")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON (vLLM's key names per level).")
@click.option("--save", is_flag=True, help="Save the run under llmctl's data folder (see `llmctl bench history`).")
@pass_ctx
def run(ctx: Context, model: str | None, as_json: bool, save: bool, **opts: Any) -> None:
    """Stream chat completions at each load level and report TTFT, TPOT, ITL and E2EL (mean, median, std, p50,
    p90, p95, p99), output tokens/s per stream and in aggregate, requests/s, completed/failed and goodput.

    MODEL defaults to a loaded model (or the endpoint's first). Every request gets its own prompt of random words,
    sized to --prompt-tokens by the server's own counts: probe requests (max_tokens 1) give usage.prompt_tokens
    for two lengths, hence tokens per word and the chat template's overhead. (llama.cpp's /tokenize would be exact
    but sits behind the engine's private key.) A server that reports no usage gets an approximation: 4 tokens per
    3 words, template not counted. Output tokens are the server's usage counts, else the streamed deltas.
    """
    import asyncio

    from llmctl.app.bench.results import new_run, parse_goodput, save_run
    from llmctl.app.bench.runner import LoadSpec

    lb = opts["llama_bench"]
    spec = LoadSpec(
        profile=opts["profile"], concurrency=_ints(opts["concurrency"], "--concurrency"),
        rates=_floats(opts["rate"], "--rate"), requests=opts["requests"],
        prompt_tokens=opts["prompt_tokens"] or (512 if lb else 128),
        max_tokens=opts["max_tokens"] or (128 if lb else 64),
        slos=parse_goodput(opts["goodput"]), ignore_eos=opts["ignore_eos"], seed=opts["seed"])
    if spec.profile in ("constant", "poisson") and not spec.rates and not lb:
        raise click.BadParameter(f"--profile {spec.profile} needs --rate, e.g. --rate 0.5,1,2", param_hint="--rate")
    if opts["url"] and not opts["url"].startswith(("http://", "https://")):
        raise click.BadParameter("give a URL such as http://127.0.0.1:8000/v1", param_hint="--url")

    from llmctl.app.cli.bench_display import Display

    display = Display(quiet=as_json)
    result = asyncio.run(_run(ctx, model, spec, opts, display))
    target, settings, levels, lbench = result
    run_data = new_run(target, settings, _machine(ctx, target))
    run_data["levels"] = levels
    if lbench is not None:
        run_data["llama_bench"] = lbench
    if save:
        path = save_run(ctx.paths.data_dir / "benchmarks", run_data)
        run_data["id"] = path.stem
        run_data["saved_to"] = str(path)
    if as_json:
        emit_json(run_data)
        return
    display.report(run_data)


async def _run(ctx: Context, model: str | None, spec, opts: dict, display) -> tuple[dict, dict, list, list | None]:
    import httpx

    from llmctl.app.bench.runner import Runner, Target, describe_model, first_model, openai_base

    through_llmctl = not opts["url"]
    if through_llmctl:
        async with ctx.client() as client:  # the controller proves itself before its owner key is sent
            url, api_key = await client.proven()
        base = openai_base(url)
    else:
        base, api_key = openai_base(opts["url"]), opts["api_key"]
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30.0) as http:
        try:
            listed = await (first_model(http) if model is None else describe_model(http, model))
        except httpx.ConnectError:
            from llmctl.app.bench.results import BenchError

            hint = "start it with `llmctl serve` (or `llmctl serve --demo`)" if through_llmctl else "check --url"
            raise BenchError(f"nothing answers at {base}", hint) from None
        if model is None:
            model, entry = listed
        else:
            entry = listed
    target = Target(base, model, api_key)
    with display.progress() as on_event:
        async with Runner(target, spec, on_event=on_event) as runner:
            await runner.calibrate()
            lbench = None
            if opts["llama_bench"]:
                levels = []
                lbench = await runner.llama_bench(spec.prompt_tokens, spec.max_tokens, opts["repetitions"])
            else:
                levels = await runner.run()
    info = await _target_info(ctx, through_llmctl, base, model, entry)
    settings = {"profile": "llama-bench" if lbench is not None else spec.profile,
                "concurrency": spec.concurrency if spec.profile == "concurrent" and lbench is None else None,
                "rates": spec.rates or None, "requests": spec.requests, "prompt_tokens": spec.prompt_tokens,
                "max_tokens": spec.max_tokens, "goodput": spec.slos or None, "ignore_eos": spec.ignore_eos,
                "temperature": 0, "seed": spec.seed, "prompt_calibration": runner.calibration,
                "repetitions": opts["repetitions"] if lbench is not None else None}
    return info, settings, levels, lbench


async def _target_info(ctx: Context, through_llmctl: bool, base: str, model: str, entry: dict) -> dict:
    """Engine, model, quant and the engine's settings, as far as the endpoint tells."""
    ext = entry.get("llmctl") or {}
    info: dict[str, Any] = {"url": base, "via": "llmctl" if through_llmctl else "url", "model": model,
                            "quant": ext.get("quant"), "format": ext.get("format"),
                            "engine": entry.get("owned_by"), "ctx_size": None, "parallel": None}
    if through_llmctl:
        try:
            backends = await ctx.client().backends()
        except Exception:
            backends = []
        for b in backends:
            if b.get("model") == model:
                info.update(engine=b.get("engine") or b.get("runtime"), runtime=b.get("runtime"),
                            ctx_size=b.get("ctx_size"), parallel=b.get("parallel"))
    return info


def _machine(ctx: Context, target: dict) -> dict:
    """CPU, RAM and GPUs of this machine (the server's when benchmarking llmctl; the client's for a --url)."""
    from llmctl.app.bench.results import machine_summary
    from llmctl.runtimes.hardware import probe

    out = machine_summary(probe(ctx.paths.models_dir).to_json())
    out["role"] = "server" if target.get("via") == "llmctl" else "client"
    return out


@bench.command()
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def history(ctx: Context, as_json: bool) -> None:
    """Saved runs (llmctl bench --save), oldest first; # numbers work with `compare` (-1 = newest)."""
    from llmctl.app.bench.results import list_runs

    runs = list_runs(ctx.paths.data_dir / "benchmarks")
    if as_json:
        emit_json(runs)
        return
    if not runs:
        click.echo("no saved benchmarks yet: llmctl bench MODEL --save")
        return
    from llmctl.app.cli.bench_display import Display

    Display().history(runs)


@bench.command()
@click.argument("a", required=False)
@click.argument("b", required=False)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def compare(ctx: Context, a: str | None, b: str | None, as_json: bool) -> None:
    """What changed from saved run A to B, per level and metric (default: the two newest). A and B are ids, id
    prefixes, history numbers (-1 = newest) or saved JSON files."""
    from llmctl.app.bench.results import compare_runs, find_run, setting_changes

    folder = ctx.paths.data_dir / "benchmarks"
    if b is None:
        a, b = ("-2", "-1") if a is None else (a, "-1")
    run_a, run_b = find_run(folder, a), find_run(folder, b)
    deltas, changes = compare_runs(run_a, run_b), setting_changes(run_a, run_b)
    if as_json:
        emit_json({"a": run_a["id"], "b": run_b["id"], "deltas": [d.to_json() for d in deltas],
                   "changed": [{"key": k, "a": va, "b": vb} for k, va, vb in changes]})
        return
    from llmctl.app.cli.bench_display import Display

    Display().compare(run_a, run_b, deltas, changes)

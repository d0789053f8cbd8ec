"""`llmctl hw`, `doctor`, `fit` and `recommend`: thin commands over runtimes.hardware and catalog's estimator."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from llmctl.app.cli.context import Context, emit_json, pass_ctx
from llmctl.app.format import size
from llmctl.runtimes.registry import FIT_RUNTIMES

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "kb": 10**3, "m": 1 << 20, "mib": 1 << 20, "mb": 10**6,
          "g": 1 << 30, "gib": 1 << 30, "gb": 10**9, "t": 1 << 40, "tib": 1 << 40, "tb": 10**12}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*([\d.]+)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise click.BadParameter(f"{text!r} is not a size; write e.g. 24GiB, 16G or 8192MiB")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


UNKNOWN_BANDWIDTH = 500.0  # GB/s assumed for a GPU the table does not list (a mid-range card)


def _probe(ctx: Context):
    """This machine (or the recorded one ``LLMCTL_HW_RECORDING`` names), GPUs without a memory reading filled
    from the bundled table."""
    from llmctl.app.fit_inputs import fill_vram_from_table, host_and_probe
    from llmctl.runtimes.hardware import probe

    host, gpu_probe = host_and_probe()
    report = probe(ctx.paths.models_dir, gpu_probe, host)
    return replace(report, gpus=tuple(fill_vram_from_table(report.gpus)))


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB".replace(".0 GiB", " GiB")


def _planned_mac(spec, ram: str | None):
    """(budget, description) of a Mac that is not this one: its unified memory less what macOS and apps keep,
    and the GPU's working-set limit within it."""
    from llmctl.catalog.estimate import Budget
    from llmctl.runtimes.hardware.apple import macos_reserve, working_set_limit

    total = parse_size(ram) if ram else int(spec.vram_gib * (1 << 30))
    limit, why = working_set_limit(total)
    pool = total - macos_reserve(total)
    return (Budget((limit,), pool, unified=True),
            f"planning for Apple {spec.name} ({spec.bandwidth_gbs:g} GB/s): unified {_gib(total)}, GPU limit "
            f"{_gib(limit)} ({why}); {_gib(pool)} for models after {_gib(total - pool)} for macOS and apps")


def _budget(ctx: Context, gpu: str | None, vram: str | None, ram: str | None):
    """(budget, GPU bandwidth GB/s, description): this machine's memory, or the machine described by --gpu /
    --vram / --ram (RAM not given is this machine's total when planning for another GPU)."""
    from llmctl.app.fit_inputs import machine_budget
    from llmctl.catalog.errors import LlmctlError
    from llmctl.catalog.estimate import Budget
    from llmctl.catalog.known import find_gpu

    if gpu or vram:
        if gpu:
            spec = find_gpu(gpu)
            if spec.unified:
                budget, where = _planned_mac(spec, ram)
                return budget, spec.bandwidth_gbs, where
            vram_bytes, label, bandwidth = int(spec.vram_gib * (1 << 30)), spec.name, spec.bandwidth_gbs
        else:
            vram_bytes, label, bandwidth = parse_size(vram), "planned GPU", UNKNOWN_BANDWIDTH
        ram_bytes = parse_size(ram) if ram else _probe(ctx).ram_total
        return (Budget((vram_bytes,), ram_bytes, int(ctx.settings.backends.memory_margin)), bandwidth,
                f"planning for {label} ({size(vram_bytes)}) with {size(ram_bytes)} RAM")
    report = _probe(ctx)
    ram_bytes = parse_size(ram) if ram else report.ram_available
    bandwidth = 0.0
    if report.gpus:
        g = report.gpus[0]
        try:
            bandwidth = find_gpu(f"{g.name} {round(report.ram_total / (1 << 30))}GB" if g.unified
                                 else g.name).bandwidth_gbs
        except LlmctlError:  # a card the table does not know
            bandwidth = UNKNOWN_BANDWIDTH
    machine = f"recorded machine {report.recorded!r}" if report.recorded else "this machine"
    budget = machine_budget(report.gpus, ram_bytes)
    if budget.unified:
        g = report.gpus[0]
        return (budget, bandwidth, f"{machine}: {g.name}, unified {_gib(report.ram_total)}, GPU limit "
                                   f"{_gib(g.vram_total)}; {size(ram_bytes)} available")
    where = ", ".join(f"{g.name} ({size(g.vram_free)} free)" for g in report.gpus) or "no GPU"
    return budget, bandwidth, f"{machine}: {where}, {size(ram_bytes)} RAM available"


@click.command()
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def hw(ctx: Context, as_json: bool) -> None:
    """This machine: CPU, RAM, disk at the model store, NVIDIA GPUs."""
    report = _probe(ctx)
    if as_json:
        emit_json(report.to_json())
        return
    c = report.cpu
    if report.recorded:
        click.echo(f"(recorded machine: {report.recorded})")
    split = f" ({c.performance_cores}P + {c.efficiency_cores}E)" if c.performance_cores else ""
    click.echo(f"CPU   {c.model} ({c.arch}), {c.physical_cores} cores{split} / {c.logical_cores} threads")
    click.echo(f"      flags: {', '.join(c.flags) or 'none of the ones llama.cpp uses'}")
    pool = "unified memory (CPU and GPU share it)" if report.unified else "RAM"
    click.echo(f"RAM   {size(report.ram_available)} available of {size(report.ram_total)} {pool}")
    click.echo(f"Disk  {size(report.disk_free)} free at {report.disk_path}")
    if not report.gpus:
        click.echo(f"GPU   none ({report.gpu_detail})")
    for g in report.gpus:
        click.echo(f"GPU {g.index} {g.name}" + (f" ({g.cores} cores)" if g.cores else "") + ": " + _gpu_line(g))
        if g.note:
            click.echo(f"      {g.note}")


def _gpu_line(g) -> str:
    backends = "llama.cpp backend " + " or ".join(g.backends)
    if g.unified:
        return f"GPU limit {size(g.vram_total)} of the unified memory, {size(g.vram_free)} of it free; {backends}"
    memory = f"{size(g.vram_free)} free of {size(g.vram_total)}" if g.vram_total else "VRAM unknown"
    extra = [f"driver {g.driver}" if g.driver else "", f"CUDA {g.cuda_version}" if g.cuda_version else "",
             f"compute {g.compute_capability}" if g.compute_capability else "", f"arch {g.arch}" if g.arch else "",
             f"{g.utilization}% busy" if g.utilization is not None else ""]
    return ", ".join([memory, *filter(None, extra), backends]) + f" (read by {g.source})"


@click.command()
@pass_ctx
def doctor(ctx: Context) -> None:
    """Check everything llmctl depends on and say what to do about each problem."""
    import os

    problems = 0

    def line(ok: bool, what: str, fix: str = "") -> None:
        nonlocal problems
        problems += not ok
        click.echo(f"{'ok ' if ok else 'FIX'}  {what}" + (f"\n     -> {fix}" if fix and not ok else ""))

    report = _probe(ctx)
    line(True, f"CPU {report.cpu.model}: {report.cpu.physical_cores} cores, {', '.join(report.cpu.flags) or '-'}")
    line(report.ram_available > 2 << 30, f"RAM {size(report.ram_available)} available",
         "close other programs; even a 1B model wants ~2 GiB")
    line(bool(report.gpus) or report.gpu_status in ("no-library", "no-device"),
         f"GPU: {report.gpu_detail}", "install or load the GPU's driver, or run on the CPU (it works, slower)")
    for g in report.gpus:
        if g.unified:
            line(True, f"{g.name}: unified memory {size(report.ram_total)}, GPU limit {size(g.vram_total)}")
            click.echo(f"     {g.note}")
    from llmctl.app.deployments import launch_plan, vllm_where
    from llmctl.runtimes.base import ChecksGpuUse, EngineUnavailable
    from llmctl.runtimes.ollama import find_ollama
    from llmctl.runtimes.registry import describe_engines

    try:
        default = launch_plan(ctx.settings, data_dir=ctx.paths.data_dir).engine
        line(True, f"engine for GGUF models: {default.name}")
    except EngineUnavailable as exc:
        default = None
        line(False, f"no engine for GGUF models: {exc.title}", exc.message)
    for info in describe_engines(llama_server=ctx.settings.backends.llama_server,
                                 vllm=vllm_where(ctx.settings, ctx.paths.data_dir)):
        found = f"{info.version or 'found'} ({info.executable})" if info.found else "not found"
        click.echo(f"     {info.engine}: {found}")
    problem = default.gpu_problem(report.gpus) if isinstance(default, ChecksGpuUse) else None
    if problem is not None:
        line(False, f"{default.name}: {problem[0]}", problem[1])
    click.echo(f"     ollama: {find_ollama() or 'not found'}")
    store = ctx.paths.data_dir
    probe_dir = store if store.exists() else store.parent
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    line(os.access(probe_dir, os.W_OK), f"model store {store} writable, {size(report.disk_free)} free",
         f"make {probe_dir} writable or set LLMCTL_HOME")
    from llmctl.app.config_files import exposed
    from llmctl.app.settings import offline as settings_offline  # not at import: --help stays light

    for config in dict.fromkeys(p for p in (ctx.paths.config_file, os.environ.get("LLMCTL_CONFIG")) if p):
        if not Path(config).is_file():
            continue
        problem = exposed(Path(config))
        line(problem is None, problem or f"{config}: no API key readable by other users",
             f"chmod 600 {config} (or move the key to an environment variable: key_env)")
    offline = settings_offline(ctx.settings)
    click.echo(f"     offline mode: {'on' if offline else 'off'}")
    click.echo(f"\n{problems} problem(s)" if problems else "\nall good")
    if problems:
        raise SystemExit(1)


def _resolve_facts(ctx: Context, target: str, runtime: str):
    """(facts, label, runtime) for a .gguf path, a Hugging Face model folder, a registered model, or a catalog
    name / repo id. A model folder (or a registered one) is estimated for the engines that serve safetensors
    (vLLM); a catalog model in the format of the ``runtime`` family."""
    from llmctl.catalog.errors import LlmctlError
    from llmctl.catalog.facts import facts_from_gguf
    from llmctl.catalog.gguf import read_gguf
    from llmctl.catalog.known import default_quant, facts_for, facts_for_safetensors, find_model
    from llmctl.catalog.safetensors_dir import facts_from_model_dir
    from llmctl.catalog.store import ModelStore
    from llmctl.runtimes.registry import fit_family

    for_folders = fit_family(fmt="safetensors").name
    path = Path(target).expanduser()
    if path.is_dir():
        return facts_from_model_dir(path), str(path), for_folders
    if target.endswith(".gguf") or path.is_file():
        return facts_from_gguf(read_gguf(path)), str(path), runtime
    try:
        entry = ModelStore(ctx.paths.data_dir).get(target)
    except LlmctlError:  # not a valid model name: a catalog name or a repo id
        entry = None
    if entry is not None and entry.format == "safetensors":
        return facts_from_model_dir(Path(entry.path)), f"{entry.name} ({entry.path})", for_folders
    if entry is not None and entry.format == "gguf":
        return facts_from_gguf(read_gguf(Path(entry.path))), f"{entry.name} ({entry.path})", runtime
    model, quant = find_model(target)
    if fit_family(runtime).fmt == "safetensors":
        variant = next((v for v in ("awq", "gptq", "fp8") if v in model.safetensors), None)
        if variant is None:
            raise LlmctlError(f"{model.name} has no AWQ/GPTQ/FP8 variant in the catalog",
                              f"use --runtime {fit_family(fmt='gguf').name}")
        return (facts_for_safetensors(model, variant),
                f"{model.name} ({variant.upper()}, {model.safetensors[variant]})", runtime)
    quant = quant or default_quant(model)
    return facts_for(model, quant), f"{model.name}:{quant} ({model.gguf.repo})", runtime


def _ollama_facts(ctx: Context, target: str):
    """(facts, label, Ollama's in-memory size or None) for ollama/NAME:TAG: the GGUF blob behind it."""
    import asyncio

    from llmctl.app.ollama import api_for, model_blob, ollama_stores, to_ollama_name
    from llmctl.catalog.facts import facts_from_gguf
    from llmctl.catalog.gguf import read_gguf

    name = to_ollama_name(target)

    async def find():
        async with api_for(ctx.settings, ctx.paths) as api:
            return await model_blob(api, name, ollama_stores(ctx.settings, ctx.paths))

    blob, measured = asyncio.run(find())
    return facts_from_gguf(read_gguf(blob)), f"ollama/{name} ({blob})", measured


def _measured_baseline(req) -> int | None:
    """A Python-hosted engine's baseline varies with installed packages: measure it (about a second)."""
    from llmctl.app.fit_inputs import engine_baseline

    return engine_baseline(req.profile)


_PLAN_OPTIONS = [
    click.option("--gpu", help='Plan for another machine\'s GPU, e.g. "RTX 3090".'),
    click.option("--vram", help="Plan for this much VRAM, e.g. 24GiB."),
    click.option("--ram", help="Plan for this much RAM, e.g. 64GiB."),
]


def plan_options(f):
    for option in reversed(_PLAN_OPTIONS):
        f = option(f)
    return f


@click.command()
@click.argument("target")
@click.option("--ctx", "ctx_len", type=int, default=None,
              help="Context (the KV pool the slots share). Default: what serve gives it (backends.ctx_size; auto: "
                   "the trained length, capped by the memory here).")
@click.option("--kv-type", type=click.Choice(["f16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0"]), default=None,
              help="KV cache type (default: backends.kv_type, f16); what serve launches with the same setting.")
@click.option("--parallel", type=int, default=None, help="Concurrent request slots (default: backends.parallel).")
@click.option("--runtime", type=click.Choice(FIT_RUNTIMES), default=FIT_RUNTIMES[0], show_default=True)
@click.option("--gpu-layers", default=None,
              help="auto, or a number of layers to offload (default: as serve would, backends.n_gpu_layers or auto).")
@plan_options
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def fit(ctx: Context, target: str, **kw: Any) -> None:
    """How much memory TARGET needs here: a catalog MODEL[:QUANT], a Hub repo id, a PATH.gguf, a registered
    model, or a Hugging Face model FOLDER (estimated for vLLM, which serves those)."""
    from llmctl.app.fit_inputs import serving_context, serving_request
    from llmctl.catalog.context import fixed_context
    from llmctl.catalog.estimate import estimate

    measured = None  # Ollama's own in-memory size of an Ollama model that is loaded
    if target.startswith(("ollama/", "ollama:")):
        facts, label, measured = _ollama_facts(ctx, target)
    else:
        facts, label, kw["runtime"] = _resolve_facts(ctx, target, kw["runtime"])
    budget, _bw, where = _budget(ctx, kw["gpu"], kw["vram"], kw["ram"])
    layers = kw["gpu_layers"]
    if layers is not None and layers != "auto" and not layers.lstrip("-").isdigit():
        raise click.BadParameter("--gpu-layers takes 'auto' or a number")
    overrides = {k: kw[k] for k in ("kv_type", "parallel") if kw[k] is not None}
    if layers is not None:
        overrides["gpu_layers"] = None if layers == "auto" else int(layers)
    if kw["ctx_len"] is not None:
        req = serving_request(ctx.settings, kw["ctx_len"], runtime=kw["runtime"], **overrides)
        context = fixed_context(kw["ctx_len"], None, profile=False)
    else:
        req, context = serving_context(ctx.settings, facts, budget, runtime=kw["runtime"], **overrides)
    req = replace(req, baseline_bytes=_measured_baseline(req))
    est = estimate(facts, req, budget)
    if kw["as_json"]:
        emit_json({"model": label, "plan": where, **est.to_json(), "context": context.to_json(),
                   **({"ollama_size_bytes": measured} if target.startswith(("ollama/", "ollama:")) else {})})
        return
    click.echo(f"{label}\n{where}; runtime {est.runtime}, "
               f"context {req.ctx} shared by {req.parallel} slot(s), KV {req.kv_type}\n"
               + ("" if kw["ctx_len"] is not None else f"context {context.detail}\n"))
    rows = [("weights", est.weights_bytes), ("weights repacked for the CPU", est.repack_bytes),
            ("KV cache", est.kv_cache_bytes), ("compute buffers", est.compute_bytes),
            ("output buffer", est.output_bytes), ("runtime overhead", est.overhead_bytes), ("total", est.total_bytes)]
    for name, value in rows:
        click.echo(f"  {name:30} {size(value):>10}")
    click.echo(f"\n  on the GPU {size(est.gpu_bytes):>10}   ({est.gpu_layers} of {est.n_layers + 1} layers)")
    click.echo(f"  on the CPU {size(est.cpu_bytes):>10}")
    if est.memory == "unified":
        click.echo(f"  together   {size(est.total_bytes):>10}   (one unified pool: GPU and CPU parts are not added "
                   "twice)")
    if measured is not None:
        click.echo(f"  Ollama now {size(measured):>10}   (its own figure from /api/ps: the model is loaded)")
    colour = {"yes": "green", "tight": "yellow", "no": "red"}[est.fits]
    click.secho(f"\nfits: {est.fits} - {est.reason}", fg=colour)
    for note in est.notes:
        click.echo(f"  note: {note}")


@click.command()
@click.option("--use", type=click.Choice(["chat", "code", "reasoning", "small"]))
@click.option("--ctx", "ctx_len", default=8192, show_default=True)
@click.option("--top", default=10, show_default=True)
@click.option("--ram-bandwidth", default=50.0, show_default=True, help="GB/s, for the speed guess on the CPU.")
@plan_options
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def recommend(ctx: Context, use: str | None, **kw: Any) -> None:
    """The best models for this machine (or --gpu / --vram / --ram), best quality that fits first."""
    from llmctl.app.fit_inputs import serving_request
    from llmctl.catalog.recommend import recommend as rank

    budget, bandwidth, where = _budget(ctx, kw["gpu"], kw["vram"], kw["ram"])
    launch = serving_request(ctx.settings, kw["ctx_len"])
    launch = replace(launch, baseline_bytes=_measured_baseline(launch))
    options, left_out = rank(budget, use=use, ctx=kw["ctx_len"], gpu_bandwidth_gbs=bandwidth,
                             ram_bandwidth_gbs=kw["ram_bandwidth"], launch=launch)
    if kw["as_json"]:
        emit_json({"plan": where, "options": [o.to_json() for o in options[: kw["top"]]], "left_out": left_out})
        return
    click.echo(f"{where}; context {kw['ctx_len']}\n")
    if not options:
        click.echo("nothing in the catalog fits; try a smaller --ctx")
    from llmctl.app.cli.tables import Col, print_table

    cols = [Col("#", justify="right"), Col("MODEL", shrink=True, min_width=30), Col("QUANT"), Col("GPU", drop=2),
            Col("NEEDS", drop=1, justify="right"), Col("FREE", drop=4, justify="right"),
            Col("TOK/S", drop=3, justify="right"), Col("FIT")]
    rows = [[str(i), o.model, o.quant, f"{o.gpu_layers}/{o.n_layers}" if o.gpu_layers else "CPU",
             size(o.total_bytes), size(o.headroom_bytes), f"~{o.tokens_per_s:g}", o.fits]
            for i, o in enumerate(options[: kw["top"]], 1)]
    if rows:
        print_table(cols, rows)
    click.echo()
    for i, o in enumerate(options[: kw["top"]], 1):
        click.echo(f"{i:>2}. {o.model}: {'; '.join(o.why)}")
    click.echo(f"\nFREE: memory left on the tightest device; yes = at least {size(budget.margin)} stays free on each "
               "(backends.memory_margin), tight = less.\ntokens/s is a rough guide from memory bandwidth; "
               f"`llmctl fit MODEL:QUANT --ctx N` shows the same estimate term by term.")

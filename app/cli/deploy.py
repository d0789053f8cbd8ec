"""`llmctl deploy export`: a catalog model's profile and fit plan as vLLM manifests for Kubernetes or Compose.
The plan and the documents are the deploy room's (``llmctl.deploy.plan``, ``llmctl.deploy.manifests``); this module only
merges flags with the ``[models.NAME]`` profile and writes files."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from llmctl.app.cli.context import Context, pass_ctx

DEFAULT_GPU = "A100 80GB"


@click.group()
def deploy() -> None:
    """Deployment manifests for running a model on an existing engine elsewhere (vLLM on Kubernetes)."""


@deploy.command("export")
@click.argument("model")
@click.option("--target", type=click.Choice(["k8s", "compose"]), required=True,
              help="k8s: Deployment (or LeaderWorkerSet), Service, PVC, HPA. compose: one host.")
@click.option("--tensor-parallel", "tp", type=click.IntRange(1, 64), default=1, show_default=True,
              help="GPUs per node each layer is split over (vLLM --tensor-parallel-size).")
@click.option("--pipeline-parallel", "pp", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Stages, one node each on Kubernetes (>1 writes a LeaderWorkerSet).")
@click.option("--replicas", type=click.IntRange(1, 1000), default=1, show_default=True)
@click.option("--max-replicas", type=click.IntRange(1, 1000), help="The autoscaler's cap (default 4 × replicas).")
@click.option("--gpu-type", default=DEFAULT_GPU, show_default=True,
              help='A GPU from llmctl\'s table, e.g. "RTX 4090", "A100 80GB", "H100 SXM".')
@click.option("--quant", type=click.Choice(["awq", "gptq", "fp8", "bf16"]),
              help="Checkpoint to serve (default: the first of AWQ, GPTQ, FP8 the catalog has; bf16: the original).")
@click.option("--max-model-len", type=click.IntRange(256, 1 << 21),
              help="Context per request (default: the profile's ctx_size, else what the model and KV cache allow).")
@click.option("--gpu-memory-utilization", type=click.FloatRange(0.1, 0.99), default=0.9, show_default=True)
@click.option("--image", help="Override the pinned vllm/vllm-openai image.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write the files into (default: print the manifest).")
@pass_ctx
def export(ctx: Context, model: str, target: str, tp: int, pp: int, replicas: int, max_replicas: int | None,
           gpu_type: str, quant: str | None, max_model_len: int | None, gpu_memory_utilization: float,
           image: str | None, out: Path | None) -> None:
    """Write vLLM manifests for MODEL (a catalog name or Hub repo id; its [models.NAME] profile applies).

    Nothing is applied or verified on a cluster: the files say so, and every value carries a comment."""
    from llmctl.catalog.known import find_gpu, find_model
    from llmctl.deploy.manifests import compose_manifest, k8s_manifest
    from llmctl.deploy.plan import VLLM_IMAGE, DeployRequest, plan_vllm

    catalog_model, _quant = find_model(model)
    profile = ctx.settings.models.get(model) or ctx.settings.models.get(catalog_model.name)
    gpu = find_gpu(gpu_type)
    req = DeployRequest(
        name=catalog_model.name, gpu_name=gpu.name, vram_bytes=int(gpu.vram_gib * (1 << 30)), variant=quant,
        tensor_parallel=tp, pipeline_parallel=pp, replicas=replicas, max_replicas=max_replicas,
        max_model_len=max_model_len or (profile.ctx_size if profile else None),
        max_num_seqs=profile.parallel if profile else None,
        gpu_memory_utilization=gpu_memory_utilization,
        aliases=tuple(profile.aliases) if profile else (), image=image or VLLM_IMAGE,
    )
    plan = plan_vllm(catalog_model, req)
    command = export_command(catalog_model.name, target, req, quant)
    files = [k8s_manifest(plan, command)] if target == "k8s" else compose_manifest(plan, command)
    if out is None:
        click.echo(files[0].text, nl=False)
        return
    out.mkdir(parents=True, exist_ok=True)
    for f in files:
        (out / f.name).write_text(f.text, encoding="utf-8")
        click.echo(f"wrote {out / f.name}", err=True)
    for note in plan.notes:
        click.echo(f"note: {note}", err=True)


def export_command(name: str, target: str, req, quant: str | None) -> str:
    """The command line that makes these files, for their header (stable: no paths, no defaults)."""
    parts = ["llmctl", "deploy", "export", name, "--target", target]
    for flag, value, default in (("--tensor-parallel", req.tensor_parallel, 1),
                                 ("--pipeline-parallel", req.pipeline_parallel, 1),
                                 ("--replicas", req.replicas, 1), ("--max-replicas", req.max_replicas, None),
                                 ("--gpu-type", req.gpu_name, None), ("--quant", quant, None),
                                 ("--max-model-len", req.max_model_len, None)):
        if value is not None and value != default:
            parts += [flag, str(value)]
    if req.gpu_memory_utilization != 0.9:
        parts += ["--gpu-memory-utilization", f"{req.gpu_memory_utilization:g}"]
    return shlex.join(parts)

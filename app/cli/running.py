"""`llmctl ps`, `start`, `stop`, `logs`, `chat` and `shutdown`: the model servers of the running controller, through
its control API."""

from __future__ import annotations

import click

from llmctl.app.cli.context import Context, emit_json, pass_ctx
from llmctl.app.format import duration, listens_on, size
from llmctl.catalog.text import printable


@click.command()
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def ps(ctx: Context, as_json: bool) -> None:
    """Model servers of the running controller, and its remotes' health."""

    async def both(c):
        from llmctl.app.client.wire import ControllerError

        try:
            remote_rows = await c.remotes()
        except ControllerError:  # a controller from before remotes
            remote_rows = []
        return await c.backends(), remote_rows

    backends, remote_rows = ctx.call(both)
    if as_json:
        emit_json(backends)
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    if remote_rows:
        rt = Table(box=None, header_style="bold")
        for col in ("REMOTE", "URL", "STATE", "MODELS", "NEXT CHECK"):
            rt.add_column(col)
        for r in remote_rows:
            why = f" ({r['error']})" if r.get("error") else ""
            nxt = "-" if r.get("next_check_in") is None else f"{r['next_check_in']:.0f}s"
            rt.add_row(Text(r["name"]), Text(r["url"]), Text(r["state"] + why),
                       "-" if r["models"] is None else str(len(r["models"])), nxt)
        Console().print(rt)
    if not backends:
        click.echo("no model servers running (models start on their first request, or with `llmctl start`)")
        return
    from llmctl.app.cli.tables import Col, print_table

    cols = [Col("MODEL", shrink=True, min_width=32), Col("ENGINE", drop=2), Col("STATE"), Col("PID", drop=4),
            Col("PORT/SOCKET", drop=3, shrink=True), Col("UPTIME", drop=1), Col("RESTARTS", drop=5),
            Col("MEMORY", justify="right")]
    rows = [[b["model"], b.get("engine") or b["runtime"], b["state"], str(b["pid"] or "-"), listens_on(b),
             duration(b["uptime"]), str(b["restarts"]), size(b["memory_bytes"])] for b in backends]
    print_table(cols, rows)
    for b in backends:  # the reason goes below the table, whole, so the state word stays whole in it
        why = b.get("error") or b.get("stop_reason")
        if why:
            click.echo(f"{b['model']}: {b['state']} ({printable(why)})")
    for b in backends:
        if b.get("context"):
            click.echo(f"{b['model']}: context {b['context']['detail']}; shared by {b.get('parallel')} slot(s)")
    for b in backends:
        if b["state"] == "failed" and b.get("last_log_lines"):
            click.echo(f"\n{b['model']} failed; its last log lines:")
            for line in b["last_log_lines"]:
                click.echo(f"  {printable(line)}")


@click.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def start(ctx: Context, model: str, as_json: bool) -> None:
    """Load a model now (and retry one that failed)."""
    status = ctx.call(lambda c: c.load(model))
    if as_json:
        emit_json(status)
        return
    where = f"on {status['socket']}" if status.get("socket") else f"on port {status['port']}"
    click.echo(f"{status['model']} is {status['state']} {where} (pid {status['pid']})")


@click.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def stop(ctx: Context, model: str, as_json: bool) -> None:
    """Stop a model's server (SIGTERM, grace period, SIGKILL)."""
    status = ctx.call(lambda c: c.unload(model))
    if as_json:
        emit_json(status)
        return
    click.echo(f"{status['model']} is {status['state']}")


@click.command()
@click.argument("model")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("-n", "--lines", default=50, show_default=True, help="How many recent lines to show.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object {model, lines, next}; with --follow, one {model, line} per line (JSON Lines).")
@pass_ctx
def logs(ctx: Context, model: str, follow: bool, lines: int, as_json: bool) -> None:
    """A model server's log."""
    import asyncio

    def show(batch: list[str]) -> None:
        for line in batch:
            if as_json:
                emit_json({"model": model, "line": line}, compact=True)
            else:
                click.echo(printable(line))  # an engine's log quotes the model's metadata

    async def run(client) -> None:
        data = await client.logs(model, tail=lines)
        if as_json and not follow:
            emit_json({"model": model, "lines": data["lines"], "next": data["next"]})
            return
        show(data["lines"])
        offset = data["next"]
        while follow:
            await asyncio.sleep(0.5)
            data = await client.logs(model, since=offset)
            show(data["lines"])
            offset = data["next"]

    ctx.call(run)


@click.command()
@click.argument("model")
@click.option("--system", help="A system prompt.")
@click.option("--temperature", type=float, default=0.7, show_default=True)
@click.option("--max-tokens", type=int, default=512, show_default=True)
@click.option("-m", "--message", "one_shot", help="Send one message, print the reply and exit.")
@pass_ctx
def chat(ctx: Context, model: str, system: str | None, temperature: float, max_tokens: int,
         one_shot: str | None) -> None:
    """A terminal chat that streams the reply (a reasoning model's thinking dimmed before it).

    Ctrl-C stops a reply and keeps the chat; Ctrl-C, Ctrl-D or an empty line at the prompt quits."""
    from llmctl.app.cli.chat import ChatSession, run_chat

    session = ChatSession(model, system, temperature=temperature, max_tokens=max_tokens)
    run_chat(ctx.client, session, one_shot)


@click.command()
@pass_ctx
def shutdown(ctx: Context) -> None:
    """Stop the running controller and every model server it started."""
    ctx.call(lambda c: c.shutdown())
    click.echo("the controller is stopping its model servers and exiting")

"""What a pull's status means to a person, shared by the Models screen (its row's STATE) and the Dashboard (its
Pulls lines), so the two say the same thing. Pure functions over the controller's ``PullStatus``: no I/O."""

from __future__ import annotations

from textual.content import Content

from llmctl.app.client.wire import PullStatus
from llmctl.screens.format import size

ENDED = ("done", "failed", "cancelled")
RESUME_HINT = "a partial one resumes when pulled again"


def percent(status: PullStatus) -> int:
    """How much of the pull is on disk, in whole percent (a pull of nothing yet reads 0)."""
    return 100 * status["done_bytes"] // max(1, status["total_bytes"])


def row_state(status: PullStatus) -> str:
    """The STATE a model's row shows while it is pulled here: ``pulling N%``, or how the pull ended."""
    return f"pulling {percent(status)}%" if status["state"] not in ENDED else status["state"]


def is_partial(status: PullStatus) -> bool:
    """A pull that stopped (cancelled, or failed) with bytes kept on disk: the same pull resumes them."""
    return status["state"] in ("cancelled", "failed") and 0 < status["done_bytes"] < status["total_bytes"]


def worth_showing(pulls: list[PullStatus]) -> list[PullStatus]:
    """The pulls a summary lists, oldest first: each running one, and each partial one whose reference no later
    pull has finished or taken over (a resumed pull replaces its partial; a done one leaves nothing to resume)."""
    shown: dict[str, PullStatus] = {}
    for status in sorted(pulls, key=lambda s: s["started_at"]):
        if status["state"] not in ENDED or is_partial(status):
            shown[status["ref"]] = status
        else:
            shown.pop(status["ref"], None)
    return list(shown.values())


def summary(status: PullStatus) -> Content:
    """One line for a pull: the reference, then ``pulling 52%  2.3 GiB of 4.4 GiB, 50.0 MiB/s`` for a running one
    or ``partial: 1.1 GiB of 4.4 GiB (cancelled)`` for one that stopped (what that means: ``RESUME_HINT``)."""
    amount = f"{size(status['done_bytes'])} of {size(status['total_bytes'])}"
    if status["state"] not in ENDED:
        speed = f", {size(int(status['speed_bps']))}/s" if status["speed_bps"] else ""
        doing = "registering" if status["state"] == "registering" else f"pulling {percent(status)}%"
        return Content.from_markup("$ref  [b]$doing[/]  $amount$speed", ref=status["ref"], doing=doing,
                                   amount=amount, speed=speed)
    return Content.from_markup("$ref  [yellow]partial[/]: $amount ($state)",
                               ref=status["ref"], amount=amount, state=status["state"])

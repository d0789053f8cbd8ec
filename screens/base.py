"""What every llmctl screen shares."""

from __future__ import annotations

from textual.screen import Screen
from textual.worker import Worker


class LlmctlScreen(Screen):
    """A screen whose workers' state changes reach the app: ``Worker.StateChanged`` does not bubble, and the app
    holds the one handler that turns a failed worker into a notification (STYLE 5)."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.app.post_message(Worker.StateChanged(event.worker, event.state))

"""What every llmctl screen shares: worker failures reach the app, and the controller-down banner."""

from __future__ import annotations

from textual.content import Content
from textual.screen import Screen
from textual.widgets import Header, Static
from textual.worker import Worker


class ControllerBanner(Static):
    """One line under the header while no controller answers: what is wrong and the key that starts it again
    (the key first, so an 80-column screen still shows it)."""

    def __init__(self) -> None:
        super().__init__("", id="controller-banner", markup=False)
        self.display = False

    def show(self, down: str | None) -> None:
        self.display = down is not None
        self.screen.set_class(down is not None, "-controller-down")  # what it shows is dimmed: it may be stale
        if down is not None:
            self.update(Content.assemble(Content.styled(" ctrl+s ", "bold reverse"),
                                         " starts the controller again  ", Content.styled(down, "italic")))


class LlmctlScreen(Screen):
    """A screen whose workers' state changes reach the app: ``Worker.StateChanged`` does not bubble, and the app
    holds the one handler that turns a failed worker into a notification (the app never exits on
    an ordinary error; tests/tui/test_worker_errors.py)."""

    SUB_TITLE = "1-6 sections, ? keys"

    def on_mount(self) -> None:
        banner = ControllerBanner()
        headers = self.query(Header)
        if headers:
            self.mount(banner, after=headers.first())
        else:
            self.mount(banner, before=0)
        banner.show(getattr(self.app, "controller_down", None))

    def on_screen_resume(self) -> None:
        down = getattr(self.app, "controller_down", None)
        for banner in self.query(ControllerBanner):
            if banner.display and down is None:
                self.recover()  # it came back while another section showed
            banner.show(down)

    def recover(self) -> None:
        """The controller answers again: fetch what this screen shows (each screen says what that is)."""
        refresh = getattr(self, "action_refresh", None)
        if refresh is not None:
            refresh()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.app.post_message(Worker.StateChanged(event.worker, event.state))

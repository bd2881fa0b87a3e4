"""``sanic-realtime top``'s screen: a Textual app over a :class:`RealtimeClient` and a
:class:`TopModel`. The client's events and status changes go into the model as they
arrive; the screen takes the model's new lines and figures a few times a second, so a
fast channel costs one redraw per tick, not one per event."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Input, RichLog, Static

from ..client import RealtimeClient, RealtimeClientError, Refused
from .model import TopModel

__all__ = ["TopApp"]


class TopApp(App[int]):
    """A full-screen live view of a server's channels."""

    TITLE = "sanic-realtime top"
    CSS = """
    #status { height: 1; padding: 0 1; }
    #channels { height: auto; max-height: 45%; border-top: solid $primary; }
    #events { border-top: solid $primary; }
    #filter { dock: bottom; display: none; }
    #filter.shown { display: block; }
    """
    BINDINGS = [
        Binding("p", "pause", "Pause/resume"),
        Binding("slash", "filter", "Filter"),
        Binding("c", "clear", "Clear"),
        Binding("escape", "close_filter", "Clear filter", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        make_client: Callable[[], RealtimeClient],
        url: str,
        *,
        model: TopModel | None = None,
        tick: float = 0.25,
    ) -> None:
        super().__init__()
        self.make_client = make_client
        self.url = url
        self.model = model or TopModel()
        self.tick = tick
        self.client: RealtimeClient | None = None
        #: why the view ended on its own (a refusal, given up), for the shell
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="status")
        yield DataTable(id="channels", cursor_type="none", zebra_stripes=True)
        yield RichLog(id="events", max_lines=self.model.recent_size, markup=False)
        yield Input(
            placeholder="filter: words, or name=value (Enter keeps it, Esc clears it)",
            id="filter",
        )
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#channels", DataTable)
        table.add_columns("channel", "events/s", "events", "latest")
        client = self.client = self.make_client()
        client.on_connection_change(lambda status: self.model.on_status(status, time.monotonic()))
        self.run_worker(self._consume(client), name="realtime-top", exclusive=True)
        self.set_interval(self.tick, self.draw)
        self.draw()

    async def _consume(self, client: RealtimeClient) -> None:
        try:
            await client.connect()
            if not client.channels:
                await client.subscribe("all")
            async for event in client:
                self.model.on_event(event, time.monotonic())
        except Refused as e:
            self._fail(f"the server refused the connection: {e}")
        except RealtimeClientError as e:
            self._fail(str(e))

    def _fail(self, message: str) -> None:
        self.error = message
        self.exit(1, return_code=1)

    # ------------------------------------------------------------ drawing

    def draw(self) -> None:
        now = time.monotonic()
        self.query_one("#status", Static).update(self.model.headline(self.url, now))
        log = self.query_one("#events", RichLog)
        for line in self.model.take_new():
            log.write(line.text)
        table = self.query_one("#channels", DataTable)
        channels = self.client.channels if self.client is not None else []
        table.clear()
        for row in self.model.rows(channels, now):
            table.add_row(row.channel, f"{row.rate:.1f}", str(row.total), row.latest)

    def redraw(self) -> None:
        """The whole list again: after a resume, a new filter, a clear."""
        log = self.query_one("#events", RichLog)
        log.clear()
        for line in self.model.visible()[-self.model.recent_size :]:
            log.write(line.text)
        self.draw()

    # ------------------------------------------------------------ keys

    def action_pause(self) -> None:
        if self.model.toggle_pause():
            self.redraw()
        else:
            self.draw()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("shown")
        box.focus()

    def action_close_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_class("shown") or self.model.filter_text:
            box.value = ""
            box.remove_class("shown")
            self.model.set_filter("")
            self.redraw()

    def on_input_changed(self, message: Input.Changed) -> None:
        self.model.set_filter(message.value)
        self.redraw()

    def on_input_submitted(self, message: Input.Submitted) -> None:
        message.input.remove_class("shown")
        self.query_one("#events", RichLog).focus()

    def action_clear(self) -> None:
        self.model.clear()
        self.redraw()

    async def action_quit(self) -> None:
        if self.client is not None:
            await self.client.close()
        self.exit(0)

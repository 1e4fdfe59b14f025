"""LogView under a flood: bounded memory, newest line rendered, pause and resume.

(The partial-repaint freeze fixed in LogView._show shows only on a real terminal, which a
headless full render cannot see; the benchmark's tui-logs scenario measures it in tmux.)
"""

from __future__ import annotations

from textual.app import App, ComposeResult

from tui.widgets.logview import MAX_LINES, LogView


class Host(App[None]):
    def compose(self) -> ComposeResult:
        yield LogView(id="log")


async def test_newest_line_shown_after_trimming() -> None:
    app = Host()
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.query_one(LogView)
        for batch in range(3):  # well past MAX_LINES, in the batches the stream delivers
            for n in range(MAX_LINES // 2):
                view.feed(f"line {batch * (MAX_LINES // 2) + n}")
            view.flush()
            await pilot.pause()
        last = f"line {3 * (MAX_LINES // 2) - 1}"
        assert view.line_count == MAX_LINES
        screen = "\n".join(strip.text for strip in app.screen._compositor.render_strips())
        assert last in screen, screen[-400:]
        view.set_paused(True)
        view.feed("while paused")
        view.flush()
        await pilot.pause()
        assert view.unseen == 1
        view.set_paused(False)
        await pilot.pause()
        screen = "\n".join(strip.text for strip in app.screen._compositor.render_strips())
        assert "while paused" in screen

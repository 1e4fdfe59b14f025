"""`MetricPanel`: a titled sparkline with the current value, for the metrics screen.

Owns: drawing one series. Must not touch: I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Sparkline

from tui.format import DASH


class MetricPanel(Vertical):
    DEFAULT_CSS = """
    MetricPanel { height: auto; min-height: 3; padding: 0 1; }
    MetricPanel > .metric-title { width: 1fr; text-style: bold; }
    MetricPanel > Sparkline { height: 2; }
    """

    def __init__(self, title: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.title = title

    def compose(self) -> ComposeResult:
        yield Label(f"{self.title}: {DASH}", classes="metric-title")
        yield Sparkline([], summary_function=max)

    def show(self, values: Sequence[float], current: str, peak: str | None = None) -> None:
        label = f"{self.title}: {current}"
        if peak is not None:
            label += f"   (peak {peak})"
        self.query_one(".metric-title", Label).update(label)
        self.query_one(Sparkline).data = list(values) or [0.0]

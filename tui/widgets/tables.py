"""`KeyedTable`: a DataTable refreshed from data without losing the cursor or flickering.

Owns: reconciling rows by key (update cells in place; rebuild only when rows come or go).
Must not touch: I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable

from tui.format import clean_cell

Cell = str | Text


def as_text(cell: Cell) -> Text:
    """A cell as plain `Text`: a DataTable reads a `str` cell as Rich markup, so a config value
    or a Procfile command such as `[/x]` crashed the TUI (MarkupError) and `[bold]` restyled
    it; control characters (an escape sequence in a value) are replaced, not drawn."""
    if isinstance(cell, Text):
        return cell
    return Text(clean_cell(cell), end="")


class KeyedTable(DataTable[Cell]):
    """A DataTable whose rows are replaced as a whole by `sync`, keyed by a string."""

    DEFAULT_CSS = """
    KeyedTable { height: auto; max-height: 100%; }
    """

    def __init__(self, columns: Sequence[tuple[str, str]], **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)  # type: ignore[arg-type]
        self._column_spec = list(columns)

    def on_mount(self) -> None:
        for label, key in self._column_spec:
            self.add_column(label, key=key)

    @property
    def selected_key(self) -> str | None:
        """The key of the row under the cursor, or None for an empty table."""
        if not self.row_count:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:  # the cursor points past a row that just went away
            return None
        return str(row_key.value)

    def row_keys(self) -> list[str]:
        return [str(key.value) for key in self.rows]

    def sync(self, rows: Sequence[tuple[str, Sequence[Cell]]]) -> None:
        """Show exactly `rows` (key, cells) in this order, keeping the selection by key.

        A repeated key keeps its first row only (keys must be unique in a DataTable)."""
        unique: dict[str, Sequence[Cell]] = {}
        for key, cells in rows:
            unique.setdefault(key, [as_text(cell) for cell in cells])
        rows = list(unique.items())
        wanted = [key for key, _ in rows]
        if wanted != self.row_keys():
            selected = self.selected_key
            self.clear()
            for key, cells in rows:
                self.add_row(*cells, key=key)
            if selected in wanted:
                self.move_cursor(row=wanted.index(selected), animate=False)
            return
        columns = [key for _, key in self._column_spec]
        for key, cells in rows:
            for column, value in zip(columns, cells, strict=False):
                if self.get_cell(key, column) != value:
                    self.update_cell(key, column, value, update_width=True)

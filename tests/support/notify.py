"""Record the notifications a Textual app shows (TUI tests check what the user was told)."""

from __future__ import annotations

from typing import Any

from textual.app import App


def record_notifications(app: App[Any]) -> list[str]:
    """Every message passed to `app.notify` from now on, in order (still shown as usual)."""
    seen: list[str] = []
    original = app.notify

    def notify(message: str, **kwargs: Any) -> None:
        seen.append(message)
        original(message, **kwargs)

    app.notify = notify  # type: ignore[method-assign]
    return seen

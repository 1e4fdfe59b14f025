"""What `minipaas metrics -a NAME` prints: a pure rendering of the API's metrics JSON
(`GET /api/apps/{app}/metrics`). It does no I/O; the CLI fetches and prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

BARS = "▁▂▃▄▅▆▇█"


def human_bytes(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"  # pragma: no cover - the loop always returns


def _num(value: Any, unit: str = "", digits: int = 1) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value:.{digits}f}{unit}"


def sparkline(values: Sequence[float | None], width: int = 40) -> str:
    """The last `width` values as block characters ("·" where nothing was measured)."""
    tail = list(values)[-width:]
    known = [v for v in tail if v is not None]
    if not known:
        return ""
    top = max(known) or 1.0
    return "".join(
        "·" if v is None else BARS[min(len(BARS) - 1, int(v / top * (len(BARS) - 1) + 0.5))]
        for v in tail
    )


def render_metrics(data: dict[str, Any]) -> str:
    """A readable summary: the app's current numbers, recent trends, then one row per dyno."""
    app = data.get("app", "?")
    current: dict[str, Any] = data.get("current") or {}
    router: list[dict[str, Any]] = data.get("router") or []
    series: dict[str, list[dict[str, Any]]] = data.get("dynos") or {}
    now_dynos: dict[str, dict[str, Any]] = data.get("current_dynos") or {}
    lines = [f"=== {app} metrics"]
    rows = [
        ("Throughput", f"{_num(current.get('rps'), ' req/s', 2)}"),
        (
            "Response time",
            f"p50 {_num(current.get('p50'), ' ms')} · p95 {_num(current.get('p95'), ' ms')} · "
            f"p99 {_num(current.get('p99'), ' ms')}",
        ),
        (
            "Errors",
            f"4xx {_num(current.get('r4xx'), '/s', 2)} · 5xx {_num(current.get('r5xx'), '/s', 2)}",
        ),
        ("CPU", _num(current.get("cpu"), " %")),
        ("Memory", human_bytes(current.get("rss"))),
    ]
    lines += [f"{label:<15}{value}" for label, value in rows]
    if router:
        minutes = len(router) * int(data.get("resolution", 5)) / 60
        lines.append("")
        lines.append(f"Last {minutes:.0f} min:" if minutes >= 1 else "Recent:")
        lines.append(f"{'req/s':<15}{sparkline([p.get('rps') for p in router])}")
        lines.append(f"{'p95':<15}{sparkline([p.get('p95') for p in router])}")
    names = sorted(set(series) | set(now_dynos), key=_dyno_order)
    lines.append("")
    if not names:
        lines.append("No dyno samples yet.")
        return "\n".join(lines) + "\n"
    lines.append(f"{'Dyno':<14}{'CPU':>9}{'Memory':>12}  State")
    for name in names:
        if name in now_dynos:
            point, state = now_dynos[name], "running"
        else:
            point, state = (series.get(name) or [{}])[-1], "gone"
        lines.append(
            f"{name:<14}{_num(point.get('cpu'), ' %'):>9}{human_bytes(point.get('rss')):>12}"
            f"  {state}"
        )
    return "\n".join(lines) + "\n"


def _dyno_order(name: str) -> tuple[str, int]:
    ptype, _, number = name.partition(".")
    return ptype, int(number) if number.isdigit() else 0

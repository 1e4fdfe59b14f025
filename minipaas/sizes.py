"""Dyno sizes: Heroku's names (`standard-2x`) or plain amounts (`512M`, `2G`) → a memory quota.

Pure parsing, plus `host_memory()` (one read of /proc/meminfo, for the upper limit). A size is
kept as the canonical text `parse_size` returns (`standard-2x`, `1536M`); `quota_bytes` turns
it into bytes whenever needed. No size means no quota (the default: an upgrade never starts
killing an app that ran fine before).

Enforcement is the supervisor's (`Supervisor.check_memory`, fed by the metrics sampler):
above the quota `Error R14 (Memory quota exceeded)`; above twice the quota `Error R15 (Memory
quota vastly exceeded)` and the dyno is killed (Heroku kills Eco, Basic and Standard dynos at
200% of their quota).
"""

from __future__ import annotations

import re
from pathlib import Path

from minipaas.errors import UserError

MIB = 2**20
GIB = 2**30

#: Heroku's dyno sizes (Cedar) and their memory quotas, in the binary units Heroku's dynos
#: report (standard-1x: 536870912 bytes; performance-m: 2684354560).
SIZES: dict[str, int] = {
    "eco": 512 * MIB,
    "basic": 512 * MIB,
    "standard-1x": 512 * MIB,
    "standard-2x": 1 * GIB,
    "performance-m": 2560 * MIB,
    "performance-l": 14 * GIB,
    "performance-l-ram": 30 * GIB,
    "performance-xl": 62 * GIB,
    "performance-2xl": 126 * GIB,
}

#: The smallest quota: below it even a shell and a small runtime would be killed on boot.
MIN_QUOTA = 64 * MIB
#: What clears a type's size (back to no quota).
NONE = "none"

_AMOUNT = re.compile(r"([0-9]{1,7}(?:\.[0-9]{1,3})?)\s?([MG])B?", re.IGNORECASE)


def _amount(text: str) -> int | None:
    match = _AMOUNT.fullmatch(text)
    if match is None:
        return None
    number, unit = match.groups()
    return int(float(number) * (GIB if unit.upper() == "G" else MIB))


def quota_bytes(size: str | None) -> int | None:
    """The memory quota of a stored size (None: no size, no quota; or text no longer valid)."""
    if size is None:
        return None
    named = SIZES.get(size.lower())
    return named if named is not None else _amount(size)


def human(amount: int) -> str:
    """`512M`, `1G`, `2.5G` (binary units, as sizes are written)."""
    if amount >= GIB:
        return f"{amount / GIB:.2f}".rstrip("0").rstrip(".") + "G"
    return f"{amount / MIB:.0f}M"


def parse_size(text: str, host_total: int | None) -> str:
    """The canonical form of `text` (a Heroku size name or an amount like `512M`, `2G`), or
    `UserError` naming it: unknown names, amounts under `MIN_QUOTA` or over `host_total`."""
    raw = text.strip()
    shown = raw if len(raw) <= 40 else raw[:40] + "…"
    named = SIZES.get(raw.lower())
    amount = named if named is not None else _amount(raw)
    if amount is None:
        listed = ", ".join(SIZES)
        raise UserError(
            f"Unknown dyno size {shown!r}: use one of {listed}, or an amount of memory such "
            "as 512M or 2G."
        )
    if amount < MIN_QUOTA:
        raise UserError(
            f"The dyno size {shown!r} is too small: a memory quota must be at least "
            f"{human(MIN_QUOTA)}."
        )
    if host_total is not None and amount > host_total:
        raise UserError(
            f"The dyno size {shown!r} ({human(amount)}) is more than this server's memory "
            f"({human(host_total)})."
        )
    if named is not None:
        return raw.lower()
    return f"{amount // GIB}G" if amount % GIB == 0 else f"{amount // MIB}M"


def describe(size: str | None) -> str:
    """`standard-2x (1G)`, `1536M`, or the words for no size."""
    quota = quota_bytes(size)
    if size is None or quota is None:
        return "no quota"
    return size if size[0].isdigit() else f"{size} ({human(quota)})"


def host_memory(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """The host's total memory in bytes (MemTotal), None when it cannot be read."""
    try:
        text = meminfo.read_text()
    except OSError:
        return None
    match = re.search(r"^MemTotal:\s+([0-9]+) kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None

"""The SQLite store: the single source of truth for apps, builds, releases, config and keys.

Nothing outside this package imports sqlite3 or aiosqlite.
"""

from minipaas.store.store import Store

__all__ = ["Store"]

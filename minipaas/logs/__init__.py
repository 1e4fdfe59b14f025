"""Log files per dyno, rotation, merged tail and follow (see `minipaas.logs.logstore`)."""

from minipaas.logs.logstore import LogLine, LogStore, check_names

__all__ = ["LogLine", "LogStore", "check_names"]

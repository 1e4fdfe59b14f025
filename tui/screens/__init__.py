"""The TUI's screens: apps list, one app, its logs, its metrics, help and the modals."""

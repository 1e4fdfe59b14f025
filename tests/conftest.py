"""Shared fixtures: the private sshd (tests/support) and one real minipaas server per module."""

from __future__ import annotations

pytest_plugins = ["tests.support.fixtures"]

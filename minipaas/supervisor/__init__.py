"""Dynos: spawn, health checks, graceful stop, backoff, one-off runs (see `supervisor.py`)."""

from minipaas.supervisor.backoff import BackoffPolicy, Decision, Run, decide
from minipaas.supervisor.dyno import DynoSpec, DynoStatus
from minipaas.supervisor.supervisor import Supervisor

__all__ = ["BackoffPolicy", "Decision", "DynoSpec", "DynoStatus", "Run", "Supervisor", "decide"]

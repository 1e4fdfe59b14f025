"""Dynos: spawn, adopt after a restart, health checks, graceful stop, backoff, one-off runs.

See `supervisor.py` for the state machine and `dyno.py` for the contract types.
"""

from minipaas.supervisor.backoff import BackoffPolicy, Decision, Run, decide
from minipaas.supervisor.dyno import (
    EVENT_KINDS,
    STATES,
    DynoEvent,
    DynoRecord,
    DynoSpec,
    DynoStatus,
    HealthCheck,
)
from minipaas.supervisor.supervisor import Drain, Supervisor, Switch, move_homes

__all__ = [
    "EVENT_KINDS",
    "STATES",
    "BackoffPolicy",
    "Decision",
    "Drain",
    "DynoEvent",
    "DynoRecord",
    "DynoSpec",
    "DynoStatus",
    "HealthCheck",
    "Run",
    "Supervisor",
    "Switch",
    "decide",
    "move_homes",
]

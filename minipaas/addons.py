"""The add-ons minipaas offers, by name: which service a word such as `heroku-redis:mini` means,
and the config var each one sets. A registry, pure data: the deployer, the API and the CLI look
services up here instead of naming one; the services themselves live in `minipaas.postgres` and
`minipaas.redis`.
"""

from __future__ import annotations

from dataclasses import dataclass

from minipaas import postgres, redis
from minipaas.errors import UserError


@dataclass(frozen=True)
class Service:
    """One add-on service: Heroku's name for it, the other names it answers to, the config
    var its URL goes into, and what its data is called in messages."""

    name: str
    aliases: tuple[str, ...]
    config_var: str
    data: str


POSTGRES = Service(postgres.SERVICE, ("postgresql", "postgres"), "DATABASE_URL", "database")
REDIS = Service(redis.SERVICE, ("redis",), "REDIS_URL", "Redis server")
SERVICES: tuple[Service, ...] = (POSTGRES, REDIS)


def offered() -> str:
    """`heroku-postgresql (also called postgresql or postgres) and heroku-redis (…)`."""
    return " and ".join(
        f"{s.name} (also called {' or '.join(s.aliases)})" for s in SERVICES
    )


def service(text: str) -> tuple[Service, str | None]:
    """The service `text` names (`NAME[:PLAN]`, any of its names, any case) and the plan given
    or None; `UserError` naming the value for anything else."""
    name, _, plan = text.strip().partition(":")
    for s in SERVICES:
        if name.lower() in (s.name, *s.aliases):
            return s, (plan or None)
    shown = text if len(text) <= 60 else f"{text[:60]}…"
    raise UserError(f"Unknown add-on {shown!r}: minipaas offers {offered()}.")


def by_name(name: str) -> Service:
    """The service recorded as `name` in the store (`heroku-postgresql`, `heroku-redis`)."""
    for s in SERVICES:
        if s.name == name:
            return s
    raise UserError(f"Unknown add-on service {name!r}.")

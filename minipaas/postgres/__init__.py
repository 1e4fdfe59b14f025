"""The PostgreSQL add-on (`addons:create heroku-postgresql`): minipaas's own cluster and the
apps' databases in it.

`Cluster` owns `<data-dir>/postgres`: it runs `initdb` on first use, starts `postgres` as the
`postgres` system user (as the server's own user without root), adopts one left running by an
earlier minipaas (through `postmaster.pid`), restarts it if it dies and stops it on `down`.
It creates and drops a role and a database per app, gives a role a new password, and
lists and stops the connections to an app's database. It never reads the store or config vars:
the deployer decides which app gets which database and hands out the URL.
"""

from minipaas.postgres.cluster import (
    SERVICE,
    Cluster,
    DatabaseInfo,
    database_name,
    find_bindir,
    scram_verifier,
    service_name,
    stop_orphan,
)

__all__ = [
    "SERVICE",
    "Cluster",
    "DatabaseInfo",
    "database_name",
    "find_bindir",
    "scram_verifier",
    "service_name",
    "stop_orphan",
]

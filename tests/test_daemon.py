"""minipaas.daemon's pure helpers: the port an add-on service gets and the system user it runs
as (the services themselves are tested for real in test_addons and test_redis)."""

from __future__ import annotations

import socket

import pytest

from minipaas.daemon import as_system_user, free_port
from minipaas.errors import UserError
from tests.support.ports import free_port as some_free_port


def test_free_port_skips_taken_and_listened_on_ports() -> None:
    port = some_free_port()
    assert free_port(range(port, port + 1), "Redis") == port
    with pytest.raises(UserError) as caught:
        free_port(range(port, port + 1), "Redis", taken={port})
    assert str(caught.value) == f"No free port in {port}-{port} for Redis."
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        with pytest.raises(UserError) as caught:
            free_port(range(port, port + 1), "PostgreSQL")
    assert str(caught.value) == f"No free port in {port}-{port} for PostgreSQL."


def test_a_missing_system_user_says_which_package_creates_it() -> None:
    with pytest.raises(UserError) as caught:
        as_system_user("no-such-user-mp", "Redis", "redis-server")
    assert str(caught.value) == (
        "The system user 'no-such-user-mp' does not exist: install Redis with "
        "`apt-get install redis-server`, which creates it."
    )
    entry = as_system_user("root", "Redis", "redis-server")
    assert entry == {"user": 0, "group": 0, "extra_groups": []}

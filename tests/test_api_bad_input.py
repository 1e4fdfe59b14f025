"""Bad input to the HTTP API of a real server, over TCP with a token: never a 5xx.

Every route that takes input gets malformed bodies, wrong field types, huge and odd strings,
invalid or unknown app names in the path and bad query values. Each answer must be a 4xx whose
JSON body holds one line of `error` that names the bad value (a prefix of it when it is huge).
At the end the server still works and its log holds no traceback. Nothing is pushed: the one
app, `fuzz`, never gets a release, so the routes that need one stop at that and say so.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.paas import Paas
from tests.support.sshd import SSHServer

APP = "fuzz"
HUGE = "a" * 100_000
#: Long for a URL: uvicorn (h11) itself refuses a request head over 16 kB, before the API.
LONG = "a" * 8_000
A = f"/api/apps/{APP}"


@pytest.fixture(scope="module")
def api(env: tuple[Paas, SSHServer]) -> Iterator[httpx.Client]:
    """An API client with the admin token, and the app `fuzz` created."""
    paas, _ = env
    token = paas.cli("auth:token").stdout.strip()
    paas.cli("apps:create", APP)
    with httpx.Client(
        base_url=f"http://127.0.0.1:{paas.api_port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ) as client:
        yield client


@pytest.fixture(scope="module")
def raw(env: tuple[Paas, SSHServer]) -> Iterator[httpx.Client]:
    """An API client without credentials."""
    paas, _ = env
    with httpx.Client(base_url=f"http://127.0.0.1:{paas.api_port}", timeout=30) as client:
        yield client


def assert_error(response: httpx.Response, status: int, fragment: str | None = None) -> str:
    """`status`, a JSON body, and one line of `error` that contains `fragment`."""
    where = f"{response.request.method} {response.request.url.raw_path.decode()[:120]}"
    shown = response.text[:300]
    assert response.status_code == status, f"{where}: {response.status_code} {shown}"
    assert response.headers.get("content-type", "").startswith("application/json"), (
        f"{where}: {response.headers.get('content-type')} {shown}"
    )
    body = response.json()
    assert isinstance(body, dict), f"{where}: {shown}"
    error = body.get("error")
    assert isinstance(error, str) and error.strip(), f"{where}: {shown}"
    assert "\n" not in error and "\r" not in error, f"{where}: {error!r}"
    assert "Traceback" not in error, f"{where}: {error[:300]}"
    assert error.rstrip("`").endswith("."), f"{where}: not a sentence: {error[:300]!r}"
    if fragment is not None:
        assert fragment in error, f"{where}: {fragment!r} not in {error[:300]!r}"
    return error


def send(
    client: httpx.Client, method: str, path: str, body: Any = None, **kw: Any
) -> httpx.Response:
    """`body` as JSON, or as is when it is bytes (with `kw` headers)."""
    if isinstance(body, bytes):
        return client.request(method, path, content=body, **kw)
    if body is None:
        return client.request(method, path, **kw)
    return client.request(method, path, json=body, **kw)


# -- app names in the path -----------------------------------------------------------------

#: (path segment as sent, what the error must contain, status)
BAD_NAMES = [
    ("Fuzz", "'Fuzz'", 400),
    ("%2E%2E", "'..'", 400),
    ("a" * 200, "'aaaaaaaaaa", 400),
    (LONG, "'aaaaaaaaaa", 400),
    ("%00", r"'\x00'", 400),
    ("a%0Ab", r"'a\nb'", 400),
    ("%C3%BCn%C3%AF", "'ünï'", 400),
    ("a_b", "'a_b'", 400),
    ("-a", "'-a'", 400),
    ("minipaas", "'minipaas'", 400),
    ("ghost", "'ghost'", 404),
]

#: Every route with an app in its path: (method, path after the app, a body valid for it).
APP_ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "", None),
    ("DELETE", "", None),
    ("GET", "/config", None),
    ("PATCH", "/config", {"K": "v"}),
    ("GET", "/dynos", None),
    ("PATCH", "/formation", {"web": 1}),
    ("PATCH", "/sizes", {"web": "1G"}),
    ("POST", "/restart", {}),
    ("GET", "/logs", None),
    ("GET", "/releases", None),
    ("GET", "/releases/v1", None),
    ("POST", "/deploy", {"sha": "0" * 40}),
    ("POST", "/rollback", {}),
    ("POST", "/ps/stop", {"type": "web"}),
    ("POST", "/ps/start", {"type": "web"}),
    ("GET", "/checks", None),
    ("PUT", "/checks", {"path": "/health"}),
    ("DELETE", "/checks", None),
    ("POST", "/run", {"command": "true"}),
    ("GET", "/domains", None),
    ("GET", "/certs", None),
    ("POST", "/domains", {"hostname": "fuzz.example.com"}),
    ("DELETE", "/domains/fuzz.example.com", None),
    ("PUT", "/maintenance", {"on": True}),
    ("GET", "/metrics", None),
    ("GET", "/addons", None),
    ("POST", "/addons", {"service": "heroku-postgresql"}),
    ("DELETE", "/addons/heroku-postgresql?confirm=x", None),
    ("GET", "/addons/heroku-postgresql/info", None),
    ("GET", "/addons/heroku-redis/info", None),
    ("PUT", "/addons/heroku-redis/maxmemory", {"policy": "allkeys-lru"}),
    ("GET", "/buildpacks", None),
    ("POST", "/buildpacks", {"url": "heroku/python"}),
    ("PUT", "/buildpacks", {"buildpacks": []}),
    ("DELETE", "/buildpacks", {"url": "heroku/python"}),
    ("PUT", "/buildpacks/1", {"url": "heroku/python"}),
    ("POST", "/addons/heroku-postgresql/reset?confirm=x", None),
    ("GET", "/backups", None),
    ("POST", "/backups", None),
    ("GET", "/backups/schedule", None),
    ("PUT", "/backups/schedule", {"at": "02:00"}),
    ("DELETE", "/backups/schedule", None),
    ("GET", "/backups/latest/download", None),
    ("GET", "/backups/b001/download", None),
    ("POST", "/backups/b001/restore?confirm=x", None),
    ("DELETE", "/backups/b001?confirm=x", None),
    ("POST", "/backups/upload?confirm=x", b"PGDMP"),
]


@pytest.mark.parametrize(("segment", "fragment", "status"), BAD_NAMES, ids=lambda v: str(v)[:12])
@pytest.mark.parametrize(("method", "suffix", "body"), APP_ROUTES, ids=str)
def test_bad_app_name_in_path(
    api: httpx.Client,
    method: str,
    suffix: str,
    body: Any,
    segment: str,
    fragment: str,
    status: int,
) -> None:
    # `confirm` matches the unknown app, so DELETE gets as far as looking it up.
    params = {"confirm": "ghost"} if method == "DELETE" and not suffix else None
    response = send(api, method, f"/api/apps/{segment}{suffix}", body, params=params)
    assert_error(response, status, fragment)


# -- malformed bodies ----------------------------------------------------------------------

BODY_ROUTES = [
    ("POST", "/api/apps"),
    ("PATCH", f"{A}/config"),
    ("PATCH", f"{A}/formation"),
    ("PATCH", f"{A}/sizes"),
    ("POST", f"{A}/restart"),
    ("POST", f"{A}/deploy"),
    ("POST", f"{A}/rollback"),
    ("POST", f"{A}/ps/stop"),
    ("POST", f"{A}/ps/start"),
    ("PUT", f"{A}/checks"),
    ("POST", f"{A}/run"),
    ("POST", f"{A}/domains"),
    ("PUT", f"{A}/maintenance"),
    ("POST", f"{A}/addons"),
    ("POST", f"{A}/buildpacks"),
    ("PUT", f"{A}/buildpacks"),
    ("PUT", f"{A}/buildpacks/1"),
    ("DELETE", f"{A}/buildpacks"),
    ("PUT", f"{A}/backups/schedule"),
    ("PUT", f"{A}/addons/heroku-redis/maxmemory"),
    ("POST", "/api/keys"),
]

#: (raw body, Content-Type, what the error must contain)
BAD_BODIES = [
    (b"{", "application/json", "not valid JSON"),
    (b"{'name': 1}", "application/json", "not valid JSON"),
    (b'{"name": "x",}', "application/json", "not valid JSON"),
    (b"\xff\xfe\xfd garbage", "application/json", "not valid JSON"),
    (b"name=x&type=web", "application/x-www-form-urlencoded", "not valid JSON"),
    (b"[]", "application/json", "not a list"),
    (b'["name", "x"]', "application/json", "a list"),
    (b'"name"', "application/json", 'not "name"'),
    (b"5", "application/json", "not 5"),
    (b"null", "application/json", "not null"),
    (b"true", "application/json", "not true"),
    (b"[" * 100_000, "application/json", "nested too deeply"),
    (b'{"name": ' + b"[" * 900 + b"]" * 900 + b"}", "application/json", "nested too deeply"),
    (b'{"n": ' + b"9" * 5000 + b"}", "application/json", "9999999999"),
    (b'{"x": "\\ud800"}', "application/json", r"\ud800"),
    (b'{"x": "\\udfff\\ud800"}', "text/plain", r"\udfff"),
]


@pytest.mark.parametrize(
    ("content", "content_type", "fragment"), BAD_BODIES, ids=lambda v: str(v)[:16]
)
@pytest.mark.parametrize(("method", "path"), BODY_ROUTES, ids=str)
def test_malformed_body(
    api: httpx.Client, method: str, path: str, content: bytes, content_type: str, fragment: str
) -> None:
    response = api.request(method, path, content=content, headers={"Content-Type": content_type})
    assert_error(response, 400, fragment)


# -- fields of the wrong type, missing, huge or odd ----------------------------------------

#: A well-formed ed25519 public key (all-zero key bytes) that nobody has added.
KEY = "ssh-ed25519 {} t@x".format(
    base64.b64encode(b"\0\0\0\x0bssh-ed25519\0\0\0\x20" + bytes(32)).decode()
)

#: (method, path, body (JSON, or raw bytes), status, what the error must contain)
BAD_FIELDS: list[tuple[str, str, Any, int, str | None]] = [
    # apps:create
    ("POST", "/api/apps", {}, 400, "''"),
    ("POST", "/api/apps", b"", 400, "''"),
    ("POST", "/api/apps", {"name": 5}, 400, "'name' must be a string, not 5."),
    ("POST", "/api/apps", {"name": None}, 400, "not null."),
    ("POST", "/api/apps", {"name": ["fuzz"]}, 400, 'not ["fuzz"].'),
    ("POST", "/api/apps", {"name": {"a": 1}}, 400, 'not {"a": 1}.'),
    ("POST", "/api/apps", {"name": "Fuzz"}, 400, "'Fuzz'"),
    ("POST", "/api/apps", {"name": "a" * 31}, 400, "'" + "a" * 31 + "'"),
    ("POST", "/api/apps", {"name": HUGE}, 400, "'" + "a" * 50),
    ("POST", "/api/apps", {"name": "a\nb"}, 400, r"'a\nb'"),
    ("POST", "/api/apps", {"name": "a\x00"}, 400, r"'a\x00'"),
    ("POST", "/api/apps", {"name": "a\x1b[31m"}, 400, r"'a\x1b[31m'"),
    ("POST", "/api/apps", {"name": "ünï"}, 400, "'ünï'"),
    ("POST", "/api/apps", {"name": "../etc"}, 400, "'../etc'"),
    ("POST", "/api/apps", {"name": "www"}, 400, "'www'"),
    ("POST", "/api/apps", {"name": APP}, 409, f"'{APP}'"),
    # config:set / config:unset
    ("PATCH", f"{A}/config", {}, 400, "No config vars"),
    ("PATCH", f"{A}/config", b"", 400, "No config vars"),
    ("PATCH", f"{A}/config", {"1BAD": "x"}, 400, "'1BAD'"),
    ("PATCH", f"{A}/config", {"": "x"}, 400, "''"),
    ("PATCH", f"{A}/config", {"A-B": "x"}, 400, "'A-B'"),
    ("PATCH", f"{A}/config", {"K\x00": "x"}, 400, r"'K\x00'"),
    ("PATCH", f"{A}/config", {"K": 5}, 400, "'K'"),
    ("PATCH", f"{A}/config", {"K": True}, 400, "True"),
    ("PATCH", f"{A}/config", {"K": ["x"]}, 400, "'K'"),
    ("PATCH", f"{A}/config", {"K": {"a": "b"}}, 400, "'K'"),
    ("PATCH", f"{A}/config", {"K": "a\x00b"}, 400, "'K'"),
    # ps:scale
    ("PATCH", f"{A}/formation", {}, 400, "No process types"),
    ("PATCH", f"{A}/formation", {"web": "2"}, 400, "'2'"),
    ("PATCH", f"{A}/formation", {"web": 1.5}, 400, "1.5"),
    ("PATCH", f"{A}/formation", {"web": True}, 400, "True"),
    ("PATCH", f"{A}/formation", {"web": None}, 400, "None"),
    ("PATCH", f"{A}/formation", {"web": [1]}, 400, "[1]"),
    ("PATCH", f"{A}/formation", {"web": -1}, 400, "'web'"),
    ("PATCH", f"{A}/formation", {"web": 10**30}, 400, "'web'"),
    ("PATCH", f"{A}/formation", {"bad type!": 1}, 400, "'bad type!'"),
    ("PATCH", f"{A}/formation", {"": 1}, 400, "''"),
    ("PATCH", f"{A}/formation", {HUGE: 1}, 400, "'" + "a" * 50),
    # ps:type (`fuzz` has no release: no process types to size)
    ("PATCH", f"{A}/sizes", {}, 400, "No process types"),
    ("PATCH", f"{A}/sizes", {"web": 5}, 400, "must be a string such as standard-2x"),
    ("PATCH", f"{A}/sizes", {"web": True}, 400, "not true."),
    ("PATCH", f"{A}/sizes", {"web": [1] * 10_000}, 400, "not [1, 1"),
    ("PATCH", f"{A}/sizes", {"web": "1G"}, 400, "No process type 'web' in 'fuzz'"),
    ("PATCH", f"{A}/sizes", {"bad type!": "1G"}, 400, "'bad type!'"),
    ("PATCH", f"{A}/sizes", {HUGE: "1G"}, 400, "'" + "a" * 50),
    # ps:restart
    ("POST", f"{A}/restart", {}, 404, f"'{APP}'"),
    ("POST", f"{A}/restart", {"type": ""}, 400, "''"),
    ("POST", f"{A}/restart", {"type": "bad type!"}, 400, "'bad type!'"),
    ("POST", f"{A}/restart", {"type": {"a": 1}}, 400, 'not {"a": 1}.'),
    ("POST", f"{A}/restart", {"type": "web\n"}, 400, r"'web\n'"),
    ("POST", f"{A}/restart", {"type": "web"}, 404, "web"),
    ("POST", f"{A}/restart", {"type": 5}, 400, "'type' must be a string, not 5."),
    ("POST", f"{A}/restart", {"type": "web.1"}, 404, "no dyno web.1 to restart"),
    ("POST", f"{A}/restart", {"type": "web.0"}, 400, "'web.0'"),
    ("POST", f"{A}/restart", {"type": "web.1.2"}, 400, "'web.1.2'"),
    ("POST", f"{A}/restart", {"type": "." * 5000}, 400, "'" + "." * 50),
    # deploy (what a push asks for): the sha is checked before anything streams
    ("POST", f"{A}/deploy", {}, 400, "''"),
    ("POST", f"{A}/deploy", {"sha": "abc"}, 400, "'abc'"),
    ("POST", f"{A}/deploy", {"sha": "A" * 40}, 400, "'" + "A" * 40 + "'"),
    ("POST", f"{A}/deploy", {"sha": "g" * 40}, 400, "'" + "g" * 40 + "'"),
    ("POST", f"{A}/deploy", {"sha": 5}, 400, "'sha' must be a string, not 5."),
    ("POST", f"{A}/deploy", {"sha": ["0" * 40]}, 400, "0000"),
    ("POST", f"{A}/deploy", {"sha": HUGE}, 400, "'" + "a" * 50),
    # a push's branch and the commit it saw (the deploy moves the branch once live)
    ("POST", f"{A}/deploy", {"sha": "0" * 40, "ref": "refs/heads/dev"}, 400, "'refs/heads/dev'"),
    ("POST", f"{A}/deploy", {"sha": "0" * 40, "ref": 5}, 400, "'ref' must be a string, not 5."),
    ("POST", f"{A}/deploy", {"sha": "0" * 40, "ref": "refs/heads/main", "old": "x"}, 400, "'x'"),
    ("POST", f"{A}/deploy", {"sha": "0" * 39 + "\x00"}, 400, r"\x00"),
    # rollback
    ("POST", f"{A}/rollback", {}, 400, f"'{APP}'"),
    ("POST", f"{A}/rollback", {"version": "vx"}, 400, "'vx'"),
    ("POST", f"{A}/rollback", {"version": "v"}, 400, "'v'"),
    ("POST", f"{A}/rollback", {"version": "v-1"}, 400, "'v-1'"),
    ("POST", f"{A}/rollback", {"version": 1.5}, 400, "1.5"),
    ("POST", f"{A}/rollback", {"version": True}, 400, "True"),
    ("POST", f"{A}/rollback", {"version": [1]}, 400, "[1]"),
    ("POST", f"{A}/rollback", {"version": {"v": 1}}, 400, "'v'"),
    ("POST", f"{A}/rollback", {"version": "v²"}, 400, "'v²'"),
    ("POST", f"{A}/rollback", {"version": "v" + "9" * 30}, 400, "9" * 30),
    ("POST", f"{A}/rollback", {"version": 10**30}, 400, "1000000000"),
    ("POST", f"{A}/rollback", {"version": -1}, 400, "-1"),
    ("POST", f"{A}/rollback", {"version": HUGE}, 400, "'" + "a" * 50),
    # ps:stop / ps:start
    ("POST", f"{A}/ps/stop", {}, 400, "''"),
    ("POST", f"{A}/ps/stop", {"type": "bad type!"}, 400, "'bad type!'"),
    ("POST", f"{A}/ps/stop", {"type": 5}, 400, "'type' must be a string, not 5."),
    ("POST", f"{A}/ps/stop", {"type": "web"}, 400, "'web'"),
    ("POST", f"{A}/ps/start", {"type": HUGE}, 400, "'" + "a" * 50),
    ("POST", f"{A}/ps/start", {"type": "web"}, 400, "'web'"),
    ("POST", f"{A}/ps/frobnicate", {"type": "web"}, 404, "/ps/frobnicate"),
    ("POST", f"{A}/ps/frobnicate", {}, 404, "/ps/frobnicate"),
    ("POST", f"{A}/ps/", {"type": "web"}, 404, "/ps/"),
    # checks:set
    ("PUT", f"{A}/checks", {"bogus": 1}, 400, "'bogus'"),
    ("PUT", f"{A}/checks", {"path": "health"}, 400, "'health'"),
    ("PUT", f"{A}/checks", {"path": "/a b"}, 400, "'/a b'"),
    ("PUT", f"{A}/checks", {"path": "/a\x00b"}, 400, r"'/a\x00b'"),
    ("PUT", f"{A}/checks", {"path": "/a\x7fb"}, 400, r"'/a\x7fb'"),
    ("PUT", f"{A}/checks", {"path": "/" + HUGE}, 400, "'/" + "a" * 50),
    ("PUT", f"{A}/checks", {"path": 5}, 400, "'5'"),
    ("PUT", f"{A}/checks", {"expect": "ok"}, 400, "`expect`"),
    ("PUT", f"{A}/checks", {"min_uptime": "soon"}, 400, "'soon'"),
    ("PUT", f"{A}/checks", {"min_uptime": -1}, 400, "-1"),
    ("PUT", f"{A}/checks", {"min_uptime": 1e9}, 400, "1000000000.0"),
    ("PUT", f"{A}/checks", {"min_uptime": [1]}, 400, "[1]"),
    ("PUT", f"{A}/checks", {"min_uptime": {"s": 1}}, 400, "'s'"),
    ("PUT", f"{A}/checks", {"timeout": 0}, 400, "0"),
    ("PUT", f"{A}/checks", {"timeout": "1e999"}, 400, "'1e999'"),
    ("PUT", f"{A}/checks", {"timeout": "nan"}, 400, "'nan'"),
    ("PUT", f"{A}/checks", b'{"timeout": NaN}', 400, "nan"),
    ("PUT", f"{A}/checks", b'{"min_uptime": Infinity}', 400, "inf"),
    ("PUT", f"{A}/checks", {HUGE: 1}, 400, "'" + "a" * 50),
    # run
    ("POST", f"{A}/run", {}, 400, "No command given"),
    ("POST", f"{A}/run", {"command": ""}, 400, "No command given"),
    ("POST", f"{A}/run", {"command": " \n\t"}, 400, "No command given"),
    ("POST", f"{A}/run", {"command": 5}, 400, "No command given"),
    ("POST", f"{A}/run", {"command": ["ls"]}, 400, "No command given"),
    ("POST", f"{A}/run", {"command": "ls\x00-la"}, 400, r"'ls\x00-la'"),
    ("POST", f"{A}/run", {"command": "true"}, 400, f"'{APP}'"),
    ("POST", f"{A}/run", {"command": "true", "detached": "yes"}, 400, "not \"yes\""),
    ("POST", f"{A}/run", {"command": "true", "bare": 1}, 400, "'bare' must be true or false"),
    ("POST", f"{A}/run", {"command": "true", "detached": 1}, 400, "true or false, not 1."),
    ("POST", f"{A}/run", {"command": "true", "detached": True}, 400, f"'{APP}'"),
    # addons:create (the app has no add-on: destroy and info say so)
    ("POST", f"{A}/addons", {}, 400, "Unknown add-on ''"),
    ("POST", f"{A}/addons", {"service": ["pg"]}, 400, '["pg"]'),
    ("POST", f"{A}/addons", {"service": "heroku-kafka"}, 400, "'heroku-kafka'"),
    ("POST", f"{A}/addons", {"service": "pg\x00"}, 400, r"'pg\x00'"),
    ("POST", f"{A}/addons", {"service": None}, 400,
     "The field 'service' must be a string, not null."),
    ("POST", f"{A}/addons", {"service": "memcached"}, 400, "Unknown add-on 'memcached'"),
    ("POST", f"{A}/addons", {"service": "redis-ha"}, 400,
     "Unknown add-on 'redis-ha': minipaas offers heroku-postgresql (also called postgresql or "
     "postgres) and heroku-redis (also called redis)."),
    # redis:maxmemory (the app has no add-on: a good policy gets as far as saying so)
    ("PUT", f"{A}/addons/heroku-redis/maxmemory", {}, 400, "Unknown maxmemory policy ''"),
    ("PUT", f"{A}/addons/heroku-redis/maxmemory", {"policy": None}, 400,
     "The field 'policy' must be a string, not null."),
    ("PUT", f"{A}/addons/heroku-redis/maxmemory", {"policy": ["lru"]}, 400, '["lru"]'),
    ("PUT", f"{A}/addons/heroku-redis/maxmemory", {"policy": "lru"}, 400,
     "Unknown maxmemory policy 'lru': choose one of noeviction, allkeys-lfu, volatile-lfu, "
     "allkeys-lru, volatile-lru, allkeys-random, volatile-random, volatile-ttl."),
    ("PUT", f"{A}/addons/heroku-redis/maxmemory", {"policy": "lru\x00"}, 400, r"'lru\x00'"),
    ("PUT", f"{A}/addons/heroku-redis/maxmemory", {"policy": "x" * 5000}, 400, "'" + "x" * 60),
    ("PUT", f"{A}/addons/redis/maxmemory", {"policy": "allkeys-lru"}, 404,
     "no heroku-redis add-on"),
    ("PUT", f"{A}/addons/heroku-postgresql/maxmemory", {"policy": "allkeys-lru"}, 400,
     "Only a heroku-redis add-on has a maxmemory policy."),
    ("PUT", f"{A}/addons/mysql/maxmemory", {"policy": "allkeys-lru"}, 400,
     "Unknown add-on 'mysql'"),
    # drains:add / drains:remove
    ("POST", f"{A}/drains", {}, 400, "No drain URL given"),
    ("POST", f"{A}/drains", {"url": ["x"]}, 400, '["x"]'),
    ("POST", f"{A}/drains", {"url": "http://x.example/"}, 400, "'http://x.example/'"),
    ("POST", f"{A}/drains", {"url": "syslog://x.example"}, 400, "needs a port"),
    ("POST", f"{A}/drains", {"url": None}, 400, "The field 'url' must be a string, not null."),
    ("POST", f"{A}/drains", {"url": "gopher://x:70"}, 400, "must start with syslog://"),
    ("DELETE", f"{A}/drains", {"drain": 5}, 400, "must be a string"),
    ("DELETE", f"{A}/drains", {}, 400, "No drain given"),
    ("DELETE", f"{A}/drains", {"drain": None}, 400, "not null"),
    ("DELETE", f"{A}/drains", {"drain": "d.x"}, 404, "'d.x'"),
    # buildpacks:add / buildpacks:set / buildpacks:remove / buildpacks:clear (`fuzz` has none)
    ("POST", f"{A}/buildpacks", {}, 400, "No buildpack given: name a built-in one (heroku/"),
    ("POST", f"{A}/buildpacks", {"url": 5}, 400, "The field 'url' must be a string, not 5."),
    ("POST", f"{A}/buildpacks", {"url": None}, 400, "not null."),
    ("POST", f"{A}/buildpacks", {"url": "heroku/ruby"}, 400, "Unknown buildpack 'heroku/ruby'"),
    ("POST", f"{A}/buildpacks", {"url": "ruby"}, 400, "'ruby' is neither a directory path"),
    ("POST", f"{A}/buildpacks", {"url": "https://h/b.git#--upload-pack=/x"}, 400,
     "names the ref '--upload-pack=/x', which is not a branch, tag or commit"),
    ("POST", f"{A}/buildpacks", {"url": "ssh://h/b.git"}, 400, "uses ssh://"),
    ("POST", f"{A}/buildpacks", {"url": "/bp\x00"}, 400, r"'/bp\x00' holds a control character"),
    ("POST", f"{A}/buildpacks", {"url": "/" + HUGE}, 400, "'/" + "a" * 50),
    ("POST", f"{A}/buildpacks", {"url": "heroku/python", "index": 0}, 400,
     "Invalid buildpack index '0'"),
    ("POST", f"{A}/buildpacks", {"url": "heroku/python", "index": True}, 400, "'true'"),
    ("POST", f"{A}/buildpacks", {"url": "heroku/python", "index": 1.5}, 400, "'1.5'"),
    ("POST", f"{A}/buildpacks", {"url": "heroku/python", "index": [1]}, 400, "'[1]'"),
    ("POST", f"{A}/buildpacks", {"url": "heroku/python", "index": 10**30}, 400, "1000000000"),
    ("POST", f"{A}/buildpacks", {"url": "heroku/python", "index": 2}, 400,
     "Invalid index 2: 'fuzz' has 0 buildpacks; use 1."),
    ("PUT", f"{A}/buildpacks", {}, 400, "'buildpacks' must be a list of URL strings, not null."),
    ("PUT", f"{A}/buildpacks", {"buildpacks": "heroku/python"}, 400, 'not "heroku/python".'),
    ("PUT", f"{A}/buildpacks", {"buildpacks": [1]}, 400, "not [1]."),
    ("PUT", f"{A}/buildpacks", {"buildpacks": ["heroku/python", "python"]}, 409,
     "The buildpack 'python' is already set on 'fuzz' (number 1)."),
    ("PUT", f"{A}/buildpacks", {"buildpacks": [f"/bp{n}" for n in range(11)]}, 400,
     "11 buildpacks are too many: an app may have at most 10."),
    ("PUT", f"{A}/buildpacks", {"buildpacks": ["heroku/x"]}, 400, "'heroku/x'"),
    ("PUT", f"{A}/buildpacks/1", {}, 400, "No buildpack given"),
    ("PUT", f"{A}/buildpacks/1", {"url": "heroku/x"}, 400, "'heroku/x'"),
    ("PUT", f"{A}/buildpacks/0", {"url": "heroku/python"}, 400, "Invalid buildpack index '0'"),
    ("PUT", f"{A}/buildpacks/-1", {"url": "heroku/python"}, 400, "'-1'"),
    ("PUT", f"{A}/buildpacks/x", {"url": "heroku/python"}, 400, "'x'"),
    ("PUT", f"{A}/buildpacks/%C2%B2", {"url": "heroku/python"}, 400, "'²'"),
    ("PUT", f"{A}/buildpacks/" + "9" * 30, {"url": "heroku/python"}, 400, "9" * 30),
    ("PUT", f"{A}/buildpacks/2", {"url": "heroku/python"}, 400, "Invalid index 2: 'fuzz'"),
    ("DELETE", f"{A}/buildpacks", {}, 400, "No buildpack given: name the one to remove"),
    ("DELETE", f"{A}/buildpacks", {"url": 5}, 400, "'url' must be a string, not 5."),
    ("DELETE", f"{A}/buildpacks", {"url": "heroku/python"}, 404,
     "'fuzz' has no buildpack 'heroku/python'; nothing was removed"),
    ("DELETE", f"{A}/buildpacks", {"index": 1}, 400, "Invalid index 1: 'fuzz' has no buildpacks."),
    ("DELETE", f"{A}/buildpacks", {"index": "one"}, 400, "'one'"),
    ("DELETE", f"{A}/buildpacks", {"url": "/a", "index": 1}, 400, "not both"),
    # domains:add
    ("POST", f"{A}/domains", {}, 400, "''"),
    ("POST", f"{A}/domains", {"hostname": "bad host"}, 400, "'bad host'"),
    ("POST", f"{A}/domains", {"hostname": "-a.example.com"}, 400, "'-a.example.com'"),
    ("POST", f"{A}/domains", {"hostname": "a..example.com"}, 400, "'a..example.com'"),
    ("POST", f"{A}/domains", {"hostname": "ünï.example.com"}, 400, "'ünï.example.com'"),
    ("POST", f"{A}/domains", {"hostname": "a\x00.example.com"}, 400, r"'a\x00.example.com'"),
    ("POST", f"{A}/domains", {"hostname": "a" * 64 + ".com"}, 400, "'" + "a" * 64),
    ("POST", f"{A}/domains", {"hostname": HUGE}, 400, "'" + "a" * 50),
    ("POST", f"{A}/domains", {"hostname": ["a.com"]}, 400, "a.com"),
    # null is no hostname: str(None) once added a domain named "none"
    ("POST", f"{A}/domains", {"hostname": None}, 400, "'hostname' must be a string, not null."),
    ("POST", f"{A}/domains", {"hostname": 5}, 400, "'hostname' must be a string, not 5."),
    ("POST", f"{A}/domains", {"hostname": "minipaas.localhost"}, 400, "'minipaas.localhost'"),
    ("POST", f"{A}/domains", {"hostname": "127.0.0.1"}, 400, "'127.0.0.1': it is not a DNS name"),
    ("POST", f"{A}/domains", {"hostname": "x.localhost"}, 400, "'x.localhost'"),
    # maintenance:on / off
    ("PUT", f"{A}/maintenance", {}, 400, '{"on": true}'),
    ("PUT", f"{A}/maintenance", {"on": "yes"}, 400, '"yes"'),
    ("PUT", f"{A}/maintenance", {"on": 1}, 400, "1"),
    ("PUT", f"{A}/maintenance", {"on": None}, 400, "null"),
    ("PUT", f"{A}/maintenance", {"on": [True]}, 400, "[true]"),
    # keys:add
    ("POST", "/api/keys", {}, 400, "''"),
    ("POST", "/api/keys", {"name": "a b", "public_key": KEY}, 400, "'a b'"),
    ("POST", "/api/keys", {"name": "a/../b", "public_key": KEY}, 400, "'a/../b'"),
    ("POST", "/api/keys", {"name": "k\x00", "public_key": KEY}, 400, r"'k\x00'"),
    ("POST", "/api/keys", {"name": HUGE, "public_key": KEY}, 400, "'" + "a" * 50),
    ("POST", "/api/keys", {"name": "k"}, 400, "one public key line"),
    ("POST", "/api/keys", {"name": "k", "public_key": ""}, 400, "one public key line"),
    ("POST", "/api/keys", {"name": None, "public_key": KEY}, 400, "'name' must be a string"),
    ("POST", "/api/keys", {"name": 7, "public_key": KEY}, 400, "'name' must be a string, not 7."),
    ("POST", "/api/keys", {"name": "k", "public_key": 5}, 400, "'public_key' must be a string"),
    ("POST", "/api/keys", {"name": "k", "public_key": "hello"}, 400, "'hello'"),
    ("POST", "/api/keys", {"name": "k", "public_key": "ssh-ed25519 !!"}, 400, "'ssh-ed25519 !!'"),
    ("POST", "/api/keys", {"name": "k", "public_key": "ssh-rsa " + KEY[12:]}, 400, "ssh-rsa"),
    # pg:backups:schedule (the time is checked before the app's add-on)
    ("PUT", f"{A}/backups/schedule", {}, 400, "Invalid time ''"),
    ("PUT", f"{A}/backups/schedule", {"at": "24:00"}, 400, "'24:00'"),
    ("PUT", f"{A}/backups/schedule", {"at": 2}, 400, "'at' must be a string, not 2."),
    ("PUT", f"{A}/backups/schedule", {"at": None}, 400, "not null."),
    ("PUT", f"{A}/backups/schedule", {"at": HUGE}, 400, "'" + "a" * 30),
    ("PUT", f"{A}/backups/schedule", {"at": "02:00\x00"}, 400, r"'02:00\x00'"),
    ("PUT", f"{A}/backups/schedule", {"at": "02:00"}, 404, "no heroku-postgresql"),
    ("POST", "/api/keys", {"name": "k", "public_key": f"{KEY}\n{KEY}"}, 400, "one public key"),
    ("POST", "/api/keys", {"name": "k", "public_key": HUGE}, 400, "'" + "a" * 30),
    ("POST", "/api/keys", {"name": "k", "public_key": "ssh-ed25519 " + HUGE}, 400, "ssh-ed25519"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "fragment"), BAD_FIELDS, ids=lambda v: repr(v)[:30]
)
def test_bad_field(
    api: httpx.Client, method: str, path: str, body: Any, status: int, fragment: str | None
) -> None:
    assert_error(send(api, method, path, body), status, fragment)


def test_keys_already_added(env: tuple[Paas, SSHServer], api: httpx.Client) -> None:
    _, sshd = env
    key = sshd.client_key.with_suffix(".pub").read_text()
    response = api.post("/api/keys", json={"name": "tester", "public_key": KEY})
    assert_error(response, 409, "'tester'")
    response = api.post("/api/keys", json={"name": "again", "public_key": key})
    assert_error(response, 409, "'tester'")


# -- path values other than the app, and query values --------------------------------------

#: (method, path, query, status, what the error must contain)
BAD_PATHS_AND_QUERIES: list[tuple[str, str, dict[str, str] | None, int, str]] = [
    # logs
    ("GET", f"{A}/logs", {"n": "-1"}, 400, "-1"),
    ("GET", f"{A}/logs", {"n": "100001"}, 400, "100001"),
    ("GET", f"{A}/logs", {"n": "9" * 30}, 400, "9" * 30),
    ("GET", f"{A}/logs", {"n": "9" * 5000}, 400, "9" * 50),
    ("GET", f"{A}/logs", {"n": "abc"}, 400, "'abc'"),
    ("GET", f"{A}/logs", {"n": "1.5"}, 400, "'1.5'"),
    ("GET", f"{A}/logs", {"n": "1e3"}, 400, "'1e3'"),
    ("GET", f"{A}/logs", {"n": ""}, 400, "''"),
    ("GET", f"{A}/logs", {"n": "²"}, 400, "'²'"),
    ("GET", f"{A}/logs", {"n": "\x00"}, 400, r"'\x00'"),
    ("GET", f"{A}/logs", {"n": "-1", "tail": "1"}, 400, "-1"),
    ("GET", f"{A}/logs", {"source": "bogus"}, 400, "'bogus'"),
    ("GET", f"{A}/logs", {"source": "APP"}, 400, "'APP'"),
    ("GET", f"{A}/logs", {"source": LONG}, 400, "'" + "a" * 50),
    ("GET", f"{A}/logs", {"source": "bogus", "tail": "1"}, 400, "'bogus'"),
    ("GET", f"{A}/logs", {"dyno": "../../etc/passwd"}, 400, "'../../etc/passwd'"),
    ("GET", f"{A}/logs", {"dyno": "web..1"}, 400, "'web..1'"),
    ("GET", f"{A}/logs", {"dyno": "web/1"}, 400, "'web/1'"),
    ("GET", f"{A}/logs", {"dyno": "web\x001"}, 400, r"'web\x001'"),
    ("GET", f"{A}/logs", {"dyno": "a" * 200}, 400, "'" + "a" * 50),
    ("GET", f"{A}/logs", {"dyno": ".hidden"}, 400, "'.hidden'"),
    # releases:info
    ("GET", f"{A}/releases/x", None, 400, "'x'"),
    ("GET", f"{A}/releases/v", None, 400, "'v'"),
    ("GET", f"{A}/releases/v-1", None, 400, "'v-1'"),
    ("GET", f"{A}/releases/v1.5", None, 400, "'v1.5'"),
    ("GET", f"{A}/releases/v%C2%B2", None, 400, "'v²'"),
    ("GET", f"{A}/releases/v%00", None, 400, r"'v\x00'"),
    ("GET", f"{A}/releases/v" + "9" * 30, None, 400, "9" * 30),
    ("GET", f"{A}/releases/v" + "9" * 5000, None, 400, "9" * 50),
    ("GET", f"{A}/releases/v1", None, 404, "v1"),
    ("GET", f"{A}/releases/0", None, 404, "v0"),
    # apps:destroy without the right confirmation
    ("DELETE", A, None, 400, f"--confirm {APP}"),
    ("DELETE", A, {"confirm": "other"}, 400, f"--confirm {APP}"),
    ("DELETE", A, {"confirm": APP.upper()}, 400, f"--confirm {APP}"),
    ("DELETE", A, {"confirm": ""}, 400, f"--confirm {APP}"),
    # domains:remove
    ("DELETE", f"{A}/domains/bad%20host", None, 400, "'bad host'"),
    ("DELETE", f"{A}/domains/%00", None, 400, r"'\x00'"),
    ("DELETE", f"{A}/domains/" + "a" * 300, None, 400, "'" + "a" * 50),
    ("DELETE", f"{A}/domains/%C3%BCn%C3%AF.com", None, 400, "'ünï.com'"),
    ("DELETE", f"{A}/domains/nope.example.com", None, 404, "'nope.example.com'"),
    # keys:remove and the SSH entry point's key lookup
    ("DELETE", "/api/keys/nope", None, 404, "'nope'"),
    ("DELETE", "/api/keys/%00", None, 400, r"Invalid key name '\x00'"),
    ("DELETE", "/api/keys/" + "k" * 300, None, 400, "Invalid key name '" + "k" * 50),
    ("DELETE", "/api/keys/%C3%BCn%C3%AF", None, 400, "Invalid key name 'ünï'"),
    ("DELETE", "/api/keys/a%2Fb", None, 400, "Invalid key name 'a/b'"),
    ("DELETE", "/api/keys/a/b", None, 400, "Invalid key name 'a/b'"),
    ("GET", "/api/keys/by-fingerprint/SHA256:nope", None, 404, "'SHA256:nope'"),
    ("GET", "/api/keys/by-fingerprint/a%2F..%2Fb", None, 404, "'a/../b'"),
    ("GET", "/api/keys/by-fingerprint/%00", None, 404, r"'\x00'"),
    # metrics
    ("GET", f"{A}/metrics", {"since": "-1"}, 400, "'-1'"),
    ("GET", f"{A}/metrics", {"since": "0"}, 400, "'0'"),
    ("GET", f"{A}/metrics", {"since": "86401"}, 400, "'86401'"),
    ("GET", f"{A}/metrics", {"since": "abc"}, 400, "'abc'"),
    ("GET", f"{A}/metrics", {"since": "1.5"}, 400, "'1.5'"),
    ("GET", f"{A}/metrics", {"since": "²"}, 400, "'²'"),
    ("GET", f"{A}/metrics", {"since": "9" * 5000}, 400, "9" * 50),
    ("GET", "/api/metrics/host", {"since": "-1"}, 400, "'-1'"),
    ("GET", "/api/metrics/host", {"since": "²"}, 400, "'²'"),
    ("GET", "/api/metrics/host", {"since": "9" * 5000}, 400, "9" * 50),
    ("GET", "/api/metrics/host", {"since": "\x00"}, 400, r"'\x00'"),
    # server-only routes, over TCP
    ("GET", "/api/auth/token", None, 400, "server itself"),
    ("POST", "/api/admin/down", None, 400, "server itself"),
    # no such route, or not with that method
    ("DELETE", f"{A}/addons/heroku-postgresql", None, 400, "--confirm fuzz"),
    ("DELETE", f"{A}/addons/redis", {"confirm": APP}, 404, "no heroku-redis add-on"),
    ("DELETE", f"{A}/addons/heroku-redis", None, 400, "deletes its Redis server"),
    ("GET", f"{A}/addons/heroku-redis/info", None, 404, "no heroku-redis add-on"),
    ("GET", f"{A}/addons/redis:mini/info", None, 404, "no heroku-redis add-on"),
    ("POST", f"{A}/addons/heroku-redis/reset", {"confirm": APP}, 400,
     "Only a heroku-postgresql database can be reset"),
    ("DELETE", f"{A}/addons/mysql", {"confirm": APP}, 400, "Unknown add-on 'mysql'"),
    ("DELETE", f"{A}/addons/heroku-postgresql", {"confirm": APP}, 404, "no heroku-postgresql"),
    ("GET", f"{A}/addons/heroku-postgresql/info", None, 404, "no heroku-postgresql"),
    ("GET", f"{A}/addons/mysql/info", None, 400, "'mysql'"),
    ("GET", f"{A}/addons/heroku-redis/maxmemory", None, 405, "GET"),
    # pg:reset and pg:backups (the app `fuzz` has no add-on: each says so, once its other
    # input is valid)
    ("POST", f"{A}/addons/heroku-postgresql/reset", None, 400, "--confirm fuzz"),
    ("POST", f"{A}/addons/heroku-postgresql/reset", {"confirm": "x"}, 400, "--confirm fuzz"),
    ("POST", f"{A}/addons/mysql/reset", {"confirm": APP}, 400, "'mysql'"),
    ("POST", f"{A}/addons/heroku-postgresql/reset", {"confirm": APP}, 404, "no heroku-postgresql"),
    ("GET", f"{A}/backups", None, 404, "no heroku-postgresql"),
    ("POST", f"{A}/backups", None, 404, "no heroku-postgresql"),
    ("GET", f"{A}/backups/schedule", None, 404, "no heroku-postgresql"),
    ("DELETE", f"{A}/backups/schedule", None, 404, "no heroku-postgresql"),
    ("GET", f"{A}/backups/latest/download", None, 404, "no heroku-postgresql"),
    ("GET", f"{A}/backups/b001/download", None, 404, "no heroku-postgresql"),
    ("GET", f"{A}/backups/x1/download", None, 400, "Invalid backup id 'x1'"),
    ("GET", f"{A}/backups/b0/download", None, 400, "'b0'"),
    ("GET", f"{A}/backups/{'b' + '9' * 5000}/download", None, 400, "'b999999999"),
    ("GET", f"{A}/backups/%00/download", None, 400, r"'\x00'"),
    ("POST", f"{A}/backups/b001/restore", None, 400, "--confirm fuzz"),
    ("POST", f"{A}/backups/latest/restore", {"confirm": "x"}, 400, "--confirm fuzz"),
    ("POST", f"{A}/backups/nope/restore", {"confirm": APP}, 400, "'nope'"),
    ("POST", f"{A}/backups/b001/restore", {"confirm": APP}, 404, "no heroku-postgresql"),
    ("DELETE", f"{A}/backups/b001", None, 400, "--confirm fuzz"),
    ("DELETE", f"{A}/backups/latest", {"confirm": APP}, 400, "'latest'"),
    ("DELETE", f"{A}/backups/b001", {"confirm": APP}, 404, "no heroku-postgresql"),
    ("POST", f"{A}/backups/upload", None, 400, "--confirm fuzz"),
    ("POST", f"{A}/backups/upload", {"confirm": APP}, 404, "no heroku-postgresql"),
    ("GET", f"{A}/backups/upload", None, 405, "GET"),
    ("PATCH", f"{A}/backups", None, 405, "PATCH"),
    ("POST", f"{A}/backups/b001/download", None, 405, "POST"),
    ("GET", "/api/nope", None, 404, "/api/nope"),
    ("GET", f"{A}/nope", None, 404, f"{A}/nope"),
    ("GET", "/api/apps/a/b/c/d/e", None, 404, "/api/apps/a/b/c/d/e"),
    ("PUT", "/api/apps", None, 405, "PUT"),
    ("DELETE", "/api/apps", None, 405, "DELETE"),
    ("POST", f"{A}/config", None, 405, "POST"),
    ("PATCH", f"{A}/logs", None, 405, "PATCH"),
    ("DELETE", "/api/status", None, 405, "DELETE"),
    ("POST", "/metrics", None, 405, "POST"),
]


@pytest.mark.parametrize(
    ("method", "path", "query", "status", "fragment"),
    BAD_PATHS_AND_QUERIES,
    ids=lambda v: repr(v)[:30],
)
def test_bad_path_or_query(
    api: httpx.Client,
    method: str,
    path: str,
    query: dict[str, str] | None,
    status: int,
    fragment: str,
) -> None:
    assert_error(api.request(method, path, params=query), status, fragment)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_body_past_the_limit_is_refused(api: httpx.Client, declared: bool) -> None:
    """A body is held in memory to be parsed, so past 1 MiB it is refused unread (413)."""
    body = json.dumps({"K": "v" * (2 * 1024 * 1024)}).encode()
    content: Any = (
        body if declared else iter([body[i : i + 65536] for i in range(0, len(body), 65536)])
    )
    response = api.request("PATCH", f"{A}/config", content=content)
    assert_error(response, 413, "1024 KiB")
    assert api.get(f"{A}/config").json() == {}  # nothing was stored


def test_content_type_is_not_required(api: httpx.Client) -> None:
    """The body is read as JSON whatever its Content-Type says (the CLI always sends JSON)."""
    body = b'{"on": false}'
    response = api.put(f"{A}/maintenance", content=body, headers={"Content-Type": "text/plain"})
    assert response.status_code == 200, response.text
    assert response.json() == {"maintenance": False}


def test_deploy_of_an_unknown_commit(api: httpx.Client) -> None:
    """A well-formed sha that is not in the repo: the push's stream says so and ends (NDJSON,
    so a 200 with a `failed` status, as for any deploy that fails)."""
    response = api.post(f"{A}/deploy", json={"sha": "0" * 40})
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"].startswith("application/x-ndjson")
    events = [json.loads(line) for line in response.text.splitlines()]
    assert events[-1]["status"] == "failed", events
    assert "0" * 40 in events[-1]["message"] and "\n" not in events[-1]["message"], events


# -- without a valid token -----------------------------------------------------------------

UNAUTHENTICATED = [
    ("GET", "/api/apps"),
    ("POST", "/api/apps"),
    ("PUT", f"{A}/maintenance"),
    ("PATCH", f"{A}/config"),
    ("DELETE", A),
    ("GET", f"{A}/backups/latest/download"),
    ("POST", f"{A}/backups/upload"),
    ("GET", "/api/nope"),
    ("GET", "/metrics"),
]

#: (Authorization header or None, what the error must contain)
BAD_CREDENTIALS = [
    (None, "Missing API token"),
    ("Bearer nope", "Invalid API token"),
    ("Bearer", "Invalid API token"),
    ("Basic !!!", "Invalid API token"),
    ("Basic eDp5", "Invalid API token"),
    ("Token abc", "Invalid API token"),
    ("Bearer " + "x" * 4000, "Invalid API token"),
    ("Bearer \tx", "Invalid API token"),
]


@pytest.mark.parametrize(("auth", "fragment"), BAD_CREDENTIALS, ids=lambda v: str(v)[:12])
@pytest.mark.parametrize(("method", "path"), UNAUTHENTICATED, ids=str)
def test_unauthenticated(
    raw: httpx.Client, method: str, path: str, auth: str | None, fragment: str
) -> None:
    headers = {"Authorization": auth} if auth is not None else {}
    response = raw.request(method, path, json={"name": "x"}, headers=headers)
    assert_error(response, 401, fragment)
    assert response.headers["www-authenticate"].startswith("Basic")


# -- afterwards ----------------------------------------------------------------------------


def test_server_still_works(env: tuple[Paas, SSHServer], api: httpx.Client) -> None:
    """Runs last: nothing above broke the server, created anything, or logged a traceback."""
    paas, _ = env
    listed = paas.cli("apps").stdout
    assert APP in listed, listed
    names = [a["name"] for a in api.get("/api/apps").json()]
    assert names == [APP], names
    assert api.get("/api/status").json()["ok"] is True
    assert api.get(f"{A}/config").json() == {}
    assert api.get(f"{A}/checks").json()["check"] is None
    assert api.get(f"{A}/buildpacks").json() == []
    assert [k["name"] for k in api.get("/api/keys").json()] == ["tester"]
    log = paas.log.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    assert "Exception in ASGI application" not in log, log[-3000:]

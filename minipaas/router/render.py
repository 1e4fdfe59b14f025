"""The whole Caddy JSON document, rendered from `RouterState` by a pure function.

Owns the shape of Caddy's configuration: servers, routes, TLS automation, access logging and the
admin block. It never talks to Caddy, never touches files or processes, and holds no state: the
same `RouterState` always renders the same (sorted) document, which is what makes re-applying an
unchanged state a no-op and the golden files in `tests/golden/router/` reviewable.

Traps this module knows about (see the stack-trial notes, section 1):
- `POST /load` replaces `admin` too, so the admin block is part of every document;
- `@id` values must be unique across the whole document, servers included;
- without a final catch-all route Caddy answers unknown hosts with an empty 200;
- `http_port`/`https_port` must be set for high ports, or Caddy misjudges which server is HTTPS;
- HTTP/3 would open a UDP listener, so servers speak h1/h2 only;
- the local CA must never try to install itself into the system trust store.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from minipaas.names import APP_NAME
from minipaas.router.accesslog import CODE_FIELD, UPSTREAM_FIELD
from minipaas.router.dns import MAX_RECORDS, REFRESH_MS, srv_name
from minipaas.router.errors import RouterError
from minipaas.router.resolver import APP_HEADER

TlsMode = Literal["internal", "acme"]

# How long a request may wait for an upstream to accept it (a dyno switch, a restart of the
# control plane) before Caddy gives up with 502, and how often it tries again meanwhile.
TRY_DURATION = "5s"
TRY_INTERVAL = "250ms"
FAIL_DURATION = "2s"

# Dynamic upstreams (see `minipaas.router.resolver`): how long an answer is trusted, and how
# long the last answer keeps being used while the resolver cannot be reached.
RESOLVER_REFRESH = f"{REFRESH_MS}ms"
RESOLVER_GRACE = "5s"

# How long the control plane's upgraded connections (remote `run` sessions) stay open after
# the config they came in under is replaced: a one-off dyno's longest life.
STREAM_CLOSE_DELAY = "24h"

ACCESS_LOGGER = "router"  # emitted as "http.log.access.router"

# Names that no public CA will ever certify (RFC 6761/6762/8375 and friends).
_INTERNAL_SUFFIXES = (
    ".localhost",
    ".local",
    ".internal",
    ".test",
    ".example",
    ".invalid",
    ".home.arpa",
)
# Wildcard-DNS services: "<ip>.nip.io" resolves to <ip>; only public IPs can pass ACME.
_IP_DNS_SUFFIXES = (".nip.io", ".sslip.io")

MAINTENANCE_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Down for maintenance</title></head>
<body style="font-family: sans-serif; max-width: 36em; margin: 4em auto;">
<h1>Down for maintenance</h1>
<p>This app is being worked on and will be back shortly.</p>
</body>
</html>
"""


@dataclass(frozen=True)
class AppRoute:
    """How one app is served."""

    name: str  # app name
    hosts: tuple[str, ...]  # f"{name}.{domain}" plus the names added with domains:add
    upstreams: tuple[str, ...]  # "127.0.0.1:PORT" of ready web dynos (may be empty)
    static_root: str | None = None  # absolute host path served with file_server instead
    maintenance: bool = False  # answer 503 with a small maintenance page


@dataclass(frozen=True)
class RouterState:
    """Everything the router needs to render Caddy's configuration."""

    domain: str  # "localhost", "127.0.0.1.nip.io", "example.com", ...
    http_port: int
    https_port: int
    listen_host: str  # "" for all interfaces (production), "127.0.0.1" in tests
    admin_socket: Path
    storage_dir: Path  # Caddy's data (certificates) dir
    # Where minipaas's API (served at minipaas.<domain>) listens: "unix//PATH" (minipaas's
    # own choice: no dyno can take a unix socket over) or "HOST:PORT".
    control_upstream: str
    apps: tuple[AppRoute, ...]
    acme_email: str | None = None
    acme_ca: str | None = None  # ACME directory URL; None: Caddy's default (Let's Encrypt)
    access_log: Path | None = None  # JSON lines, app hosts only, for the router log source
    # "127.0.0.1:PORT" of the upstream resolver: web dynos are then looked up over DNS (SRV)
    # instead of being written into the document, so a deploy changes no Caddy configuration.
    resolver: str | None = None

    @property
    def control_host(self) -> str:
        return f"minipaas.{self.domain}"


def tls_mode(domain: str) -> TlsMode:
    """`internal` (Caddy's local CA) for names no public CA can certify, else `acme`.

    Internal: `localhost`, `*.localhost` and the other special-use suffixes, IP literals, and
    nip.io/sslip.io names that embed a private or loopback address.
    """
    name = domain.strip().lower().rstrip(".")
    if name == "localhost" or name.endswith(_INTERNAL_SUFFIXES):
        return "internal"
    if _parse_ip(name.strip("[]")) is not None:
        return "internal"
    for suffix in _IP_DNS_SUFFIXES:
        if name.endswith(suffix):
            embedded = _embedded_ip(name.removesuffix(suffix))
            if embedded is not None and not embedded.is_global:
                return "internal"
    return "acme"


def render(state: RouterState) -> dict[str, Any]:
    """The complete Caddy configuration for `state`, ready for `POST /load`."""
    mode = tls_mode(state.domain)
    apps = sorted(state.apps, key=lambda app: app.name)
    _check(state, apps)

    app_hosts = sorted({host for app in apps for host in app.hosts})
    all_hosts = sorted({*app_hosts, state.control_host})
    # The resolver behind the catch-all route, when there is one (see `catch_all`).
    wildcard = state.resolver if catch_all(state) else None
    if wildcard is not None:
        # Plain apps (default host, dynos behind the resolver) share one route: creating or
        # destroying one changes only the resolver's table, never Caddy's configuration.
        apps = [app for app in apps if needs_own_route(app, state.domain)]

    servers: dict[str, Any] = {
        "https": _server(
            state,
            "https",
            port=state.https_port,
            routes=_site_routes(state, apps, "https", wildcard),
            tls=True,
            logged=apps,
            wildcard=wildcard is not None,
        ),
    }
    if mode == "internal":
        # Same routes over plain HTTP: handy locally and in tests, nothing to protect.
        servers["http"] = _server(
            state,
            "http",
            port=state.http_port,
            routes=_site_routes(state, apps, "http", wildcard),
            tls=False,
            logged=apps,
            wildcard=wildcard is not None,
        )
    else:
        servers["http"] = _server(
            state,
            "http",
            port=state.http_port,
            routes=[_redirect_route(state, all_hosts), _not_found_route("http")],
            tls=False,
            logged=None,
        )

    document: dict[str, Any] = {
        "admin": {
            "listen": f"unix/{state.admin_socket}",
            "origins": ["localhost"],
            # The state lives in SQLite; a stale autosave must never be resumed.
            "config": {"persist": False},
        },
        "storage": {"module": "file_system", "root": str(state.storage_dir)},
        "apps": {
            "http": {
                "http_port": state.http_port,
                "https_port": state.https_port,
                "servers": servers,
            },
            "tls": {"automation": _tls_automation(state, mode, apps, app_hosts, wildcard)},
            "pki": {"certificate_authorities": {"local": {"install_trust": False}}},
        },
    }
    if state.access_log is not None:
        document["logging"] = _logging(state.access_log)
    return document


def catch_all(state: RouterState) -> bool:
    """Whether apps are served by one catch-all route for `*.<domain>` (see `render`).

    Needs the resolver (which answers for any name) and certificates that can be issued the
    moment a new name is first asked for: the internal CA, on demand. Public (ACME) domains keep
    a route per app, so that every app's certificate is obtained ahead of its first visitor."""
    return (
        state.resolver is not None
        and tls_mode(state.domain) == "internal"
        and _parse_ip(state.domain.strip("[]")) is None
    )


def needs_own_route(app: AppRoute, domain: str) -> bool:
    """An app the catch-all route cannot serve: maintenance, static, custom domains, or more
    web dynos than one DNS answer holds."""
    return (
        app.maintenance
        or app.static_root is not None
        or len(app.upstreams) > MAX_RECORDS
        or app.hosts != (f"{app.name}.{domain}",)
    )


# --- servers and routes -------------------------------------------------------------------


def _server(
    state: RouterState,
    name: str,
    *,
    port: int,
    routes: list[dict[str, Any]],
    tls: bool,
    logged: list[AppRoute] | None,
    wildcard: bool = False,
) -> dict[str, Any]:
    """One server; `logged`: the apps in its routes whose hosts go to the access log (None: no
    access log); `wildcard`: its routes end with the catch-all app route."""
    server: dict[str, Any] = {
        "listen": [_listen_address(state.listen_host, port)],
        "routes": routes,
        # git's smart HTTP answers (sideband progress) while the push's body is still coming
        # in; without full duplex Go's HTTP/1 server starts draining the request body itself
        # the moment the answer starts, and the pack reaching minipaas has holes in it.
        "enable_full_duplex": True,
    }
    if tls:
        server["protocols"] = ["h1", "h2"]  # no HTTP/3: no UDP listener
        server["tls_connection_policies"] = [{}]
        # Our own http server answers on the HTTP port; Caddy must not add redirects there.
        server["automatic_https"] = {"disable_redirects": True}
    else:
        server["protocols"] = ["h1"]
        server["automatic_https"] = {"disable": True}
    if tls and wildcard:
        # The catch-all route's `*.<domain>` is not a certificate to obtain: every app host
        # gets its own from the internal CA on demand (a wildcard directly under a TLD such as
        # `*.localhost` is refused by TLS clients anyway).
        server["automatic_https"]["skip_certificates"] = [f"*.{state.domain}"]
    if logged is not None and state.access_log is not None:
        # Only requests to app hosts are logged: the control plane is not what the router log
        # source reports on (it maps hosts to apps and drops names that are no app's).
        hosts = sorted({h for a in logged for h in a.hosts})
        if wildcard:
            # Caddy decides whether to log by exact host, so the wildcard is mapped and every
            # host logged (the control route skips itself). Only apps with their own route are
            # named: a new plain app must not change the configuration.
            server["logs"] = {
                "logger_names": {h: [ACCESS_LOGGER] for h in [f"*.{state.domain}", *hosts]},
            }
        else:
            server["logs"] = {
                "logger_names": {host: [ACCESS_LOGGER] for host in hosts},
                "skip_unmapped_hosts": True,
            }
    return server


def _site_routes(
    state: RouterState, apps: list[AppRoute], server: str, wildcard: str | None
) -> list[dict[str, Any]]:
    routes = [_app_route(app, server, state.resolver) for app in apps]
    routes.append(_control_route(state, server))
    if wildcard is not None:
        routes.append(_catch_all_route(state.domain, server, wildcard))
    routes.append(_not_found_route(server))
    return routes


def _catch_all_route(domain: str, server: str, resolver: str) -> dict[str, Any]:
    """`<label>.<domain>` for any label that could be an app name, proxied to whatever the
    resolver says about `<label>` (its dynos, or its own port's 503 / 404)."""
    label = f"{{http.request.host.labels.{len(domain.split('.'))}}}"
    return {
        "@id": f"{server}.apps",
        "match": [
            {
                "host": [f"*.{domain}"],
                "vars_regexp": {label: {"pattern": f"(?i)^{APP_NAME.pattern}$"}},
            }
        ],
        "handle": [_log_upstream(), _dynamic_proxy(label, resolver)],
        "terminal": True,
    }


def _app_route(app: AppRoute, server: str, resolver: str | None) -> dict[str, Any]:
    handle: list[dict[str, Any]]
    if app.maintenance:
        handle = [
            _log_code("H80"),
            _static_response(
                503, MAINTENANCE_PAGE, "text/html; charset=utf-8", {"Retry-After": ["120"]}
            ),
        ]
    elif app.static_root is not None:
        handle = [_static_site(app.static_root)]
    elif resolver is not None and len(app.upstreams) <= MAX_RECORDS:
        # Also without dynos (the resolver then points at its own 503): the route stays the
        # same through first deploys and scaling to and from zero.
        handle = [_log_upstream(), _dynamic_proxy(app.name, resolver)]
    elif not app.upstreams:
        handle = [
            _log_code("H14"),
            _text(503, f"503 Service Unavailable: no web dynos running for '{app.name}'.\n"),
        ]
    else:
        handle = [_log_upstream(), _proxy(sorted(app.upstreams), app_headers=True)]
    return {
        "@id": f"{server}.app.{app.name}",
        "match": [{"host": sorted(app.hosts)}],
        "handle": handle,
        "terminal": True,
    }


def _log_upstream() -> dict[str, Any]:
    """The router log's `dyno=` and error codes: which upstream (a dyno's port, or the
    resolver's own) the proxy reached for, added to the access log once it is done."""
    return {
        "handler": "log_append",
        "key": UPSTREAM_FIELD,
        "value": "{http.reverse_proxy.upstream.hostport}",
    }


def _log_code(code: str) -> dict[str, Any]:
    """A router error code the route answers with itself (maintenance's H80)."""
    return {"handler": "log_append", "key": CODE_FIELD, "value": code}


def _static_site(root: str) -> dict[str, Any]:
    # Dotfiles (.git, .env, .profile.d, ...) are never served. file_server's `hide` would also
    # match dot-directories in the root path itself (e.g. ~/.local/share/minipaas), so a path
    # matcher on the request (cleaned, percent-decoded) path does it instead. What is not found
    # (a dotfile included) gets the site's own /404.html, with status 404, as GitHub Pages and
    # Netlify do; without one, a short text.
    return {
        "handler": "subroute",
        "routes": [
            {
                "match": [{"not": [{"path_regexp": {"pattern": r"/\."}}]}],
                "handle": [{"handler": "file_server", "root": root, "pass_thru": True}],
            },
            {
                "match": [{"file": {"root": root, "try_files": ["/404.html"]}}],
                "handle": [
                    {"handler": "rewrite", "uri": "/404.html"},
                    {"handler": "file_server", "root": root, "status_code": 404},
                ],
                "terminal": True,
            },
            {"handle": [_text(404, "404 Not Found\n")], "terminal": True},
        ],
    }


def _proxy(upstreams: list[str], *, app_headers: bool) -> dict[str, Any]:
    proxy: dict[str, Any] = {
        "handler": "reverse_proxy",
        "upstreams": [{"dial": upstream} for upstream in upstreams],
        # Round robin; a request whose upstream refuses the connection (a dyno being switched
        # or crashed) is retried on the next one until try_duration runs out.
        "load_balancing": {
            "selection_policy": {"policy": "round_robin"},
            "try_duration": TRY_DURATION,
            "try_interval": TRY_INTERVAL,
        },
        # Lenient passive checks: only connection failures count, and an upstream is skipped
        # for a moment (well inside try_duration) so a dead dyno does not cost every other
        # request a retry. No active checks: the supervisor checks dynos before they are routed.
        "health_checks": {"passive": {"fail_duration": FAIL_DURATION, "max_fails": 1}},
    }
    if app_headers:
        proxy["headers"] = {"request": {"set": {"X-Request-Id": ["{http.request.uuid}"]}}}
    return proxy


def _dynamic_proxy(app: str, resolver: str) -> dict[str, Any]:
    """A proxy whose upstreams come from the resolver: SRV `<app>.web.minipaas.`, refreshed
    every REFRESH; the target (`dynos.minipaas.`) is in Caddy's private /etc/hosts, else the
    transport asks the resolver for it too. When the resolver cannot be reached, Caddy keeps
    using the previous answer (grace period) rather than failing requests."""
    proxy = _proxy([], app_headers=True)
    del proxy["upstreams"]
    proxy["headers"]["request"]["set"][APP_HEADER] = [app]
    servers = {"addresses": [f"udp/{resolver}"]}
    proxy["dynamic_upstreams"] = {
        "source": "srv",
        "name": srv_name(app),
        "refresh": RESOLVER_REFRESH,
        "grace_period": RESOLVER_GRACE,
        "resolver": servers,
        "dial_timeout": "1s",
    }
    proxy["transport"] = {"protocol": "http", "resolver": servers}
    return proxy


def _control_route(state: RouterState, server: str) -> dict[str, Any]:
    proxy = _proxy([state.control_upstream], app_headers=False)
    # Build logs and log tails are streamed (NDJSON/SSE): flush every write. Caddy's HTTP
    # transport has no read timeout by default, so long git pushes are not cut off.
    proxy["flush_interval"] = -1
    # A proxied WebSocket (a remote `minipaas run` session) outlives config changes: Caddy
    # closes upgraded connections when the config they came in under is replaced, which
    # minipaas does on every change of routes, any app's. They stay open up to a one-off
    # dyno's longest life instead (ended sooner by either side, as always).
    proxy["stream_close_delay"] = STREAM_CLOSE_DELAY
    return {
        "@id": f"{server}.control",
        "match": [{"host": [state.control_host]}],
        # Never in the access log: the router log source and metrics are about apps.
        "handle": [{"handler": "vars", "log_skip": True}, proxy],
        "terminal": True,
    }


def _not_found_route(server: str) -> dict[str, Any]:
    return {
        "@id": f"{server}.unknown",
        "handle": [_text(404, "404 Not Found: no app is served at {http.request.host}.\n")],
        "terminal": True,
    }


def _redirect_route(state: RouterState, hosts: list[str]) -> dict[str, Any]:
    port = "" if state.https_port == 443 else f":{state.https_port}"
    return {
        "@id": "http.redirect",
        "match": [{"host": hosts}],
        "handle": [
            {
                "handler": "static_response",
                "status_code": 308,
                "headers": {
                    "Location": [f"https://{{http.request.host}}{port}{{http.request.uri}}"]
                },
            }
        ],
        "terminal": True,
    }


def _text(status: int, body: str) -> dict[str, Any]:
    return _static_response(status, body, "text/plain; charset=utf-8")


def _static_response(
    status: int, body: str, content_type: str, extra: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    headers = {"Content-Type": [content_type], "X-Content-Type-Options": ["nosniff"]}
    headers.update(extra or {})
    return {
        "handler": "static_response",
        "status_code": status,
        "headers": dict(sorted(headers.items())),
        "body": body,
    }


# --- TLS and logging ------------------------------------------------------------------------


def _tls_automation(
    state: RouterState,
    mode: TlsMode,
    apps: list[AppRoute],
    app_hosts: list[str],
    wildcard: str | None,
) -> dict[str, Any]:
    if wildcard is None:
        return {"policies": _tls_policies(state, mode, app_hosts)}
    internal: dict[str, Any] = {"issuers": [{"module": "internal"}]}
    managed = sorted({state.control_host, *(h for app in apps for h in app.hosts)})
    return {
        "policies": [
            # Names in the configuration: issued up front, as always.
            {"subjects": managed, **internal},
            # Any other name: issued at its first TLS handshake, if the resolver says it is
            # an app's host (so unknown names never fill the certificate store).
            {**internal, "on_demand": True},
        ],
        "on_demand": {
            "permission": {
                "module": "http",
                "endpoint": f"http://{wildcard}/ask/{state.domain}",
            }
        },
    }


def _tls_policies(state: RouterState, mode: TlsMode, app_hosts: list[str]) -> list[dict[str, Any]]:
    internal: dict[str, Any] = {"issuers": [{"module": "internal"}]}
    if mode == "internal":
        # One catch-all policy: every certificate comes from the local CA, ACME is never tried
        # (tests and laptops have no public DNS name and often no internet).
        return [internal]
    acme: dict[str, Any] = {"module": "acme"}
    if state.acme_email:
        acme["email"] = state.acme_email
    if state.acme_ca:
        acme["ca"] = state.acme_ca
    policies: list[dict[str, Any]] = []
    private = [host for host in app_hosts if tls_mode(host) == "internal"]
    if private:
        policies.append({"subjects": private, **internal})
    policies.append({"issuers": [acme]})
    return policies


def _logging(access_log: Path) -> dict[str, Any]:
    logger = f"http.log.access.{ACCESS_LOGGER}"
    return {
        "logs": {
            # Caddy's own log stays on stderr (the process log); access lines go only to the
            # file, and those of hosts that are no app's nowhere.
            "default": {"exclude": ["http.log.access"]},
            ACCESS_LOGGER: {
                "writer": {
                    "output": "file",
                    "filename": str(access_log),
                    "roll_size_mb": 50,
                    "roll_keep": 3,
                },
                "encoder": {"format": "json"},
                "include": [logger],
            },
        }
    }


# --- validation -------------------------------------------------------------------------------


def _check(state: RouterState, apps: list[AppRoute]) -> None:
    """Reject values Caddy would accept and then fail on at request time."""
    for port in (state.http_port, state.https_port):
        if not 0 < port < 65536:
            raise RouterError(f"Invalid router port {port}: use 1 to 65535.")
    if not _is_unix_dial(state.control_upstream):
        _check_dial(state.control_upstream)
    if state.resolver is not None:
        _check_dial(state.resolver)
    for app in apps:
        if not app.hosts:
            raise RouterError(f"App {app.name!r} has no host names to be served at.")
        for upstream in app.upstreams:
            _check_dial(upstream)
        if app.static_root is not None and not app.static_root.startswith("/"):
            raise RouterError(f"Invalid static root {app.static_root!r}: use an absolute path.")


def _is_unix_dial(address: str) -> bool:
    """Caddy's `unix//abs/path` dial address (an absolute socket path, nothing else)."""
    path = address.removeprefix("unix/")
    return path != address and path.startswith("/") and "\0" not in path


def _check_dial(address: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RouterError(f"Invalid upstream address {address!r}: use HOST:PORT.")


def _listen_address(host: str, port: int) -> str:
    if ":" in host:  # IPv6 literal
        return f"[{host.strip('[]')}]:{port}"
    return f"{host}:{port}"


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _embedded_ip(prefix: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IPv4 address at the end of "app.10.0.0.1" or "app-10-0-0-1" style names."""
    dotted = _parse_ip(".".join(prefix.split(".")[-4:]))
    if dotted is not None:
        return dotted
    last = prefix.split(".")[-1]
    return _parse_ip(".".join(last.split("-")[-4:]))

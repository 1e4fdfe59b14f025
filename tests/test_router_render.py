"""The pure Caddy renderer: golden files, determinism, TLS mode, and input checks.

Regenerate the golden files after an intended change with:
    UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_router_render.py
and review the diff of tests/golden/router/*.json like code.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest

from minipaas.router import AppRoute, RouterError, RouterState, render, tls_mode

GOLDEN = Path(__file__).parent / "golden" / "router"
WORKDIR = Path("/var/lib/minipaas/caddy")


def _state(domain: str, apps: tuple[AppRoute, ...], **changes: Any) -> RouterState:
    state = RouterState(
        domain=domain,
        http_port=80,
        https_port=443,
        listen_host="",
        admin_socket=WORKDIR / "admin.sock",
        storage_dir=WORKDIR / "data" / "caddy",
        control_upstream="127.0.0.1:5000",
        apps=apps,
        access_log=WORKDIR / "access.log",
    )
    return dataclasses.replace(state, **changes)


CASES: dict[str, RouterState] = {
    "localhost_apps": _state(
        "localhost",
        (
            AppRoute(
                name="web",
                hosts=("web.localhost", "shop.localhost"),
                upstreams=("127.0.0.1:20002", "127.0.0.1:20001"),
            ),
            AppRoute(
                name="docs",
                hosts=("docs.localhost",),
                upstreams=(),
                static_root="/var/lib/minipaas/slugs/docs/b1/public",
            ),
            AppRoute(
                name="blog",
                hosts=("blog.localhost",),
                upstreams=("127.0.0.1:20003",),
                maintenance=True,
            ),
        ),
        http_port=8080,
        https_port=8443,
        listen_host="127.0.0.1",
    ),
    "public_acme": _state(
        "example.com",
        (
            AppRoute(
                name="web",
                hosts=("web.example.com", "www.shop.example.org"),
                upstreams=("127.0.0.1:20001",),
            ),
        ),
        acme_email="ops@example.com",
    ),
    "dynamic_upstreams": _state(
        "localhost",
        (
            AppRoute(name="web", hosts=("web.localhost",), upstreams=("127.0.0.1:20001",)),
            AppRoute(name="idle", hosts=("idle.localhost",), upstreams=()),
            AppRoute(
                name="big",
                hosts=("big.localhost",),
                upstreams=tuple(f"127.0.0.1:{20100 + i}" for i in range(21)),
            ),
            AppRoute(
                name="shop", hosts=("shop.localhost", "shop.test"), upstreams=("127.0.0.1:20002",)
            ),
        ),
        resolver="127.0.0.1:5353",
    ),
    "dynamic_upstreams_acme": _state(
        "example.com",
        (
            AppRoute(name="web", hosts=("web.example.com",), upstreams=("127.0.0.1:20001",)),
            AppRoute(name="idle", hosts=("idle.example.com",), upstreams=()),
        ),
        resolver="127.0.0.1:5353",
    ),
    "no_upstreams": _state(
        "localhost",
        (AppRoute(name="api", hosts=("api.localhost",), upstreams=()),),
        access_log=None,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str) -> None:
    rendered = json.dumps(render(CASES[case]), indent=2, sort_keys=True) + "\n"
    path = GOLDEN / f"{case}.json"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered)
    assert path.exists(), f"missing {path}; run with UPDATE_GOLDEN=1"
    assert rendered == path.read_text(), f"{path.name} changed; rerun with UPDATE_GOLDEN=1"


def test_plain_apps_coming_and_going_leave_the_document_unchanged() -> None:
    """With the resolver and the internal CA, `apps:create`/`apps:destroy` reload nothing."""
    base = CASES["dynamic_upstreams"]
    more = dataclasses.replace(
        base,
        apps=(
            *base.apps,
            AppRoute(name="new", hosts=("new.localhost",), upstreams=()),
            AppRoute(name="two", hosts=("two.localhost",), upstreams=("127.0.0.1:20009",)),
        ),
    )
    assert render(more) == render(base)
    # an app that needs its own route (here: a custom domain) does change it
    custom = dataclasses.replace(
        base, apps=(*base.apps, AppRoute("new", ("new.localhost", "new.test"), ()))
    )
    assert render(custom) != render(base)


def test_catch_all_route_serves_one_label_app_names_only() -> None:
    doc = render(dataclasses.replace(CASES["dynamic_upstreams"], domain="apps.example.test"))
    routes = doc["apps"]["http"]["servers"]["https"]["routes"]
    catch_all = next(r for r in routes if r["@id"] == "https.apps")
    label = "{http.request.host.labels.3}"  # app.apps.example.test: labels.0 is "test"
    assert catch_all["match"] == [
        {
            "host": ["*.apps.example.test"],
            "vars_regexp": {label: {"pattern": "(?i)^[a-z][a-z0-9-]{0,29}$"}},
        }
    ]
    proxy = catch_all["handle"][-1]
    assert proxy["dynamic_upstreams"]["name"] == f"{label}.web.minipaas."
    assert proxy["headers"]["request"]["set"]["X-Minipaas-App"] == [label]
    # after the control route (its host is under the domain too), before the 404
    ids = [r["@id"] for r in routes]
    assert ids.index("https.control") < ids.index("https.apps") == len(ids) - 2
    tls = doc["apps"]["tls"]["automation"]
    assert tls["on_demand"]["permission"] == {
        "module": "http",
        "endpoint": "http://127.0.0.1:5353/ask/apps.example.test",
    }
    assert tls["policies"][-1] == {"issuers": [{"module": "internal"}], "on_demand": True}
    https = doc["apps"]["http"]["servers"]["https"]
    assert https["automatic_https"]["skip_certificates"] == ["*.apps.example.test"]
    assert https["logs"]["logger_names"]["*.apps.example.test"] == ["router"]
    control = next(r for r in routes if r["@id"] == "https.control")
    assert control["handle"][0] == {"handler": "vars", "log_skip": True}


def test_public_domains_keep_a_route_per_app() -> None:
    """ACME certificates are obtained ahead of the first visitor: every host is in the config."""
    doc = render(CASES["dynamic_upstreams_acme"])
    ids = [r["@id"] for r in doc["apps"]["http"]["servers"]["https"]["routes"]]
    assert ids == ["https.app.idle", "https.app.web", "https.control", "https.unknown"]
    assert "on_demand" not in json.dumps(doc)


def test_render_is_deterministic() -> None:
    state = CASES["localhost_apps"]
    shuffled = dataclasses.replace(
        state,
        apps=tuple(
            dataclasses.replace(
                app, hosts=tuple(reversed(app.hosts)), upstreams=tuple(reversed(app.upstreams))
            )
            for app in reversed(state.apps)
        ),
    )
    assert render(shuffled) == render(state)
    assert json.dumps(render(state)) == json.dumps(render(state))


def _ids(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["@id"]] if "@id" in node else []
        return found + [i for value in node.values() for i in _ids(value)]
    if isinstance(node, list):
        return [i for value in node for i in _ids(value)]
    return []


@pytest.mark.parametrize("case", sorted(CASES))
def test_document_invariants(case: str) -> None:
    state = CASES[case]
    doc = render(state)
    ids = _ids(doc)
    assert len(ids) == len(set(ids)), "@id values must be unique across the document"
    # The admin block is in every document, else /load moves the admin endpoint away.
    assert doc["admin"]["listen"] == f"unix/{state.admin_socket}"
    assert doc["apps"]["pki"]["certificate_authorities"]["local"]["install_trust"] is False
    for server in doc["apps"]["http"]["servers"].values():
        last = server["routes"][-1]
        assert "match" not in last, "every server ends with a catch-all"
        assert last["handle"][0]["status_code"] in (404,)
        assert "h3" not in server["protocols"]


def test_internal_tls_never_uses_acme() -> None:
    doc = render(CASES["localhost_apps"])
    assert doc["apps"]["tls"]["automation"]["policies"] == [{"issuers": [{"module": "internal"}]}]
    assert '"acme"' not in json.dumps(doc)
    plain = doc["apps"]["http"]["servers"]["http"]
    assert plain["automatic_https"] == {"disable": True}
    # Internal domains serve the same routes over plain HTTP.
    assert [r["@id"] for r in plain["routes"]] == [
        "http.app.blog",
        "http.app.docs",
        "http.app.web",
        "http.control",
        "http.unknown",
    ]


def test_public_domain_redirects_and_uses_acme_email() -> None:
    doc = render(CASES["public_acme"])
    plain = doc["apps"]["http"]["servers"]["http"]
    redirect = plain["routes"][0]
    assert redirect["match"] == [
        {"host": ["minipaas.example.com", "web.example.com", "www.shop.example.org"]}
    ]
    assert redirect["handle"][0]["status_code"] == 308
    assert redirect["handle"][0]["headers"]["Location"] == [
        "https://{http.request.host}{http.request.uri}"
    ]
    assert doc["apps"]["tls"]["automation"]["policies"] == [
        {"issuers": [{"module": "acme", "email": "ops@example.com"}]}
    ]


def test_acme_ca_goes_into_the_acme_issuer_only() -> None:
    """`--acme-ca` (a staging or private ACME CA) is the acme issuer's `ca`; the internal CA's
    hosts and internal domains are unaffected."""
    ca = "https://127.0.0.1:14000/dir"
    state = dataclasses.replace(
        CASES["public_acme"],
        apps=(AppRoute(name="web", hosts=("web.example.com", "web.lan.internal"), upstreams=()),),
        acme_ca=ca,
    )
    assert render(state)["apps"]["tls"]["automation"]["policies"] == [
        {"subjects": ["web.lan.internal"], "issuers": [{"module": "internal"}]},
        {"issuers": [{"module": "acme", "email": "ops@example.com", "ca": ca}]},
    ]
    internal = render(dataclasses.replace(CASES["localhost_apps"], acme_ca=ca))
    assert internal == render(CASES["localhost_apps"])


def test_redirect_keeps_a_non_default_https_port() -> None:
    doc = render(dataclasses.replace(CASES["public_acme"], http_port=8080, https_port=8443))
    location = doc["apps"]["http"]["servers"]["http"]["routes"][0]["handle"][0]["headers"]
    assert location["Location"] == ["https://{http.request.host}:8443{http.request.uri}"]


def test_private_extra_host_on_public_domain_gets_internal_cert() -> None:
    state = dataclasses.replace(
        CASES["public_acme"],
        apps=(AppRoute(name="web", hosts=("web.example.com", "web.lan.internal"), upstreams=()),),
        acme_email=None,
    )
    assert render(state)["apps"]["tls"]["automation"]["policies"] == [
        {"subjects": ["web.lan.internal"], "issuers": [{"module": "internal"}]},
        {"issuers": [{"module": "acme"}]},
    ]


def test_control_plane_streams_unbuffered() -> None:
    doc = render(CASES["public_acme"])
    route = next(
        r for r in doc["apps"]["http"]["servers"]["https"]["routes"] if r["@id"] == "https.control"
    )
    assert route["match"] == [{"host": ["minipaas.example.com"]}]
    assert route["handle"][0] == {"handler": "vars", "log_skip": True}
    assert route["handle"][1]["flush_interval"] == -1
    assert route["handle"][1]["upstreams"] == [{"dial": "127.0.0.1:5000"}]


def test_access_log_only_for_app_hosts() -> None:
    doc = render(CASES["localhost_apps"])
    router_log = doc["logging"]["logs"]["router"]
    assert router_log["writer"]["filename"] == str(WORKDIR / "access.log")
    assert router_log["include"] == ["http.log.access.router"]
    assert doc["logging"]["logs"]["default"]["exclude"] == ["http.log.access"]
    logs = doc["apps"]["http"]["servers"]["https"]["logs"]
    assert logs["skip_unmapped_hosts"] is True
    assert sorted(logs["logger_names"]) == [
        "blog.localhost",
        "docs.localhost",
        "shop.localhost",
        "web.localhost",
    ]
    assert "logging" not in render(CASES["no_upstreams"])


def test_listen_addresses() -> None:
    servers = render(CASES["public_acme"])["apps"]["http"]["servers"]
    assert servers["https"]["listen"] == [":443"]
    assert servers["http"]["listen"] == [":80"]
    v6 = render(dataclasses.replace(CASES["public_acme"], listen_host="::1"))
    assert v6["apps"]["http"]["servers"]["https"]["listen"] == ["[::1]:443"]


@pytest.mark.parametrize(
    ("domain", "mode"),
    [
        ("localhost", "internal"),
        ("LOCALHOST.", "internal"),
        ("apps.localhost", "internal"),
        ("127.0.0.1", "internal"),
        ("::1", "internal"),
        ("192.168.1.10", "internal"),
        ("box.local", "internal"),
        ("corp.internal", "internal"),
        ("dev.test", "internal"),
        ("127.0.0.1.nip.io", "internal"),
        ("app.10-0-0-5.sslip.io", "internal"),
        ("203.0.113.7.nip.io", "internal"),  # documentation range: no CA can reach it
        ("8.8.8.8.nip.io", "acme"),
        ("example.com", "acme"),
        ("paas.example.co.uk", "acme"),
    ],
)
def test_tls_mode(domain: str, mode: str) -> None:
    assert tls_mode(domain) == mode


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"control_upstream": "nonsense"}, "Invalid upstream address 'nonsense'"),
        ({"control_upstream": "unix/api.sock"}, "Invalid upstream address 'unix/api.sock'"),
        ({"apps": (AppRoute("web", ("web.localhost",), ("127.0.0.1:0",)),)}, "127.0.0.1:0"),
        ({"apps": (AppRoute("web", (), ()),)}, "App 'web' has no host names"),
        (
            {"apps": (AppRoute("web", ("web.localhost",), (), static_root="public"),)},
            "Invalid static root 'public'",
        ),
        ({"https_port": 70000}, "Invalid router port 70000"),
    ],
)
def test_invalid_state_is_rejected(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(RouterError, match=message):
        render(dataclasses.replace(CASES["no_upstreams"], **changes))


def test_the_control_plane_is_dialled_on_its_unix_socket() -> None:
    """What minipaas renders: Caddy reaches the API on a socket no dyno can take over."""
    dial = f"unix/{WORKDIR / 'api.sock'}"
    config = render(dataclasses.replace(CASES["no_upstreams"], control_upstream=dial))
    assert f'"dial": "{dial}"' in json.dumps(config)

"""The validation boundary for names users type."""

from __future__ import annotations

import pytest

from minipaas import names
from minipaas.errors import UserError


@pytest.mark.parametrize("good", ["a", "myapp", "my-app-2", "a" * 30])
def test_valid_app_names(good: str) -> None:
    assert names.app_name(good) == good


@pytest.mark.parametrize("bad", ["../x", "A", "a_b", "a" * 31, "", "1app", "-a", "a.b", "a/b"])
def test_invalid_app_names_name_the_value(bad: str) -> None:
    with pytest.raises(UserError) as info:
        names.app_name(bad)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("bad", ["a-", "my-app-", "a" * 29 + "-"])
def test_new_app_names_do_not_end_with_a_dash(bad: str) -> None:
    assert names.app_name(bad) == bad  # an app created before the rule can still be named
    with pytest.raises(UserError, match="end it with a letter or digit") as info:
        names.new_app_name(bad)
    assert repr(bad) in str(info.value)
    assert names.new_app_name(bad.rstrip("-")) == bad.rstrip("-")


@pytest.mark.parametrize("bad", ["1.2.3.4", "10.0.0.1.", "example.123", "8"])
def test_custom_domains_are_not_ip_addresses(bad: str) -> None:
    with pytest.raises(UserError, match="is not a DNS name") as info:
        names.custom_domain(bad)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("good", ["www.example.com", "1.example.com", "x.y.io", "123abc.com"])
def test_custom_domains(good: str) -> None:
    assert names.custom_domain(good.upper()) == good


@pytest.mark.parametrize("reserved", ["minipaas", "www"])
def test_reserved_app_names(reserved: str) -> None:
    with pytest.raises(UserError, match="reserved"):
        names.app_name(reserved)


@pytest.mark.parametrize("good", ["A", "_x", "DATABASE_URL", "a1"])
def test_config_keys(good: str) -> None:
    assert names.config_key(good) == good


@pytest.mark.parametrize("bad", ["1A", "A-B", "", "A B", "Ä"])
def test_bad_config_keys(bad: str) -> None:
    with pytest.raises(UserError, match="Invalid config key"):
        names.config_key(bad)


def test_hostnames() -> None:
    assert names.hostname("WWW.Example.com.") == "www.example.com"
    for bad in ("", "-a.com", "a..b", "a_b.com", "x" * 64 + ".com", "a b"):
        with pytest.raises(UserError, match="Invalid hostname"):
            names.hostname(bad)


def test_process_type_or_one_dyno() -> None:
    assert names.process_type_or_dyno("web") == ("web", None)
    assert names.process_type_or_dyno("web.2") == ("web", 2)
    assert names.process_type_or_dyno("my_worker-1.100") == ("my_worker-1", 100)
    for bad in ("web.0", "web.01", "web.x", "web.", ".1", "web.1.2", "web.1000", "web.²", "a b.1"):
        with pytest.raises(UserError, match="Invalid process type or dyno"):
            names.process_type_or_dyno(bad)
    with pytest.raises(UserError, match="Invalid process type 'a b'"):
        names.process_type_or_dyno("a b")

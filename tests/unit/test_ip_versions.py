"""The runner reads what each node's iproute2 really prints. The fixtures in
tests/fixtures/ip/ are captured by scripts/capture_ip_output.py from Debian
11's iproute2 5.9, Debian 12's 6.1 and Debian 13's 6.15 (each file names its
version), running the builder's own commands against an ipvlan link in the
test VM. The one difference the runner must handle: 5.9 writes an apostrophe
in a name as \\', which is not JSON."""

import json
from pathlib import Path

import pytest

from ipvlan_ip.drift import problems as drift
from ipvlan_ip.link import check_master
from ipvlan_ip.node.runner import batch_failures, parse_json_stream
from ipvlan_ip.operations import GONE

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ip"
NODES = {"bullseye": "iproute2-5.9", "bookworm": "iproute2-6.1", "trixie": "iproute2-6.15"}


@pytest.fixture(params=sorted(NODES))
def captured(request) -> dict:
    doc = json.loads((FIXTURES / f"{request.param}.json").read_text())
    assert doc["iproute2"].startswith(NODES[request.param])
    return doc["commands"]


def lines(entry: dict) -> tuple:
    return tuple(entry["stdin"].splitlines())


def test_the_master_read_and_link_creation(captured):
    entry = captured["create"]
    assert entry["exit"] == 0 and batch_failures(entry["stderr"], lines(entry)) == []
    [[master]] = parse_json_stream(entry["stdout"])
    assert master["ifname"] == "capm0" and "UP" in master["flags"] and master["mtu"] == 1500
    check_master(_Conf(), master, "")      # usable: up, not ipvlan, MTU enough


def test_a_missing_master_fails_the_batch_at_its_first_line(captured):
    entry = captured["create_missing_master"]
    [failure] = batch_failures(entry["stderr"], lines(entry))
    assert failure.line == lines(entry)[0] and "does not exist" in failure.message          # what _create reads
    assert parse_json_stream(entry["stdout"]) == []


def test_a_name_with_an_apostrophe_reads_back(captured):
    [[link]] = parse_json_stream(captured["show_odd"]["stdout"])
    assert link["ifname"] == "a;b'c" and link["linkinfo"]["info_kind"] == "ipvlan"


def test_the_configure_batch_reads_back_the_mac(captured):
    entry = captured["configure"]
    assert entry["exit"] == 0 and batch_failures(entry["stderr"], lines(entry)) == []
    link = parse_json_stream(entry["stdout"])[-1][0]
    assert link["ifname"] == "eth0" and len(link["address"].split(":")) == 6


def test_what_exists_already_is_told_apart(captured):
    entry = captured["configure_again"]
    failures = batch_failures(entry["stderr"], lines(entry))
    assert {f.line.split()[0] for f in failures} == {"address", "route"}
    assert all("File exists" in f.message for f in failures)    # routes that exist are skipped, as _configure does


def test_check_reads_the_link_its_addresses_routes_and_neighbours(captured):
    (link,), v4, v6, neighbours = parse_json_stream(captured["inspect"]["stdout"])
    assert link["linkinfo"] == {"info_kind": "ipvlan", "info_data": {"mode": "l2", "bridge": True}}
    assert {r["dst"] for r in v4} >= {"default", "10.70.0.0/24"} and "fd70::/64" in {r["dst"] for r in v6}
    routes = {4: v4, 6: v6}
    prev = {"interfaces": [{"name": "eth0", "mac": link["address"]}],
            "ips": [{"address": "10.70.0.5/24", "interface": 0}, {"address": "fd70::5/64", "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.70.0.1"}, {"dst": "::/0", "gw": "fd70::1"}]}
    assert list(drift(_Conf(), prev, 0, link, routes)) == []
    gone = {**prev, "routes": [{"dst": "192.168.9.0/24"}]}
    assert list(drift(_Conf(), gone, 0, link, routes)) == [
        "route to 192.168.9.0/24 through eth0 is missing from table main"]
    # A default route of one family is no stand-in for the other's.
    assert list(drift(_Conf(), prev, 0, link, {4: v4, 6: []})) == [
        "route to ::/0 via fd70::1 through eth0 is missing from table main"]
    assert {"dst": "10.70.0.9", "lladdr": "02:00:00:00:00:09", "state": ["PERMANENT"]} in neighbours


def test_check_of_the_host_side_reads_the_masters_addresses(captured):
    # A read that listed no address would make the check of the container's neighbour entries vacuous.
    master, link, routes, neighbours = parse_json_stream(captured["inspect_host"]["stdout"])
    assert [a["local"] for a in master[0]["addr_info"] if a["scope"] == "global"] == ["10.71.0.2"]
    assert link[0]["ifname"] == "capm0p" and isinstance(routes, list) and isinstance(neighbours, list)


def test_the_default_route_names_its_device(captured):
    [[route]] = parse_json_stream(captured["default_route"]["stdout"])
    assert route["dst"] == "default" and route["dev"] == "eth0"


def test_the_texts_that_mean_already_gone(captured):
    assert captured["show_master_missing"]["exit"] != 0
    assert "Cannot find device" in captured["delete_missing"]["stderr"]          # delete_link's ok_if
    entry = captured["remove_attachment_missing"]
    [failure] = batch_failures(entry["stderr"], lines(entry))
    assert "Cannot find device" in failure.message                               # DEL's "already gone"
    gone = captured["netns_gone"]
    assert gone["exit"] != 0 and any(text in gone["stderr"] for text in GONE)
    assert captured["remove_attachment"]["exit"] == 0


class _Conf:
    mode, flag, mtu, slaac = "l2", "", 0, False

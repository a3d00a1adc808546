"""The netavark front end's translation (Podman 5): podman's JSON in, the
CNI config the CNI path takes out, and a CNI result back as the status
block; the options checked as a CNI config's are, each refusal naming the
podman option. tests/kernel/test_podman5.py runs it under Podman 5 itself."""

import io
import json

import pytest

from ipvlan_ip.front import netavark

NETWORK = {"name": "lan", "id": "2f25", "driver": "ipvlan-ip", "network_interface": "", "ipv6_enabled": True,
           "internal": False, "dns_enabled": False, "ipam_options": {"driver": "host-local"},
           "subnets": [{"subnet": "10.1.2.0/24", "gateway": "10.1.2.1"},
                       {"subnet": "fd00:1::/64", "gateway": "fd00:1::1"}],
           "options": {"parent": "eth0", "mode": "l2"}}


MASTER_MAC = "52:54:00:12:34:56"


@pytest.fixture(autouse=True)
def host(tmp_path, monkeypatch):
    """A host whose one interface is eth0, with MASTER_MAC."""
    (tmp_path / "eth0").mkdir()
    (tmp_path / "eth0" / "address").write_text(MASTER_MAC + "\n")
    monkeypatch.setattr(netavark, "SYS_NET", str(tmp_path))


def call(argv: list[str], stdin: dict | None = None) -> tuple[int, dict]:
    out = io.StringIO()
    code = netavark.main(argv, io.BytesIO(json.dumps(stdin).encode() if stdin is not None else b""), out)
    return code, json.loads(out.getvalue())


def test_info_gives_the_version_and_the_api_version():
    code, answer = call(["info"])
    assert code == 0 and answer["api_version"] == "1.0.0" and answer["version"]


def test_create_takes_parent_as_the_networks_interface_and_returns_the_rest_unchanged():
    code, answer = call(["create"], NETWORK)
    assert code == 0 and answer["network_interface"] == "eth0" and answer["options"] == {"mode": "l2"}
    assert {k: v for k, v in answer.items() if k not in ("network_interface", "options")} == \
        {k: v for k, v in NETWORK.items() if k not in ("network_interface", "options")}


@pytest.mark.parametrize("options, says", [
    ({"mode": "l4"}, "-o mode: 'l4' is not one of"),
    ({"mtu": "big"}, "-o mtu=big: a whole number"),
    ({"vlan": "5000"}, "-o vlan: 5000 is greater than the maximum of 4094"),
    ({"host_access": "yes"}, "-o host_access=yes: true or false"),
    ({"colour": "blue"}, "unknown option -o colour"),
    ({"vlan": "20", "host_access": "true"}, "vlan cannot work with hostAccess"),
    ({"proxy_neighbors": "true"}, "proxyNeighbors is for mode l3s"),
    ({"slaac": "on"}, "-o slaac=on: true or false"),
    ({"timeout": "0"}, "-o timeout: 0 is less than the minimum of 1"),
    ({"mode": "l3", "slaac": "true"}, "slaac"),
])
def test_create_refuses_a_bad_option_naming_it(options, says):
    code, answer = call(["create"], {**NETWORK, "options": {"parent": "eth0", **options}})
    assert code == 1 and says in answer["error"], answer


@pytest.mark.parametrize("value, on", [("true", True), ("1", True), ("TRUE", True), ("false", False), ("0", False),
                                       ("F", False)])
def test_a_switch_is_read_as_podmans_own_boolean_options_are(value, on):
    code, answer = call(["create"], {**NETWORK, "options": {"parent": "eth0", "host_access": value}})
    assert code == 0, answer
    assert netavark.netconf(answer)["hostAccess"] is on


@pytest.mark.parametrize("edit, says", [
    ({"options": {}}, "name the master: -o parent="),
    ({"subnets": []}, "--subnet"),
    ({"ipam_options": {"driver": "dhcp"}}, "leave --subnet out"),
    ({"ipam_options": {"driver": "none"}}, "--ipam-driver none"),
    ({"network_interface": "eth1"}, "name two masters"),
])
def test_create_refuses_what_setup_could_not_serve(edit, says):
    code, answer = call(["create"], {**NETWORK, **edit})
    assert code == 1 and says in answer["error"], answer


def test_the_addresses_podman_assigned_become_a_prevresult_with_a_default_route_per_family():
    network = {**NETWORK, "network_interface": "eth0", "options": {"mode": "l2"},
               "routes": [{"destination": "192.168.0.0/16", "gateway": "10.1.2.254", "metric": 5}]}
    assigned = netavark.assigned(network, {"static_ips": ["10.1.2.5", "fd00:1::5"]})
    assert assigned["ips"] == [{"address": "10.1.2.5/24", "gateway": "10.1.2.1"},
                               {"address": "fd00:1::5/64", "gateway": "fd00:1::1"}]
    assert assigned["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.1.2.1", "priority": 99},
                                  {"dst": "::/0", "gw": "fd00:1::1", "priority": 99},
                                  {"dst": "192.168.0.0/16", "gw": "10.1.2.254", "priority": 5}]
    conf = netavark.netconf(network, assigned)       # the CNI config: checked, and what ADD reads
    assert conf["master"] == "eth0" and conf["prevResult"] == assigned and "ipam" not in conf
    internal = netavark.assigned({**network, "internal": True, "routes": []}, {"static_ips": ["10.1.2.5"]})
    assert internal["routes"] == []
    with pytest.raises(netavark.Refused, match="none of the network's subnets"):
        netavark.assigned(network, {"static_ips": ["10.9.9.9"]})


def test_setup_refuses_a_mac_address_and_an_unknown_subcommand_is_an_error():
    exec_ = {"container_id": "c1", "container_name": "c", "network": {**NETWORK, "network_interface": "eth0"},
             "network_options": {"interface_name": "eth0", "static_ips": ["10.1.2.5"],
                                 "static_mac": "aa:bb:cc:dd:ee:ff"}}
    code, answer = call(["setup", "/run/netns/x"], exec_)
    assert code == 1 and "--mac-address" in answer["error"]
    code, answer = call(["frobnicate"], {})
    assert code == 1 and "unknown subcommand" in answer["error"]


def test_the_cni_result_becomes_the_status_block_podman_inspect_shows():
    result = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "mac": "52:54:00:12:34:56", "sandbox": "/x"}],
              "ips": [{"address": "10.1.2.5/24", "gateway": "10.1.2.1", "interface": 0}], "routes": []}
    assert netavark.status(result) == {
        "dns_search_domains": [], "dns_server_ips": [],
        "interfaces": {"eth0": {"mac_address": "52:54:00:12:34:56",
                                "subnets": [{"ipnet": "10.1.2.5/24", "gateway": "10.1.2.1"}]}}}


def test_setup_takes_the_masters_own_mac_as_reload_and_restore_ask_for_it_and_refuses_another():
    """`podman network reload` and `container restore` set the network up again with the MAC of the
    status block, the master's (issue 50)."""
    network = {**NETWORK, "network_interface": "eth0"}
    netavark._own_mac(network, MASTER_MAC.upper())
    netavark._own_mac(network, "")
    with pytest.raises(netavark.Refused, match=f"eth0's is {MASTER_MAC}"):
        netavark._own_mac(network, "aa:bb:cc:dd:ee:ff")


@pytest.mark.parametrize("network_options", [
    {"interface_name": "eth0"},                                          # podman's IPAM lost the addresses
    {"interface_name": "eth0", "static_ips": ["10.9.9.9"]},              # in none of the subnets
])
@pytest.mark.parametrize("options", [{"mode": "l2"}, {"mode": "l4", "colour": "blue", "mtu": "big"}])
def test_teardown_refuses_nothing_so_that_del_always_runs(network_options, options):
    network = {**NETWORK, "network_interface": "eth0", "options": options}
    conf = netavark.netconf(network, teardown=True)
    assert conf["master"] == "eth0" and "prevResult" not in conf and "colour" not in conf
    exec_ = {"container_id": "gone1", "network": network, "network_options": network_options}
    out = io.StringIO()     # DEL completes: nothing of this container is there; teardown prints nothing then
    assert netavark.main(["teardown", "/run/netns/no-such-netns-of-a-test"],
                         io.BytesIO(json.dumps(exec_).encode()), out) == 0, out.getvalue()
    assert out.getvalue() == ""


def test_create_says_no_dns_runs_fills_the_ipam_driver_and_checks_the_parent_and_the_routes():
    code, answer = call(["create"], {**NETWORK, "dns_enabled": True, "ipam_options": {}})
    assert code == 0 and answer["dns_enabled"] is False and answer["ipam_options"]["driver"] == "host-local"
    for edit, says in (({"network_dns_servers": ["10.1.2.53"]}, "--dns: no DNS server runs"),
                       ({"options": {"parent": "eht1"}}, "-o parent=eht1: the host has no such interface"),
                       ({"routes": [{"destination": "10.9.0.0/16", "route_type": "blackhole"}]},
                        "a blackhole route cannot be given")):
        code, answer = call(["create"], {**NETWORK, **edit})
        assert code == 1 and says in answer["error"], answer


def test_docs_podman_quotes_what_create_prints_for_a_bad_mode():
    from pathlib import Path
    code, answer = call(["create"], {**NETWORK, "options": {"parent": "eth0", "mode": "l4"}})
    page = (Path(__file__).resolve().parents[2] / "docs" / "podman.md").read_text()
    assert code == 1 and f"`{answer['error']}`" in page


def test_metric_and_no_default_route_shape_the_default_routes_as_podmans_own_drivers_do():
    network = {**NETWORK, "network_interface": "eth0", "options": {"mode": "l2", "metric": "150"}}
    routes = netavark.assigned(network, {"static_ips": ["10.1.2.5", "fd00:1::5"]})["routes"]
    assert routes == [{"dst": "0.0.0.0/0", "gw": "10.1.2.1", "priority": 150},
                      {"dst": "::/0", "gw": "fd00:1::1", "priority": 150}]
    network["options"] = {"no_default_route": "1"}
    assert netavark.assigned(network, {"static_ips": ["10.1.2.5"]})["routes"] == []
    options = {"parent": "eth0", "metric": "150", "no_default_route": "0"}
    code, answer = call(["create"], {**NETWORK, "options": options})
    assert code == 0 and answer["options"] == {"metric": "150", "no_default_route": "0"}


@pytest.mark.parametrize("exec_, says", [
    ({"network": {**NETWORK, "network_interface": "eth0", "subnets": [{"subnet": "10.1.2.5/24"}]},
      "network_options": {"interface_name": "eth0", "static_ips": ["10.1.2.5"]}}, "the network's subnet"),
    ({"network": "not an object"}, "setup failed on what podman sent (AttributeError"),
])
def test_any_failure_is_an_answer_netavark_can_read(exec_, says):
    code, answer = call(["setup", "/run/netns/x"], exec_)
    assert code == 1 and says in answer["error"], answer


def test_slaac_and_timeout_are_options_as_their_keys_are_in_a_cni_config():
    code, answer = call(["create"], {**NETWORK, "options": {"parent": "eth0", "slaac": "true", "timeout": "60"}})
    assert code == 0, answer
    conf = netavark.netconf(answer)
    assert conf["ipv6"] == {"slaac": True} and conf["timeout"] == 60


def test_dhcp_is_refused_at_create_while_no_cni_dhcp_daemon_listens(tmp_path, monkeypatch):
    from ipvlan_ip import dhcp
    monkeypatch.setattr(dhcp, "DEFAULT_SOCKET", str(tmp_path / "dhcp.sock"))
    network = {**NETWORK, "subnets": [], "ipam_options": {"driver": "dhcp"}}
    code, answer = call(["create"], network)
    assert code == 1 and f"not listening on {tmp_path}/dhcp.sock" in answer["error"], answer
    (tmp_path / "dhcp.sock").touch()
    code, answer = call(["create"], network)
    assert code == 0 and netavark.netconf(answer)["ipam"] == {"type": "dhcp"}, answer

"""serviceCIDRs: refused without hostAccess and for what is not a prefix; its
routes through the host's address on the master, of each family the
container has, in ADD's configure batch and result (tests/kernel/test_services.py
fetches a page through a ClusterIP with them)."""

import json

import pytest

from ipvlan_ip.capabilities import service_cidrs
from ipvlan_ip.capabilities.capability import Call
from ipvlan_ip.config import load
from ipvlan_ip.environment import CniEnv
from ipvlan_ip.errors import CniError
from ipvlan_ip.tools.plan import plan

from .test_input import ENV, GOOD, answer

SERVICES = {**GOOD, "hostAccess": True, "serviceCIDRs": ["10.96.0.0/12", "fd00:10:96::/112"]}


@pytest.mark.parametrize("edit, says", [
    ({"hostAccess": False}, "serviceCIDRs needs \"hostAccess\": true"),
    ({"serviceCIDRs": ["10.96.0.1/12"]}, "'10.96.0.1/12' is not a prefix"),
    ({"serviceCIDRs": ["10.96.0.0"]}, "serviceCIDRs"),
])
def test_what_it_cannot_serve_is_refused_with_code_7(edit, says):
    code, out = answer(ENV, {**SERVICES, **edit})
    assert code == 1 and out["code"] == 7 and says in out["details"], out


def test_a_route_per_prefix_of_a_family_the_container_has_through_the_hosts_address():
    script = plan(json.dumps(SERVICES).encode(), "/run/netns/blue", "eth0")
    # The placeholder addresses are IPv4: the IPv6 prefix gets no route (the link has IPv6 off).
    host = "192.0.2.254"
    assert f"route add 10.96.0.0/12 via {host} dev eth0" in script and "fd00:10:96::" not in script.split("EOF")[-2]
    conf = load(SERVICES, b"", "ADD")
    master = {"ifname": "eth0", "addr_info": [{"local": "10.1.0.2", "prefixlen": 24, "scope": "global"},
                                              {"local": "fd00:1::2", "prefixlen": 64, "scope": "global"}]}
    call = Call(None, conf, CniEnv("ADD", "c1", "/run/netns/blue", "eth0"))
    routes, lines = service_cidrs.CAPABILITY.container_lines(call, ["10.1.0.5/24", "fd00:1::5/64"], master)
    assert routes == ({"dst": "10.96.0.0/12", "gw": "10.1.0.2"}, {"dst": "fd00:10:96::/112", "gw": "fd00:1::2"})
    assert lines == ("route add 10.96.0.0/12 via 10.1.0.2 dev eth0",
                     "route add fd00:10:96::/112 via fd00:1::2 dev eth0")


def test_a_family_the_container_has_and_the_host_lacks_on_the_master_is_refused_before_anything_routes():
    conf = load(SERVICES, b"", "ADD")
    master = {"ifname": "eth0", "addr_info": [{"local": "10.1.0.2", "prefixlen": 24, "scope": "global"}]}
    call = Call(None, conf, CniEnv("ADD", "c1", "/run/netns/blue", "eth0"))
    with pytest.raises(CniError, match="no IPv6 address on 'eth0' to route fd00:10:96::/112"):
        service_cidrs.CAPABILITY.admit(call, ["10.1.0.5/24", "fd00:1::5/64"], master)
    service_cidrs.CAPABILITY.admit(call, ["10.1.0.5/24"], master)       # an IPv4-only container: fine


class Sysctls:
    """A node's sysctls, as run.host_sysctl reads them."""

    def __init__(self, **values: str):
        self.values = {k.replace("__", "/"): v for k, v in values.items()}

    def host_sysctl(self, key: str) -> str | None:
        return self.values.get(key)


def test_doctor_names_forwarding_and_a_strict_reverse_path_filter_on_the_master():
    from ipvlan_ip.tools.doctor import services_finding
    good = Sysctls(**{"net__ipv4__ip_forward": "1", "net__ipv4__conf__all__rp_filter": "2",
                      "net__ipv4__conf__eth1__rp_filter": "0"})
    assert services_finding(good, "eth1", ["10.96.0.0/12"]).status == "ok"
    strict = Sysctls(**{"net__ipv4__ip_forward": "0", "net__ipv4__conf__eth1__rp_filter": "1"})
    found = services_finding(strict, "eth1", ["10.96.0.0/12", "fd00:10:96::/112"])
    assert found.status == "failure" and "strict reverse-path filter on eth1" in found.text
    assert "net.ipv4.ip_forward=1" in found.fix and "net.ipv6.conf.all.forwarding=1" in found.fix
    assert "net.ipv4.conf.eth1.rp_filter=2" in found.fix

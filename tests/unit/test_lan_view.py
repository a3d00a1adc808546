"""proxyNeighbors and ipv6.slaac: the configs refused before anything is
made, the default that keeps router advertisements out, and what plan shows
(tests/kernel/test_lan_view.py shows what a LAN host sees)."""

import json

import pytest

from ipvlan_ip.tools import plan

from .test_input import ENV, GOOD, answer


@pytest.mark.parametrize("edit, says", [
    ({"proxyNeighbors": True}, "in l2 each container answers"),
    ({"proxyNeighbors": True, "mode": "l3"}, "needs mode l3s"),
    ({"proxyNeighbors": True, "mode": "l3s", "linkInContainer": True}, "cannot work with linkInContainer"),
    ({"ipv6": {"slaac": True}, "mode": "l3s"}, "no multicast reaches"),
    ({"ipv6": {"slaac": "yes"}}, "$.ipv6.slaac"),
    ({"ipv6": {"privacy": True}}, "$.ipv6"),
])
def test_configs_these_keys_cannot_serve_are_refused_with_code_7(edit, says):
    code, out = answer(ENV, {**GOOD, **edit})
    assert code == 1 and out["code"] == 7 and says in out["msg"] + out.get("details", ""), out


def test_every_add_turns_router_advertisements_off_and_slaac_turns_them_back_on_before_the_rename():
    default = plan.plan(json.dumps(GOOD).encode(), "/run/netns/x", "eth0")
    assert "accept_ra=0" in default and "accept_ra=2" not in default
    slaac = plan.plan(json.dumps({**GOOD, "ipv6": {"slaac": True}}).encode(), "/run/netns/x", "eth0")
    lines = slaac.splitlines()
    at = {key: next(n for n, line in enumerate(lines) if key in line)
          for key in ("accept_ra=0", "accept_ra=2", "autoconf=1", "name eth0")}
    assert at["accept_ra=0"] < at["accept_ra=2"] < at["name eth0"] and at["autoconf=1"] < at["name eth0"]


def test_plan_shows_the_proxy_entries_and_the_route_through_lo():
    conf = {**GOOD, "mode": "l3s", "proxyNeighbors": True}
    shown = plan.plan(json.dumps(conf).encode(), "/run/netns/x", "eth0")
    assert "route add 192.0.2.10/32 dev lo" in shown and "neigh replace proxy 192.0.2.10 dev eth0" in shown

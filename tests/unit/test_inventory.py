"""inventory.build, the pure half of `ipvlan-ip show`, on readings shaped as
`ip -j -d address show` prints them: the flags the kernel tests cannot
produce (an ipvlan link's MTU follows its master's down), and the master
found by link-netnsid where indexes repeat across namespaces."""

import json
from pathlib import Path

import jsonschema

from ipvlan_ip import inventory, show
from ipvlan_ip.survey import SeenNetns

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "show.schema.json").read_text())
MAC = "52:54:00:12:34:56"


def link(index, name, mtu=1500, up=True, mac=MAC, ipvlan=None, addresses=()):
    found = {"ifindex": index, "ifname": name, "mtu": mtu, "flags": ["UP"] if up else [], "address": mac,
             "addr_info": [{"family": "inet", "local": a.split("/")[0], "prefixlen": int(a.split("/")[1]),
                            "scope": "global"} for a in addresses]}
    if ipvlan:
        found["linkinfo"] = {"info_kind": "ipvlan", "info_data": {"mode": "l2", "bridge": True}}
        found.update(ipvlan)
    return found


def test_master_found_by_netnsid_among_repeated_indexes_and_mtu_above_it_flagged():
    host = SeenNetns(1, "/proc/self/ns/net", "", [], True)
    a = SeenNetns(2, "/run/netns/a", "a", [], False)
    b = SeenNetns(3, "/run/netns/b", "b", [(42, "sleep")], False)
    read = [(host, [link(2, "eth9")]),
            # b holds index 2 too, with another MAC: only the netnsid tells which netns is meant
            (a, [link(2, "eth0", mtu=9000, ipvlan={"link_index": 2, "link_netnsid": 7}, addresses=["10.0.0.5/24"])]),
            (b, [link(2, "eth1", mac="52:54:00:00:00:01"),
                 link(3, "eth0", ipvlan={"link_index": 5, "link_netnsid": 7})])]
    ids = {("/run/netns/a", "/proc/self/ns/net"): 7, ("/run/netns/b", "/proc/self/ns/net"): 0}
    doc = inventory.build(read, {"/d": {"net/10.0.0.5": "c1\r\neth0"}}, {},
                          lambda inside, of: ids.get((inside, of)))
    jsonschema.validate(doc, SCHEMA)
    [master] = doc["masters"]
    assert master["name"] == "eth9" and [x["name"] for x in master["links"]] == ["eth0"]
    kinds = [(p["kind"], p["link"]) for p in doc["problems"]]
    assert ("mtu-above-master", "eth0") in kinds and ("master-not-found", "eth0") in kinds
    assert next(ns for ns in doc["namespaces"] if ns["name"] == "a")["containerIds"] == ["c1"]
    assert doc["namespaces"][2]["label"] == "b"
    text = show.as_text(doc)
    assert "ipvlan links whose master was not found:" in text and all(len(x) <= 80 for x in text.splitlines())
    assert "mtu 1500" in show.as_dot(doc)

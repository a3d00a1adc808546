"""inventory.build, the pure half of `ipvlan-ip show`, on readings shaped as
`ip -j -d address show` prints them: the flags the kernel tests cannot
produce (an ipvlan link's MTU follows its master's down), and the master
found by link-netnsid where indexes repeat across namespaces."""

import json
from pathlib import Path

import jsonschema

from ipvlan_ip.node.survey import SeenNetns
from ipvlan_ip.tools import inventory, show

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


def vlan_link(index, name, vid, parent):
    return {**link(index, name), "link": parent, "linkinfo": {"info_kind": "vlan", "info_data": {"id": vid}}}


def test_a_vlan_master_is_drawn_under_the_interface_it_tags_on_and_one_of_ours_that_nothing_uses_is_flagged():
    host = SeenNetns(1, "/proc/self/ns/net", "", [], True)
    a = SeenNetns(2, "/run/netns/a", "a", [], False)
    read = [(host, [link(2, "eth0"), vlan_link(5, "eth0.20", 20, "eth0"), vlan_link(6, "eth0.30", 30, "eth0"),
                    vlan_link(7, "eth0.40", 40, "eth0")]),
            (a, [link(3, "eth0", ipvlan={"link_index": 5, "link_netnsid": 0}, addresses=["10.0.0.5/24"])])]
    # eth0.20 and eth0.30 are the plugin's; eth0.40, the node owner's, carries nothing and is no concern of ours.
    doc = inventory.build(read, {"/d": {"net/10.0.0.5": "c1\neth0"}}, {}, lambda inside, of: 0, {"eth0.20", "eth0.30"})
    jsonschema.validate(doc, SCHEMA)
    masters = {m["name"]: m for m in doc["masters"]}
    assert set(masters) == {"eth0.20", "eth0.30"}
    assert masters["eth0.20"]["vlan"] == {"id": 20, "parent": "eth0", "made": True}
    assert [x["name"] for x in masters["eth0.20"]["links"]] == ["eth0"] and masters["eth0.30"]["links"] == []
    assert [(p["kind"], p["link"]) for p in doc["problems"]] == [("unused-vlan-link", "eth0.30")]
    text = show.as_text(doc).splitlines()
    assert text[:3] == ["eth0 in host", "└── eth0.20: VLAN 20, made by ipvlan-ip, up, mtu 1500",
                        "    └── eth0 in a [container c1]  l2 bridge, up, mtu 1500"]
    assert text.count("eth0 in host") == 1        # once for both VLANs
    dot = show.as_dot(doc)
    assert dot.count('[shape=box, label="eth0"]') == 1 and 'label="VLAN 20 (made by ipvlan-ip)"' in dot

"""What `ipvlan-ip show` reports: every master, the ipvlan links on it
across network namespaces, and what is wrong, as one document (described by
schemas/show.schema.json; show.py draws it as text or DOT).

collect() gathers the readings through the runner: the namespaces, one
`ip -j -d address show` per namespace, host-local's reservations and the
runtimes' CNI result cache. build() turns them into the document; the only
thing it asks the kernel is which namespace a link's link-netnsid names
(the `nsid` function it is given), since a link knows its master only by
that id and the master's index there.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor

from .. import commands
from ..capabilities import vlan
from ..commands import Netns
from ..errors import CniError

DEFAULT_DATA_DIR = "/var/lib/cni/networks"
DEFAULT_CONF_DIRS = ("/etc/cni/net.d",)
DEFAULT_CACHE_DIR = "/var/lib/cni/results"
TEMPORARY = re.compile(r"^ipvl[0-9a-f]{8}$")     # commands.temporary_name
READERS = 8     # `ip` processes at once: the reads are independent, and mostly waiting


def collect(run, ipam_dirs=(), conf_dirs=DEFAULT_CONF_DIRS, cache_dir=DEFAULT_CACHE_DIR) -> dict:
    spaces = run.namespaces()
    with ThreadPoolExecutor(READERS) as pool:
        readings = list(pool.map(lambda ns: _read(run, ns), spaces))
    dirs = data_dirs(run, ipam_dirs, conf_dirs)
    reservations = {d: run.read_files(d, 2) for d in dirs}
    host = next((read for ns, read in zip(spaces, readings) if ns.host), [])
    made = {link["ifname"] for link in host if link.get("ifalias") == vlan.MADE}
    return build(list(zip(spaces, readings)), reservations, run.read_files(cache_dir, 1), run.nsid,
                 made | set(run.read_files(vlan.LEGACY, 1)))


def _read(run, ns) -> list:
    netns = None if ns.host else Netns(ns.path, ns.name)
    try:
        return run.run_json(commands.list_addresses(netns))[0]
    except CniError:        # gone meanwhile (a container stopped): nothing to show there
        return []


def data_dirs(run, given, conf_dirs) -> list[str]:
    """host-local's dataDirs: the default, those given, and those the
    network configs in the CNI config dirs name."""
    found = [DEFAULT_DATA_DIR, *given]
    for directory in conf_dirs:
        for text in run.read_files(directory, 1).values():
            try:
                conf = json.loads(text)
            except ValueError:
                continue
            for plugin in (conf.get("plugins") or [conf]) if isinstance(conf, dict) else []:
                ipam = plugin.get("ipam") if isinstance(plugin, dict) else None
                if isinstance(ipam, dict) and ipam.get("type") == "host-local" and ipam.get("dataDir"):
                    found.append(ipam["dataDir"])
    return list(dict.fromkeys(os.path.normpath(d) for d in found))


# ---------------------------------------------------------------- the document

def build(read: list, reservations: dict[str, dict[str, str]], cache: dict[str, str], nsid,
          made_vlans: Collection[str] = ()) -> dict:
    """`read`: (SeenNetns, its `ip -j -d address show`) pairs; `reservations`:
    per dataDir, host-local's files by NETWORK/IP; `cache`: libcni's result
    files; `nsid(inside, of)`: the id the netns at path `inside` gives the
    one at path `of`; `made_vlans`: the host's VLAN links the plugin made
    (vlan.py)."""
    spaces = _namespaces(read)
    held_by_cache, cached_ids = _cached(cache)
    reserved = _reservations(reservations)
    for ns in spaces:
        carried = {ip for link in ns["links"] for ip in _ips(link)}
        by_address = {r["containerId"] for r in reserved if r["address"] in carried and r["containerId"]}
        ns["containerIds"] = sorted(by_address | cached_ids.get(ns["path"], set()))
        ns["label"] = _label(ns)
    everywhere = {ip for ns in spaces for link in ns["links"] for ip in _ips(link)}
    for r in reserved:
        r["live"] = r["address"] in everywhere
    held = held_by_cache | {r["address"] for r in reserved}

    masters: dict[tuple[str, int], dict] = {}
    unresolved = []
    for ns in spaces:
        for link in ns["links"]:
            if link.get("linkinfo", {}).get("info_kind") != "ipvlan":
                continue
            found = _master_of(link, ns, spaces, nsid)
            entry = _link(link, ns)
            if found is None:
                unresolved.append(entry)
                continue
            master_ns, master = found
            key = (master_ns["id"], master["ifindex"])
            if key not in masters:
                masters[key] = {**_master(master, master_ns), "links": []}
            masters[key]["links"].append(entry)

    # A VLAN link the plugin made is drawn between its parent and its ipvlan links, and with none too.
    host: dict = spaces[0] if spaces and spaces[0]["host"] else {"id": None, "links": []}
    for link in host["links"]:
        if link["ifname"] in made_vlans and (host["id"], link["ifindex"]) not in masters:
            masters[(host["id"], link["ifindex"])] = {**_master(link, host), "links": []}
    for (ns_id, index), master in masters.items():
        shown = next(link for ns in spaces if ns["id"] == ns_id for link in ns["links"] if link["ifindex"] == index)
        if shown.get("linkinfo", {}).get("info_kind") == "vlan":
            master["vlan"] = {"id": shown["linkinfo"].get("info_data", {}).get("id", 0),
                              "parent": shown.get("link", "?"),
                              "made": ns_id == host["id"] and master["name"] in made_vlans}

    problems: list[dict] = []
    for master in masters.values():
        _check(master, spaces, held, problems)
    for entry in unresolved:
        _check_link(entry, None, spaces, held, problems)
    for r in reserved:
        if not r["live"]:
            problems.append(_problem("leaked-reservation", None, None,
                                     f"host-local holds {r['address']} in {r['dataDir']}/{r['network']} for "
                                     f"container {r['containerId'] or '?'} ({r['ifname'] or '?'}), but no "
                                     "interface carries it: run DEL (or GC) for that container, or remove "
                                     f"{r['dataDir']}/{r['network']}/{r['file']}"))
    return {"namespaces": [{k: v for k, v in ns.items() if k != "links"} for ns in spaces],
            "masters": sorted(masters.values(), key=lambda m: (m["netns"] != spaces[0]["id"], m["name"])),
            "unresolved": unresolved,
            "reservations": [{k: v for k, v in r.items() if k != "file"} for r in reserved],
            "problems": problems}


def _namespaces(read: list) -> list[dict]:
    ordered = sorted(read, key=lambda pair: (not pair[0].host, not pair[0].name, pair[0].name,
                                             pair[0].pids[0][0] if pair[0].pids else 0))
    return [{"id": f"ns{n}", "inode": ns.inode, "path": ns.path, "name": ns.name or None, "host": ns.host,
             "pids": [{"pid": pid, "command": comm} for pid, comm in ns.pids], "containerIds": [],
             "links": links}
            for n, (ns, links) in enumerate(ordered)]


def _label(ns: dict) -> str:
    if ns["host"]:
        base = "host"
    elif ns["name"]:
        base = ns["name"]
    elif ns["pids"]:
        first = ns["pids"][0]
        more = f" +{len(ns['pids']) - 1}" if len(ns["pids"]) > 1 else ""
        base = f"pid {first['pid']} ({first['command']}){more}"
    else:
        base = ns["path"]
    ids = ", ".join(c[:12] for c in ns["containerIds"])
    return f"{base} [container {ids}]" if ids else base


def _cached(cache: dict[str, str]) -> tuple[set[str], dict[str, set[str]]]:
    """From libcni's cache: the addresses its results hold, and the container
    IDs by netns path (each result's interfaces name their sandbox)."""
    held: set[str] = set()
    ids: dict[str, set[str]] = {}
    for text in cache.values():
        try:
            entry = json.loads(text)
            result = entry.get("result") or {}
            held |= {ipc["address"].split("/")[0] for ipc in result.get("ips", []) if "address" in ipc}
            for interface in result.get("interfaces", []):
                if interface.get("sandbox") and entry.get("containerId"):
                    ids.setdefault(interface["sandbox"], set()).add(entry["containerId"])
        except (ValueError, AttributeError, TypeError):
            continue
    return held, ids


def _reservations(found: dict[str, dict[str, str]]) -> list[dict]:
    """host-local's reservation files: DATADIR/NETWORK/IP, holding the
    container ID and, since 0.8, a line with the interface name."""
    reserved = []
    for data_dir, files in sorted(found.items()):
        for relative, text in sorted(files.items()):
            network, _, name = relative.partition("/")
            try:
                address = str(ipaddress.ip_address(name.replace("_", ":")))
            except ValueError:          # last_reserved_ip.N, lock
                continue
            lines = text.split()
            reserved.append({"dataDir": data_dir, "network": network, "address": address, "file": name,
                             "containerId": lines[0] if lines else "", "ifname": lines[1] if len(lines) > 1 else ""})
    return reserved


def _ips(link: dict) -> list[str]:
    return [address.split("/")[0] for address in _addresses(link)]


def _addresses(link: dict) -> list[str]:
    return [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])
            if a.get("scope") != "link" and "local" in a]


def _state(link: dict) -> str:
    return "up" if "UP" in link.get("flags", []) else "down"


def _master(link: dict, ns: dict) -> dict:
    return {"netns": ns["id"], "name": link["ifname"], "index": link["ifindex"], "state": _state(link),
            "mtu": link.get("mtu", 0), "mac": link.get("address", ""), "addresses": _addresses(link), "problems": []}


def _link(link: dict, ns: dict) -> dict:
    data = link.get("linkinfo", {}).get("info_data", {})
    flag = next((f for f in ("bridge", "private", "vepa") if data.get(f)), "bridge")
    return {"netns": ns["id"], "name": link["ifname"], "index": link["ifindex"], "mode": data.get("mode", "?"),
            "flag": flag, "state": _state(link), "mtu": link.get("mtu", 0), "mac": link.get("address", ""),
            "addresses": _addresses(link), "temporary": bool(TEMPORARY.match(link["ifname"])), "problems": []}


def _master_of(link: dict, ns: dict, spaces: list[dict], nsid):
    """(netns, master link) for an ipvlan link: in its own netns by the name
    `ip` gives, or in the netns its link-netnsid names, at its link index.
    Indexes repeat across namespaces, so the candidates holding that index
    are confirmed by asking which one the id names, those with the link's
    MAC (an ipvlan link carries its master's) first."""
    if "link_netnsid" not in link:
        name = link.get("link")
        return next(((ns, m) for m in ns["links"] if m["ifname"] == name), None) if name else None
    index, wanted = link.get("link_index"), link["link_netnsid"]
    candidates = [(other, m) for other in spaces if other is not ns
                  for m in other["links"] if m["ifindex"] == index]
    candidates.sort(key=lambda c: c[1].get("address") != link.get("address"))
    for other, master in candidates:
        try:
            if nsid(ns["path"], other["path"]) == wanted:
                return other, master
        except OSError:         # gone meanwhile
            continue
    return None


def _problem(kind: str, ns: str | None, link: str | None, text: str) -> dict:
    return {"kind": kind, "netns": ns, "link": link, "text": text}


def _fix(ns: dict, *args: str) -> str:
    import shlex
    netns = None if ns["host"] else Netns(ns["path"], ns["name"] or "")
    return shlex.join(commands.ip(netns, *args))


def _check(master: dict, spaces: list[dict], held: set[str], problems: list[dict]) -> None:
    ns = next(s for s in spaces if s["id"] == master["netns"])
    if master.get("vlan", {}).get("made") and not master["links"]:
        master["problems"].append("unused-vlan-link")
        problems.append(_problem("unused-vlan-link", ns["id"], master["name"],
                                 f"VLAN link {master['name']} was made by ipvlan-ip (\"vlan\" in a config) and "
                                 "no ipvlan link is on it: the next DEL or GC of a network on it removes it, or "
                                 f"{_fix(ns, 'link', 'del', 'dev', master['name'])}"))
    if master["state"] != "up":
        master["problems"].append("master-down")
        problems.append(_problem("master-down", ns["id"], master["name"],
                                 f"master {master['name']} in {ns['label']} is down, so its "
                                 f"{len(master['links'])} ipvlan link(s) carry nothing: "
                                 f"{_fix(ns, 'link', 'set', 'dev', master['name'], 'up')}"))
    for link in master["links"]:
        _check_link(link, master, spaces, held, problems)


def _check_link(link: dict, master: dict | None, spaces: list[dict], held: set[str], problems: list[dict]) -> None:
    ns = next(s for s in spaces if s["id"] == link["netns"])
    found = []
    if link["temporary"]:
        found.append(("temporary-link", f"{link['name']} in {ns['label']} is the temporary link of an ADD that "
                      "was killed before renaming it: run DEL for its container, or "
                      f"{_fix(ns, 'link', 'del', 'dev', link['name'])}"))
    for address in link["addresses"]:
        if address.split("/")[0] not in held:
            found.append(("unheld-address", f"{address} on {link['name']} in {ns['label']} is held by no IPAM "
                          "(no host-local reservation, no cached CNI result): IPAM may give it to another "
                          "container; run DEL, then ADD, for this container"))
    if master and link["mtu"] > master["mtu"]:
        found.append(("mtu-above-master", f"{link['name']} in {ns['label']} has MTU {link['mtu']}, above the "
                      f"{master['mtu']} of its master {master['name']}: larger packets are dropped; "
                      f"{_fix(ns, 'link', 'set', 'dev', link['name'], 'mtu', str(master['mtu']))}"))
    if master is None:
        found.append(("master-not-found", f"{link['name']} in {ns['label']}: its master's netns was not found "
                      "(neither named in /run/netns nor held by a process)"))
    for kind, text in found:
        link["problems"].append(kind)
        problems.append(_problem(kind, ns["id"], link["name"], text))

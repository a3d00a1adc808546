"""CHECK's comparison: each way the kernel's state of the container's link
differs from prevResult and the config, read from what
commands.inspect_container printed. Pure: data in, problems out."""
from __future__ import annotations

from .config import NetConf


def problems(conf: NetConf, prev: dict, index: int, link: dict, routes: dict[int, list]):
    """Each way the kernel's state differs from prevResult and the config;
    `routes` by family, as inspect_container read them."""
    import ipaddress  # CHECK's alone: the other commands start without it
    name = link["ifname"]
    info = link.get("linkinfo", {})
    if info.get("info_kind") != "ipvlan":
        yield f"interface {name!r} is not an ipvlan link (it is {info.get('info_kind') or 'a plain device'})"
        return
    data = info.get("info_data", {})
    if data.get("mode") != conf.mode:
        yield f"ipvlan mode of {name!r} is {data.get('mode')}, expected {conf.mode}"
    flag = conf.flag or "bridge"
    if any(k in data for k in ("bridge", "private", "vepa")) and not data.get(flag):
        yield f"ipvlan flag of {name!r} is not {flag}"
    mac = prev["interfaces"][index].get("mac")
    if mac and mac.lower() != link.get("address", "").lower():
        yield f"MAC of {name!r} is {link.get('address')}, prevResult says {mac}"
    present = {ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}") for a in link.get("addr_info", [])}
    for ipc in prev["ips"]:
        if ipc.get("interface", index) == index and ipaddress.ip_interface(ipc["address"]) not in present:
            yield f"address {ipc['address']} is missing from {name!r}"
    mine = [ipc["address"] for ipc in prev["ips"] if ipc.get("interface", index) == index]
    if not conf.slaac and not any(ipaddress.ip_interface(a).version == 6 for a in mine):
        v6 = [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []) if a.get("family") == "inet6"]
        if v6:
            yield (f"IPv6 is on for {name!r} ({', '.join(v6)}), which has no IPv6 address from IPAM: ADD turned it "
                   "off (net.ipv6.conf.IFNAME.disable_ipv6 1), so that an IPv4 network joins no IPv6 multicast")
    for a in link.get("addr_info", []) if not conf.slaac else []:
        if a.get("family") == "inet6" and a.get("scope") == "global" and a.get("dynamic"):
            yield (f"{name!r} has {a['local']}/{a['prefixlen']} from a router advertisement (SLAAC), which ADD "
                   "turned off: its addresses are IPAM's (\"ipv6\": {\"slaac\": true} asks for them)")
    for route in prev["routes"]:
        want = ipaddress.ip_network(route["dst"], strict=False)
        if not any(_same_route(route, want, name, have) for have in routes[want.version]):
            yield (f"route to {route['dst']}{' via ' + route['gw'] if route.get('gw') else ''} "
                   f"through {name} is missing from table {route.get('table', 'main')}")


# iproute2 names these tables rather than number them.
_TABLES = {253: "default", 254: "main", 255: "local"}


def _same_route(want: dict, dst, dev: str, have: dict) -> bool:
    """Whether `have`, a route of dst's family as `ip -j -d route show`
    lists it, is `want`: same destination, through `dev`, in its table
    (main when the result names none), by its gateway when it has one."""
    import ipaddress
    table = want.get("table", 254)
    if have.get("dev") != dev or have.get("table", "main") != _TABLES.get(table, str(table)):
        return False
    try:
        have_dst = ipaddress.ip_network("::/0" if dst.version == 6 else "0.0.0.0/0") \
            if have.get("dst") == "default" else ipaddress.ip_network(have.get("dst", ""), strict=False)
    except ValueError:
        return False
    if have_dst != dst:
        return False
    return not want.get("gw") or ipaddress.ip_address(want["gw"]) == ipaddress.ip_address(have.get("gateway", "0::0"))

"""podman 4 with its CNI backend attaches containers through ipvlan-ip.

The config is docs/podman/ (what docs/install.md shows), with only the paths, the
master and the subnet changed (tests/kernel/runtimes.py): podman's store and
state live in the test run's own folder, and ipvlan-ip is put in a plugin dir
of its own by `ipvlan-ip install`. Each podman command costs 5-20 s in the VM,
so each test is one scenario with as few of them as it can."""

from pathlib import Path

from .conftest import reservations
from .runtimes import eth, ipv4


def inside_addresses(text: str) -> dict[str, str]:
    """Interface name -> address/prefix, from `ip -o -4 addr show` run in the container."""
    return {fields[1]: fields[3] for fields in map(str.split, text.splitlines()) if fields[2:3] == ["inet"]}


def deleted_cleanly(log: Path, container: dict) -> bool:
    """Our DEL for this container ran (its debug log says so) and found eth0
    there to delete, so podman's DEL went through ipvlan-ip."""
    ours = [line for line in log.read_text().splitlines() if f" {container['Id']} " in line]
    return (any('"CNI_COMMAND": "DEL"' in line for line in ours)
            and any("# delete eth0 in " in line for line in ours)
            and not any("already deleted" in line for line in ours))


def test_podman_containers_on_an_ipvlan_network(podman, make_master, tmp_path):
    ipam_dir = tmp_path / "ipam"
    net = podman.network("ipv-a", make_master(), "10.81.0.0/24", ipam_dir, tuning=True)
    a, b = podman.start(net), podman.start(net)

    link_a, link_b = eth(a, "eth0"), eth(b, "eth0")
    for link in (link_a, link_b):
        assert link["linkinfo"]["info_kind"] == "ipvlan"
        assert link["linkinfo"]["info_data"]["mode"] == "l2"
    addr_a, addr_b = ipv4(link_a), ipv4(link_b)
    assert addr_a != addr_b and reservations(ipam_dir) == sorted([addr_a, addr_b])
    assert a["NetworkSettings"]["Networks"][net]["IPAddress"] == addr_a

    inside = podman("exec", a["Id"], "sh", "-c",
                    "ip -o -4 addr show eth0; cat /proc/sys/net/ipv4/conf/eth0/arp_ignore").stdout
    assert inside_addresses(inside) == {"eth0": f"{addr_a}/24"}
    assert inside.split()[-1] == "1"          # the tuning plugin ran after ipvlan-ip
    ping = podman("exec", a["Id"], "ping", "-c", "1", "-W", "5", addr_b, check=False)
    assert ping.returncode == 0, ping.stdout + ping.stderr

    podman.remove(a["Id"], b["Id"])
    assert reservations(ipam_dir) == []
    for container in (a, b):
        assert not Path(container["NetworkSettings"]["SandboxKey"]).exists()
        assert deleted_cleanly(podman.root / f"{net}.log", container)


def test_podman_container_on_two_ipvlan_networks(podman, make_master, tmp_path):
    first = podman.network("ipv-b", make_master(), "10.82.0.0/24", tmp_path / "ipam-b", tuning=False)
    second = podman.network("ipv-c", make_master(), "10.83.0.0/24", tmp_path / "ipam-c", tuning=False)
    c = podman.start(first, second)

    inside = inside_addresses(podman("exec", c["Id"], "ip", "-o", "-4", "addr", "show").stdout)
    links = {ifname: eth(c, ifname) for ifname in ("eth0", "eth1")}
    assert all(link["linkinfo"]["info_kind"] == "ipvlan" for link in links.values())
    # Which network gets eth0 is podman's choice (it has varied from run to run): podman's own
    # record says which address each network got; each is on one of the links, from its own IPAM.
    for net, ipam_dir, prefix in ((first, tmp_path / "ipam-b", "10.82."), (second, tmp_path / "ipam-c", "10.83.")):
        address = c["NetworkSettings"]["Networks"][net]["IPAddress"]
        [ifname] = [name for name, link in links.items() if ipv4(link) == address]
        assert address.startswith(prefix) and reservations(ipam_dir) == [address]
        assert inside[ifname] == f"{address}/24"

    podman.remove(c["Id"])
    assert reservations(tmp_path / "ipam-b") == reservations(tmp_path / "ipam-c") == []

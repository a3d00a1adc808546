"""hostAccess's commands, from data to exact `ip` lines (tests/kernel/test_host_access.py
shows them working against the kernel), and the configs it refuses before anything is made."""

import contextlib
import io
import json
import re

import pytest

from ipvlan_ip import commands, config
from ipvlan_ip.capabilities import host_access
from ipvlan_ip.capabilities.capability import Call
from ipvlan_ip.environment import CniEnv
from ipvlan_ip.errors import CniError
from ipvlan_ip.front import plugin
from ipvlan_ip.node.runner import BatchFailure
from ipvlan_ip.tools.plan import plan

from .test_input import ENV, GOOD


def test_the_host_link_is_named_after_its_master_and_made_once():
    name = host_access.link_name("eth0")
    assert name == host_access.link_name("eth0") != host_access.link_name("eth1")
    assert len(name) <= 15 and name.startswith("ipvh")
    # Made down: it comes up once it takes no router advertisement (commands.quiet_host_link).
    assert host_access.link_lines("eth0", "l3s", "", exists=False) == (
        f"link add link eth0 name {name} type ipvlan mode l3s",)
    assert host_access.link_lines("eth0", "l2", "bridge", exists=True) == (f"link set dev {name} up",)


def test_the_create_batch_reads_the_masters_addresses_and_makes_the_host_link_before_the_containers():
    made = created(plan(json.dumps({**GOOD, "hostAccess": True}).encode(), "/run/netns/blue", "eth0",
                        container_id="c1"))
    assert made == ("address show dev eth0", *host_access.link_lines("eth0", "l2", "", exists=False),
                    f"link add link eth0 name {commands.temporary_name('c1', 'eth0')} netns /run/netns/blue "
                    "type ipvlan mode l2")
    # Without hostAccess, nothing changes.
    assert created(plan(json.dumps(GOOD).encode(), "/run/netns/blue", "eth0"))[0] == "link show dev eth0"


def created(script: str) -> tuple[str, ...]:
    """The lines of the batch that creates the link, in an ADD's plan."""
    return next(tuple(block.split("\n")) for block in re.findall(r"<<'EOF'\n(.*?)\nEOF", script, re.S)
                if "type ipvlan" in block)


def test_host_routes_go_through_the_host_link_from_the_hosts_own_address():
    cmd = host_access.routes_on_host("ipvh1", ["10.1.2.5/24", "fd00::5/64"], ["10.1.2.1/24", "fd00::1/64"])
    # add, never replace: a route that is there is another attachment's. No -force: the batch stops
    # at the first failure, so the lines before it are exactly what was made.
    assert cmd.argv == ("ip", "-batch", "-")
    assert cmd.batch == ("route add 10.1.2.5/32 dev ipvh1 src 10.1.2.1",
                         "route add fd00::5/128 dev ipvh1 src fd00::1")
    # A family the host has no address of on the master: no source.
    assert host_access.routes_on_host("ipvh1", ["fd00::5/64"], ["10.1.2.1/24"]).batch == (
        "route add fd00::5/128 dev ipvh1",)
    # A route shown stale (attach) is replaced.
    assert host_access.routes_on_host("ipvh1", ["10.1.2.5/24"], [], stale=frozenset({"10.1.2.5/32"})).batch == (
        "route replace 10.1.2.5/32 dev ipvh1",)


def test_in_l2_the_host_link_knows_each_container_by_the_masters_mac():
    cmd = host_access.routes_on_host("ipvh1", ["10.1.2.5/24", "10.1.2.6/24"], ["10.1.2.1/24"], mac="aa:bb:cc:dd:ee:ff")
    assert cmd.batch == ("route add 10.1.2.5/32 dev ipvh1 src 10.1.2.1",     # the routes first
                         "route add 10.1.2.6/32 dev ipvh1 src 10.1.2.1",
                         "neigh replace 10.1.2.5 lladdr aa:bb:cc:dd:ee:ff dev ipvh1 nud permanent",
                         "neigh replace 10.1.2.6 lladdr aa:bb:cc:dd:ee:ff dev ipvh1 nud permanent")
    undo = host_access.unroute({"link": "ipvh1", "routes": ["10.1.2.5/32"], "neighbours": ["10.1.2.5"]})
    # flush, not del: iproute2 exits mid-batch when `neigh del` finds no entry
    assert undo.batch == ("route del 10.1.2.5/32 dev ipvh1", "neigh flush to 10.1.2.5 dev ipvh1 nud permanent")


def test_the_container_gets_routes_only_to_host_addresses_its_subnets_miss():
    assert host_access.routes_in_container(["10.1.2.5/24"], ["10.1.2.1/24"]) == ()
    assert host_access.routes_in_container(["10.1.2.5/24"], ["192.168.7.3/24", "fd00::1/64"]) == ("192.168.7.3/32",)
    assert host_access.routes_in_container(["10.1.2.5/24", "fd01::5/64"], ["fd00::1/64"]) == ("fd00::1/128",)


def test_host_addresses_are_the_global_ones_on_the_master():
    read = {"ifname": "eth0", "addr_info": [{"local": "10.1.2.1", "prefixlen": 24, "scope": "global"},
                                            {"local": "fe80::1", "prefixlen": 64, "scope": "link"}]}
    assert host_access.host_addresses(read) == ["10.1.2.1/24"]


@pytest.mark.parametrize("extra, said", [({"flag": "private"}, "flag 'private'"), ({"flag": "vepa"}, "flag 'vepa'"),
                                         ({"linkInContainer": True}, "linkInContainer")])
def test_configs_where_it_cannot_work_are_refused_before_anything(extra, said):
    out = io.StringIO()
    conf = {**GOOD, "hostAccess": True, **extra}
    assert plugin.main(ENV, json.dumps(conf).encode(), out) == 1
    error = json.loads(out.getvalue())
    assert error["code"] == 7 and "hostAccess cannot work with" in error["details"] and said in error["details"]


def test_records_are_kept_per_network_and_attachment():
    assert host_access.record_path("lan", "c1", "eth0") == "/run/ipvlan-ip/host-access/lan/c1:eth0"
    # Without a name, not in the folder above every network's, which GC would read as this network's.
    assert host_access.record_path("", "c1", "eth0") == "/run/ipvlan-ip/host-access/-unnamed/c1:eth0"


def test_in_l2_the_container_knows_the_hosts_addresses_by_the_masters_mac():
    lines = host_access.container_lines("eth0", ("198.51.100.2/32",), ["198.51.100.2/24", "fd00::1/64"],
                                        ["10.1.2.5/24"], mac="aa:bb:cc:dd:ee:ff")
    assert lines == ("route add 198.51.100.2/32 dev eth0",       # only families the container has
                     "neigh replace 198.51.100.2 lladdr aa:bb:cc:dd:ee:ff dev eth0 nud permanent")
    assert host_access.container_lines("eth0", (), ["10.1.2.1/24"], ["10.1.2.5/24"]) == ()   # l3: no ARP


class Host:
    """Records in a dict, and a routing table the batches change as the kernel would."""

    def __init__(self, routes: dict[str, str], records: dict[str, dict]):
        self.routes, self.records, self.batches = routes, records, []

    def echo(self, text: str) -> None:
        pass

    def exclusive(self, path, create=False, shared=False, patience=1.0):
        return contextlib.nullcontext()

    def save_record(self, path: str, record) -> None:
        if record is None:
            self.records.pop(path, None)
        else:
            self.records[path] = record

    def load_record(self, path: str):
        return self.records.get(path)

    def load_records(self, directory: str) -> dict:
        return {path.removeprefix(directory + "/"): r for path, r in self.records.items()
                if path.startswith(directory + "/")}

    def run_batch_ok(self, cmd):
        return self.run_batch(cmd)[0]

    def run_batch(self, cmd):
        self.batches.append(cmd.batch)
        for line in cmd.batch:
            verb, how, dst, _, dev, *_ = line.split()
            if verb == "route":
                if how == "add" and dst in self.routes:
                    return [], [BatchFailure(line, "RTNETLINK answers: File exists")]
                self.routes[dst] = dev
        return [], []


MASTER = {"ifname": "eth0", "address": "aa:bb:cc:dd:ee:ff", "addr_info": []}


def call(host, mode: str) -> Call:
    """The ADD of container `new`'s eth0 on network `net`, in `mode`."""
    return Call(host, config.load({**GOOD, "name": "net", "mode": mode, "hostAccess": True}, b"", "ADD"),
                CniEnv("ADD", "new", "/run/netns/new", "eth0"))
LINK = host_access.link_name("eth0")
OWN = host_access.record_path("net", "new", "eth0")


def test_a_route_of_another_master_stays_its_own_and_the_record_keeps_only_what_was_made():
    host = Host({"10.0.0.6/32": "ipvh00000000"}, {})
    with pytest.raises(CniError) as caught:
        host_access.attach(call(host, "l3"), MASTER, ["10.0.0.5/24", "10.0.0.6/24", "10.0.0.7/24"])
    assert "already has a route to 10.0.0.6/32" in caught.value.details
    assert host.routes == {"10.0.0.6/32": "ipvh00000000", "10.0.0.5/32": LINK}       # untouched; 10.0.0.7 not tried
    assert host.records[OWN]["routes"] == ["10.0.0.5/32"]                              # what a rollback removes


def test_a_stale_route_of_its_own_link_is_taken_over_and_its_old_record_lets_go():
    stale = f"{host_access.STATE}/net/gone:eth0"
    held = {"master": "eth0", "link": LINK, "routes": ["10.0.0.5/32", "10.0.0.9/32"],
            "neighbours": ["10.0.0.5", "10.0.0.9"]}
    host = Host({"10.0.0.5/32": LINK}, {stale: held})
    host_access.attach(call(host, "l2"), MASTER, ["10.0.0.5/24"])
    assert host.batches[-1][0] == f"route replace 10.0.0.5/32 dev {LINK}"
    assert host.records[OWN]["routes"] == ["10.0.0.5/32"] and host.records[OWN]["neighbours"] == ["10.0.0.5"]
    assert host.records[stale]["routes"] == ["10.0.0.9/32"] and host.records[stale]["neighbours"] == ["10.0.0.9"]


class Locking(Host):
    """A Host that knows which locks are held, and fails a write of a
    record other than `own` made without the lock its DEL and GC hold."""

    def __init__(self, routes: dict[str, str], records: dict[str, dict], own: str):
        super().__init__(routes, records)
        self.own, self.held = own, set()

    @contextlib.contextmanager
    def exclusive(self, path, create=False, shared=False, patience=1.0):
        self.held.add(path)
        try:
            yield
        finally:
            self.held.discard(path)

    def save_record(self, path: str, record) -> None:
        if path != self.own:
            assert host_access.lock_path(LINK) in self.held, f"{path} written without the master's lock"
        super().save_record(path, record)


def test_another_attachments_record_is_only_written_under_the_lock_its_del_reads_it_under():
    stale = f"{host_access.STATE}/net/gone:eth0"
    held = {"master": "eth0", "link": LINK, "routes": ["10.0.0.5/32"], "neighbours": ["10.0.0.5"]}
    host = Locking({"10.0.0.5/32": LINK}, {stale: dict(held)}, own=OWN)
    host_access.attach(call(host, "l2"), MASTER, ["10.0.0.5/24"])     # takes the route over
    assert host.records[stale]["routes"] == []
    host.own = ""       # the old container's DEL: its record goes under the lock too
    host_access.detach(host, host_access.record_path("net", "gone", "eth0"))
    assert stale not in host.records and host.routes == {"10.0.0.5/32": LINK}


def test_a_route_of_its_own_link_that_no_record_claims_is_left_alone():
    host = Host({"10.0.0.5/32": LINK}, {})
    with pytest.raises(CniError):
        host_access.attach(call(host, "l2"), MASTER, ["10.0.0.5/24"])
    assert len(host.batches) == 1 and host.records[OWN]["routes"] == []

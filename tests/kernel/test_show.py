"""`ipvlan-ip show` against the kernel: two masters in different modes with
containers in named netns, a leaked host-local reservation, a temporary link
left by a killed ADD, an address no IPAM holds, and a master set down; each
appears in the text, the JSON (validated against schemas/show.schema.json)
and the DOT (rendered to SVG by Graphviz). show changes nothing, and runs one
`ip` per netns at most. A podman container appears under its master, named
by its container ID."""

import html
import json
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest

from .conftest import PLUGIN, call_plugin, ip, ipj, unique
from .test_plugin import host_local, ok

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "show.schema.json").read_text())


def show(*args: str) -> str:
    done = subprocess.run([PLUGIN, "show", *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def snapshot(spaces: list[str], masters: list[str], ipam_dir: Path) -> dict:
    """What show must not change: every link and address in the netns, the
    masters (the host's other links come and go with other tests), and the reservations."""
    kernel = {ns: ipj("-d", "address", "show", ns=ns) for ns in spaces}
    kernel["host"] = [ipj("-d", "address", "show", "dev", m)[0] for m in masters]
    for links in kernel.values():
        for link in links:
            link.pop("stats64", None)
            for address in link.get("addr_info", []):     # lifetimes count down, DAD ends
                address.pop("valid_life_time", None)
                address.pop("preferred_life_time", None)
                address.pop("tentative", None)
    files = {str(p.relative_to(ipam_dir)): p.read_text() for p in ipam_dir.rglob("*") if p.is_file()}
    return {"kernel": kernel, "files": files}


@pytest.fixture
def world(make_master, make_netns, ipam_dir):
    """master1 (l2, two containers), master2 (l3, one container, then set down),
    plus the faults: a leaked reservation, a temporary link, an unheld address."""
    m1, m2 = make_master(), make_master()
    a, b, c, t = (make_netns() for _ in range(4))
    net1, net2 = unique("shownet-"), unique("shownet-")
    conf1 = {"cniVersion": "1.0.0", "name": net1, "type": "ipvlan-ip", "master": m1, "mode": "l2",
             "ipam": host_local(ipam_dir, subnet="10.241.0.0/24", gateway="10.241.0.1")}
    conf2 = {"cniVersion": "1.0.0", "name": net2, "type": "ipvlan-ip", "master": m2, "mode": "l3",
             "ipam": host_local(ipam_dir, subnet="10.242.0.0/24", gateway="10.242.0.1")}
    for conf, ns in ((conf1, a), (conf1, b), (conf2, c)):
        ok(call_plugin("ADD", conf, netns=f"/run/netns/{ns}", container_id=f"ctr-{ns}"))
    (ipam_dir / net1 / "10.241.0.77").write_text("ctr-leaked\r\neth0")
    ip("link", "add", "link", m1, "name", "ipvl0badc0de", "netns", t, "type", "ipvlan", "mode", "l2")
    ip("address", "add", "10.241.0.99/24", "dev", "eth0", ns=b)
    ip("link", "set", m2, "down")
    return {"m1": m1, "m2": m2, "a": a, "b": b, "c": c, "t": t, "ipam": ipam_dir}


def test_text_json_and_dot_show_every_link_and_problem(world, tmp_path):
    w = world
    args = ("--ipam-dir", str(w["ipam"]))
    before = snapshot([w["a"], w["b"], w["c"], w["t"]], [w["m1"], w["m2"]], w["ipam"])

    doc = json.loads(show("--json", *args))
    jsonschema.validate(doc, SCHEMA)
    masters = {m["name"]: m for m in doc["masters"]}
    labels = {ns["id"]: ns["label"] for ns in doc["namespaces"]}
    m1, m2 = masters[w["m1"]], masters[w["m2"]]
    assert labels[m1["netns"]] == "host" and m1["state"] == "up" and m2["state"] == "down"
    on_m1 = {(labels[link["netns"]].split()[0], link["name"]): link for link in m1["links"]}
    assert set(on_m1) == {(w["a"], "eth0"), (w["b"], "eth0"), (w["t"], "ipvl0badc0de")}
    assert {link["mode"] for link in m1["links"]} == {"l2"}
    [on_m2] = m2["links"]
    assert labels[on_m2["netns"]].startswith(w["c"]) and on_m2["mode"] == "l3"
    assert on_m1[(w["a"], "eth0")]["addresses"] == ["10.241.0.2/24"] or \
        on_m1[(w["a"], "eth0")]["addresses"][0].startswith("10.241.0.")
    spaces = {ns["id"]: ns for ns in doc["namespaces"]}
    assert spaces[on_m1[(w["a"], "eth0")]["netns"]]["containerIds"] == [f"ctr-{w['a']}"]  # by its reservation
    # Other tests run meanwhile: only the problems in this test's namespaces (and the host's) count.
    ours = {ns["id"] for ns in doc["namespaces"] if ns["host"] or ns["name"] in (w["a"], w["b"], w["c"], w["t"])}
    problems = [p for p in doc["problems"] if p["netns"] in ours or str(w["ipam"]) in p["text"]]
    kinds = {(p["kind"], p["link"]) for p in problems}
    assert ("master-down", w["m2"]) in kinds
    assert ("temporary-link", "ipvl0badc0de") in kinds
    assert ("unheld-address", "eth0") in kinds
    assert ("leaked-reservation", None) in kinds
    unheld = [p for p in problems if p["kind"] == "unheld-address"]
    assert len(unheld) == 1 and "10.241.0.99" in unheld[0]["text"]
    leaked = [p for p in problems if p["kind"] == "leaked-reservation"]
    assert len(leaked) == 1 and "10.241.0.77" in leaked[0]["text"] and "ctr-leaked" in leaked[0]["text"]
    assert not [p for p in problems if p["kind"] == "master-not-found"]

    text = show(*args)
    assert all(len(line) <= 80 for line in text.splitlines()), text
    for name in (w["m1"], w["m2"], w["a"], w["b"], w["c"], w["t"], "ipvl0badc0de", "10.241.0.77",
                 "10.241.0.99", f"link set dev {w['m2']} up"):
        assert name in text, f"{name} missing from:\n{text}"
    assert f"{w['m2']} in host: down" in text

    dot = show("--dot", *args)
    # Graphviz writes '-' as &#45; in SVG text
    svg = html.unescape(subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True, check=True).stdout)
    for name in (w["m1"], w["m2"], w["a"], w["b"], w["c"], w["t"], "ipvl0badc0de", "10.241.0.99"):
        assert name in svg, f"{name} missing from the SVG"
    assert svg.count(">eth0<") >= 3     # other tests' containers may be drawn too
    assert 'stroke="red"' in svg

    only = json.loads(show("--json", "--master", w["m2"], *args))
    jsonschema.validate(only, SCHEMA)
    assert [m["name"] for m in only["masters"]] == [w["m2"]]
    assert {p["kind"] for p in only["problems"]} == {"master-down"}

    assert snapshot([w["a"], w["b"], w["c"], w["t"]], [w["m1"], w["m2"]], w["ipam"]) == before


def test_one_ip_process_per_netns_at_most(world, tmp_path):
    # A file per thread (-ff): show's reader threads exec at once, and strace would split the
    # lines of concurrent calls into "<unfinished ...>" and "<... execve resumed>" in one file.
    done = subprocess.run(["strace", "-ff", "-qq", "-e", "trace=execve", "-o", str(tmp_path / "trace"),
                           PLUGIN, "show", "--json"], capture_output=True, check=True, timeout=300, text=True)
    traces = "".join(t.read_text() for t in tmp_path.glob("trace.*"))
    execs = re.findall(r'execve\("([^"]+)".* = 0$', traces, re.M)     # not PATH's misses
    ips = [e for e in execs if e.endswith("/ip")]
    spaces = len(json.loads(done.stdout)["namespaces"])
    assert 4 < len(ips) <= spaces, execs


def test_podman_container_appears_under_its_master_by_container_id(podman, master, ipam_dir):
    name = podman.network(unique("show"), master, "10.243.0.0/24", ipam_dir, tuning=False)
    container = podman.start(name)
    doc = json.loads(show("--json", "--ipam-dir", str(ipam_dir)))
    jsonschema.validate(doc, SCHEMA)
    [ours] = [m for m in doc["masters"] if m["name"] == master]
    [link] = ours["links"]
    ns = next(n for n in doc["namespaces"] if n["id"] == link["netns"])
    assert container["Id"] in ns["containerIds"]
    assert link["name"] == "eth0" and link["addresses"][0].startswith("10.243.0.")
    assert container["Id"][:12] in show("--master", master, "--ipam-dir", str(ipam_dir))

"""`./demo all`'s guest part: every topic of the tour runs, proves what it
shows (pings, a lease, the host's TCP probe, a netfilter counter, plan against
the echo), and leaves nothing behind. Its output is also what docs/ shows of
the demo: the debug echo of an ADD (docs/debugging.md) and `ipvlan-ip show`'s
tree (docs/show.md, docs/walkthrough.md), timings and temporary paths aside."""

import re
import subprocess
import sys
from pathlib import Path

from .conftest import ipj

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
from demo import TOPICS  # noqa: E402

PROOFS = {    # a proof each topic must print, among its others
    "l2": "demo-a reaches demo-b", "l3": "the host's INPUT chain saw none", "l3s": "the host's INPUT chain saw the",
    "host-access": "the host's TCP probe", "dhcp": "dnsmasq leased", "vlan": "its frames arrive tagged 20",
    "show": "show flags the master that is down", "debug": "the echo ran exactly the commands plan printed",
    "lab": "every command of the lab succeeded",
}


def block_after(page: str, marker: str) -> str:
    text = (REPO / "docs" / page).read_text()
    return text.split(marker, 1)[1].split("```", 2)[1].split("\n", 1)[1]


def timeless(text: str) -> str:
    """`text` less what changes from run to run: durations, the temporary dir, the links' MAC."""
    text = re.sub(r"# exit (\d+) in [\d.]+ ms", r"# exit \1", re.sub(r"/tmp/ipvlan-ip-demo-[\w-]+", "TMP", text))
    return re.sub(r'"mac": "[0-9a-f:]+"', '"mac": "MAC"', text)


def test_the_tour_runs_every_topic_and_each_proof_holds():
    done = subprocess.run([sys.executable, "scripts/demo.py", "--here", "all"], cwd=REPO, capture_output=True,
                          text=True, timeout=1200)
    out = done.stdout
    assert done.returncode == 0, out[-4000:] + done.stderr[-2000:]
    assert set(PROOFS) == set(TOPICS)
    sections = re.split(r"^=== topic ", out, flags=re.M)[1:]
    assert [s.split("\n", 1)[0] for s in sections] == list(TOPICS)
    for topic, section in zip(TOPICS, sections):
        proofs = [line for line in section.splitlines() if line.startswith("proof: ")]
        assert any(PROOFS[topic] in line for line in proofs), f"{topic}: {proofs}"
        assert all(line.endswith(": yes") for line in proofs), f"{topic}: {proofs}"
    assert not [ns for ns in str(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout)
                .split() if ns.startswith(("demo-", "tour-")) or ns == "lab"]
    assert not [link["ifname"] for link in ipj("link", "show")
                if link["ifname"].startswith(("demo-", "tour-", "lab-"))]

    # What docs/ shows of the demo is this output.
    l2 = sections[0]
    echo = l2.split("=== ADD demo-a\n", 1)[1].split("stdout:", 1)[0].split("\n", 1)[1]
    assert timeless(echo) == timeless(block_after("debugging.md", "<!-- the echo of ./demo's first ADD -->"))
    tree = l2.split("$ ipvlan-ip show --master demo-m0 --ipam-dir", 1)[1].split("\n", 1)[1].split("\n(the same", 1)[0]
    tree = tree.split("\n===", 1)[0].rstrip("\n") + "\n"
    for page in ("show.md", "walkthrough.md"):
        assert tree == block_after(page, "<!-- ./demo's show -->").split("\n", 1)[1], page

"""The demo's guest part, for the topics nothing else proves: l2, `./demo`'s
default, whose output is also what docs/ shows of the demo (the debug echo of
an ADD in docs/debugging.md, `ipvlan-ip show`'s tree in docs/show.md and
docs/walkthrough.md, timings and temporary paths aside), and the lab of
docs/learn.md, run from the page. Each proves what it shows and leaves nothing
behind. The other topics show again what each capability's own tests prove
(test_modes.py, test_host_access.py, test_dhcp.py, test_vlan.py, test_show.py,
test_debug.py), so the suite does not run them twice."""

import re
import subprocess
import sys
from pathlib import Path

from .conftest import ipj

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
from demo import TOPICS  # noqa: E402

# The topics the suite runs, each with a proof it must print among its others.
PROOFS = {"l2": ("demo-a reaches demo-b",),
          "lab": ("every command of the lab succeeded", "the page's own clean-up left nothing")}
RUN = list(PROOFS)


def block_after(page: str, marker: str) -> str:
    text = (REPO / "docs" / page).read_text()
    return text.split(marker, 1)[1].split("```", 2)[1].split("\n", 1)[1]


def timeless(text: str) -> str:
    """`text` less what changes from run to run: durations, the temporary dir, the links' MAC."""
    text = re.sub(r"# exit (\d+) in [\d.]+ ms", r"# exit \1", re.sub(r"/tmp/ipvlan-ip-demo-[\w-]+", "TMP", text))
    return re.sub(r'"mac": "[0-9a-f:]+"', '"mac": "MAC"', text)


def test_the_default_topic_and_the_lab_run_and_each_proof_holds():
    done = subprocess.run([sys.executable, "scripts/demo.py", "--here", *RUN], cwd=REPO, capture_output=True,
                          text=True, timeout=1200)
    out = done.stdout
    assert done.returncode == 0, out[-4000:] + done.stderr[-2000:]
    assert set(PROOFS) <= set(TOPICS)
    sections = re.split(r"^=== topic ", out, flags=re.M)[1:]
    assert [s.split("\n", 1)[0] for s in sections] == RUN
    for topic, section in zip(RUN, sections):
        proofs = [line for line in section.splitlines() if line.startswith("proof: ")]
        assert all(any(claim in line for line in proofs) for claim in PROOFS[topic]), f"{topic}: {proofs}"
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

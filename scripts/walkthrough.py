"""Keeps docs/walkthrough.md's command listings equal to what `ipvlan-ip plan`
prints for docs/example/: each block after a `<!-- plan COMMAND -->` marker is
that command's plan. `python scripts/walkthrough.py` rewrites the blocks;
tests/unit/test_walkthrough.py fails when they drift from the code."""

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "walkthrough.md"
EXAMPLE = REPO / "docs" / "example"
BLOCK = re.compile(r"(<!-- plan (ADD|DEL|CHECK) -->\n```sh\n)(.*?)(```)", re.S)


def plan_text(command: str) -> str:
    import json

    from ipvlan_ip.plan import plan
    return plan((EXAMPLE / "mynet.conf").read_bytes(), "/run/netns/blue", "eth0", command,
                json.loads((EXAMPLE / "ipam-result.json").read_text()))


def regenerated(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + plan_text(m.group(2)) + m.group(4), text)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    DOC.write_text(regenerated(DOC.read_text()))
    print(f"rewrote the plan blocks of {DOC}")

"""Keeps the `plan` listings of README.md and docs/*.md equal to what
`ipvlan-ip plan` prints: the fenced block after a `<!-- plan ARGS -->` marker
is the output of `ipvlan-ip plan ARGS` (paths relative to the repository).
`python scripts/docs.py` rewrites the blocks; tests/unit/test_docs.py fails
when one drifts from the code."""

import re
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"(<!-- plan (.*?) -->\n```\w*\n)(.*?)(```)", re.S)


def plan_text(args: str) -> str:
    """What `ipvlan-ip plan ARGS` prints."""
    import argparse
    import json

    from ipvlan_ip.tools.plan import plan
    p = argparse.ArgumentParser()
    for flag in ("--netns", "--ifname", "--command", "--ipam-result", "--container-id"):
        p.add_argument(flag, default=None)
    p.add_argument("config")
    a = p.parse_args(shlex.split(args))
    ipam = json.loads((REPO / a.ipam_result).read_text()) if a.ipam_result else None
    return plan((REPO / a.config).read_bytes(), a.netns, a.ifname, a.command or "ADD", ipam,
                a.container_id or "example")


def regenerated(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + plan_text(m.group(2)) + m.group(4), text)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    for page in PAGES:
        text = page.read_text()
        if regenerated(text) != text:
            page.write_text(regenerated(text))
            print(f"rewrote the plan blocks of {page.relative_to(REPO)}")

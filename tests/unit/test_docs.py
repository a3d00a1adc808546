"""The docs cannot rot: each picture's SVG is what Graphviz renders from its
DOT source, every relative link and anchor of README.md and docs/ resolves,
every `plan` listing is what `ipvlan-ip plan` prints (scripts/docs.py), and
every ipvlan-ip config shown in JSON is one the schema takes, and every other
output shown as real stands behind a marker that a test reads (CHECKED): the
doctor example (test_doctor.py), ADD's error on a kernel without ipvlan
(test_advice.py), the demo's echo and show tree (tests/kernel/test_demo.py),
and the lab of docs/learn.md, which `./demo lab` runs (tests/kernel/test_demo.py runs every topic)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ipvlan_ip import validation
from ipvlan_ip.tools.doctor import ours

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import docs  # noqa: E402

DIAGRAMS = sorted((REPO / "docs" / "diagrams").glob("*.dot"))
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def test_the_pages_are_the_readme_and_docs():
    assert len(docs.PAGES) >= 15 and all(page.exists() for page in docs.PAGES)


@pytest.mark.parametrize("source", DIAGRAMS, ids=lambda p: p.name)
def test_each_svg_is_what_graphviz_renders_from_its_dot(source):
    rendered = subprocess.run(["dot", "-Tsvg", str(source)], capture_output=True, text=True, check=True).stdout
    committed = source.with_suffix(".svg").read_text()
    assert committed == rendered, f"{source.name} drifted: dot -Tsvg {source} > {source.with_suffix('.svg')}"


def test_there_is_a_picture_of_each_mode_and_of_hostaccess_and_vlan():
    assert {p.stem for p in DIAGRAMS} >= {"l2", "l3", "l3s", "host-access", "vlan"}


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but - and _ dropped, spaces to -."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


@pytest.mark.parametrize("page", docs.PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_resolves(page):
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue        # https:, mailto:
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no {resolved.relative_to(REPO) if REPO in resolved.parents else resolved}")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading for #{anchor}")
    assert broken == []


def test_every_former_readme_section_is_one_click_from_the_readme():
    readme = (REPO / "README.md").read_text()
    linked = {(REPO / t.partition("#")[0]).resolve() for t in LINK.findall(readme) if not re.match(r"[a-z]+:", t)}
    pages = {p.resolve() for p in (REPO / "docs").glob("*.md")}
    assert pages - linked == set()
    assert readme.count("\n") <= 210


@pytest.mark.parametrize("page", docs.PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_plan_listing_is_what_plan_prints(page):
    text = page.read_text()
    assert text == docs.regenerated(text), f"{page.name} drifted: run python scripts/docs.py"


def test_the_readme_and_docs_readme_index_the_same_pages_in_the_same_words():
    rows = re.compile(r"^\| \[(?:docs/)?([\w.-]+\.md)\]\([^)]*\) \| (.*) \|$", re.M)
    readme = rows.findall((REPO / "README.md").read_text())
    assert readme == rows.findall((REPO / "docs" / "README.md").read_text()) and len(readme) >= 17


def test_the_readme_names_the_demos_topics_as_demo_takes_them():
    import tour
    readme = (REPO / "README.md").read_text().replace("\n", " ")
    named = re.search(r"lists the tour's topics \((.*?)\); `./demo all`", readme).group(1)
    assert re.findall(r"`([\w-]+)`", named) == list(tour.TOPICS)


def test_the_code_map_of_internals_names_every_module():
    text = (REPO / "docs" / "internals.md").read_text().split("## The code, in reading order", 1)[1]
    code_map = text.split("\n## ", 1)[0]
    modules = {p.name for p in (REPO / "ipvlan_ip").rglob("*.py")} - {"__init__.py", "__main__.py"}
    assert sorted(m for m in modules if f"`{m}`" not in code_map) == []


def test_the_walkthrough_shows_add_del_and_check():
    text = (REPO / "docs" / "walkthrough.md").read_text()
    assert [c for c in ("ADD", "DEL", "CHECK") if f"--command {c} -->" in text] == ["ADD", "DEL", "CHECK"]


# Each marker stands before a block of output that a test makes again and compares.
CHECKED = {"<!-- doctor example -->": "tests/unit/test_doctor.py",
           "<!-- ADD on a kernel without ipvlan -->": "tests/unit/test_advice.py",
           "<!-- the echo of ./demo's first ADD -->": "tests/kernel/test_demo.py",
           "<!-- ./demo's show -->": "tests/kernel/test_demo.py",
           "<!-- plan ": "scripts/docs.py",
           "<!-- the lab: ./demo lab runs it (scripts/tour.py) -->": "scripts/tour.py",
           "<!-- the lab's ADD result: ./demo lab compares it, the MAC aside (scripts/tour.py) -->": "scripts/tour.py"}
MARKED = re.compile(r"^(<!-- [^\n]*)\n```\w*\n(.*?)^```", re.S | re.M)


def shows_output(body: str) -> bool:
    """A command with what it printed, the echo, or a CNI error object: what is shown as real."""
    first = body.split("\n", 1)[0]
    return first.startswith(("$ ", "# request:", "#!/bin/sh")) or (first.startswith('{"cniVersion"')
                                                                     and '"code"' in first)


@pytest.mark.parametrize("page", docs.PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_output_shown_is_behind_a_marker_a_test_checks(page):
    text = page.read_text()
    shown = [body for _, body in FENCE.findall(text) if shows_output(body)]
    marked = [body for marker, body in MARKED.findall(text) if marker.startswith(tuple(CHECKED))]
    assert [body.split("\n", 1)[0] for body in shown if body not in marked] == []


def test_each_marker_is_read_by_the_file_named_for_it():
    assert all(marker.strip() in (REPO / reader).read_text() for marker, reader in CHECKED.items())


def configs_shown() -> list[tuple[str, dict]]:
    found = []
    for page in docs.PAGES:
        for lang, body in FENCE.findall(page.read_text()):
            if lang != "json":
                continue
            data = json.loads(body)
            plugins = data.get("plugins", [data]) if isinstance(data, dict) else []
            if any(isinstance(p, dict) and p.get("type") == "ipvlan-ip" for p in plugins):
                found.append((f"{page.relative_to(REPO)}", data))
    return found


def test_every_config_shown_is_one_the_schema_takes():
    shown = configs_shown()
    assert len(shown) >= 5
    for where, data in shown:
        problems = [p for _, conf in ours(data) for p in validation.problems("netconf", conf)]
        assert problems == [], where


def test_the_example_files_are_valid_configs():
    for path in (REPO / "docs" / "example").glob("*.conf"):
        assert validation.problems("netconf", json.loads(path.read_text())) == [], path.name


def test_the_docs_name_no_path_of_this_machine():
    for page in docs.PAGES:
        assert "/work/" not in page.read_text() and os.sep + "tmp" + os.sep + "studio" not in page.read_text()


def test_the_key_tables_and_podmans_options_agree_with_what_each_capability_declares():
    """A capability declares its key and its podman option (capability.py); config.md's key table has the
    key, podman.md's capability table the option beside the key, and netavark takes the option for it.
    Every option netavark takes is in podman.md's table."""
    from ipvlan_ip.capabilities import ALL
    from ipvlan_ip.front import netavark
    config_md = (REPO / "docs" / "config.md").read_text()
    table = (REPO / "docs" / "podman.md").read_text().split("## Each capability", 1)[1].split("\n\n", 2)[1]
    for capability in ALL:
        assert re.search(rf"^\| `{capability.key.split('.')[0]}` \|", config_md, re.M), capability.key
        named = f"`-o {capability.option}=" if capability.option else "not on Podman 5"
        rows = [line for line in table.splitlines() if named in line and f'"{capability.key.split(".")[-1]}"' in line]
        assert len(rows) == 1, (capability.key, rows)
        assert not capability.option or netavark.OPTIONS[capability.option] == capability.key
    assert [o for o in (*netavark.OPTIONS, *netavark.ROUTING) if f"-o {o}=" not in table] == []

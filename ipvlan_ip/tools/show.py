"""`ipvlan-ip show`: the inventory (inventory.py) drawn for people: a tree
that reads at 80 columns, or DOT for Graphviz; `--json` prints the document
itself (schemas/show.schema.json)."""
from __future__ import annotations

import json
import textwrap

WIDTH = 80


def only_master(doc: dict, name: str) -> dict:
    """The document narrowed to the masters called `name` and what concerns them."""
    masters = [m for m in doc["masters"] if m["name"] == name]
    keep = {(m["netns"], m["name"]) for m in masters} | {(link["netns"], link["name"])
                                                        for m in masters for link in m["links"]}
    used = {ns for ns, _ in keep}
    return {**doc, "masters": masters, "unresolved": [],
            "namespaces": [ns for ns in doc["namespaces"] if ns["id"] in used],
            "reservations": [], "problems": [p for p in doc["problems"] if (p["netns"], p["link"]) in keep]}


def as_json(doc: dict) -> str:
    return json.dumps(doc, indent=2) + "\n"


def as_text(doc: dict) -> str:
    labels = {ns["id"]: ns["label"] for ns in doc["namespaces"]}
    out: list[str] = []
    parent = ""
    for master in doc["masters"]:
        mark = "  !" if master["problems"] else ""
        state = f"{master['state']}, mtu {master['mtu']}{mark}"
        if "vlan" not in master:
            out.append(f"{master['name']} in {labels[master['netns']]}: {state}")
            out += _wrapped(" ".join(master["addresses"]), "    ")
            out += _links(master["links"], labels)
            continue
        # A VLAN link: under the interface it tags on, its ipvlan links under it.
        vlan = master["vlan"]
        if parent != f"{master['netns']}/{vlan['parent']}":
            parent = f"{master['netns']}/{vlan['parent']}"
            out.append(f"{vlan['parent']} in {labels[master['netns']]}")
        made = ", made by ipvlan-ip" if vlan["made"] else ""
        out.append(f"└── {master['name']}: VLAN {vlan['id']}{made}, {state}")
        out += _wrapped(" ".join(master["addresses"]), "        ")
        out += ["    " + line for line in _links(master["links"], labels)]
    if doc["unresolved"]:
        out.append("ipvlan links whose master was not found:")
        out += _links(doc["unresolved"], labels)
    if not doc["masters"] and not doc["unresolved"]:
        out.append("no ipvlan links")
    if doc["problems"]:
        out.append("")
        out.append(f"problems ({len(doc['problems'])}):")
        for problem in doc["problems"]:
            out += textwrap.wrap(problem["text"], WIDTH, initial_indent="! ", subsequent_indent="  ",
                                 break_on_hyphens=False)
    return "\n".join(out) + "\n"


def _links(links: list[dict], labels: dict) -> list[str]:
    out = []
    for n, link in enumerate(links):
        last = n == len(links) - 1
        mark = "  ! " + ", ".join(link["problems"]) if link["problems"] else ""
        head = f"{'└── ' if last else '├── '}{link['name']} in {labels[link['netns']]}"
        detail = f"{link['mode']} {link['flag']}, {link['state']}, mtu {link['mtu']}{mark}"
        stem = "    " if last else "│   "
        if len(head) + 2 + len(detail) <= WIDTH:
            out.append(f"{head}  {detail}")
        else:
            out.append(head[:WIDTH])
            out.append(f"{stem}  {detail}")
        out += _wrapped(" ".join(link["addresses"]), stem + "  ")
    return out


def _wrapped(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent) if text else []


# ---------------------------------------------------------------- DOT

RED = 'color="red", fontcolor="red"'


def as_dot(doc: dict) -> str:
    """Masters and links as boxes, each netns a cluster, addresses as plain
    text beside their link, problems in red (and as red notes)."""
    members: dict[str, list[str]] = {ns["id"]: [] for ns in doc["namespaces"]}
    edges = []
    drawn: set[str] = set()
    for master in doc["masters"]:
        node = _id("m", master)
        members[master["netns"]].append(_node(node, [master["name"], f"{master['state']}, mtu {master['mtu']}",
                                                     *master["addresses"]], master["problems"], "box"))
        for link in master["links"]:
            edges.append(f'{node} -> {_id("l", link)} [label="{link["mode"]}"];')
        if "vlan" in master:     # the interface it tags on, once however many VLANs it carries
            vlan = master["vlan"]
            parent = f'"parent_{master["netns"]}_{_quote(vlan["parent"])}"'
            if parent not in drawn:
                drawn.add(parent)
                members[master["netns"]].append(_node(parent, [vlan["parent"]], [], "box"))
            edges.append(f'{parent} -> {node} [label="VLAN {vlan["id"]}'
                         f'{" (made by ipvlan-ip)" if vlan["made"] else ""}"];')
    for link in _all_links(doc):
        node = _id("l", link)
        members[link["netns"]].append(_node(node, [link["name"], f"{link['mode']} {link['flag']}",
                                                   f"{link['state']}, mtu {link['mtu']}"], link["problems"],
                                            "box, style=rounded"))
        for n, address in enumerate(link["addresses"]):
            members[link["netns"]].append(f'{node}_a{n} [shape=plaintext, label="{_quote(address)}"];')
            edges.append(f"{node} -> {node}_a{n} [arrowhead=none, style=dotted];")
    notes = []
    for n, problem in enumerate(doc["problems"]):
        text = "\\n".join(_quote(line) for line in textwrap.wrap(problem["text"], 48, break_on_hyphens=False))
        notes.append(f'p{n} [shape=note, {RED}, label="{text}"];')
        target = _target(doc, problem)
        if target:
            edges.append(f"p{n} -> {target} [{RED}, style=dashed, arrowhead=none];")
    out = ["digraph ipvlan {", '  rankdir=LR; node [fontname="Helvetica", fontsize=10]; '
           'edge [fontname="Helvetica", fontsize=9];']
    for ns in doc["namespaces"]:
        if members[ns["id"]]:
            out.append(f"  subgraph cluster_{ns['id']} {{")
            out.append(f'    label="{_quote(ns["label"])}"; style=rounded; color="grey40";')
            out += [f"    {line}" for line in members[ns["id"]]]
            out.append("  }")
    out += [f"  {line}" for line in notes + edges]
    out.append("}")
    return "\n".join(out) + "\n"


def _all_links(doc: dict) -> list[dict]:
    return [link for m in doc["masters"] for link in m["links"]] + doc["unresolved"]


def _id(prefix: str, link: dict) -> str:
    return f"{prefix}_{link['netns']}_{link['index']}"


def _node(node: str, lines: list[str], problems: list[str], shape: str) -> str:
    label = "\\n".join(_quote(line) for line in lines)
    return f'{node} [shape={shape}, label="{label}"{", " + RED if problems else ""}];'


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _target(doc: dict, problem: dict) -> str | None:
    for master in doc["masters"]:
        if (master["netns"], master["name"]) == (problem["netns"], problem["link"]):
            return _id("m", master)
    for link in _all_links(doc):
        if (link["netns"], link["name"]) == (problem["netns"], problem["link"]):
            return _id("l", link)
    return None

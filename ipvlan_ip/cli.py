"""The command-line side of ipvlan-ip, for people rather than runtimes."""

import argparse
import sys

from . import __version__
from .versions import SUPPORTED_VERSIONS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ipvlan-ip",
        description="A CNI plugin that gives a container an ipvlan interface through iproute2. "
                    "Run with CNI_COMMAND set (as container runtimes do) it is the plugin; "
                    "without it, these subcommands help people.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("version", help="print the program version and the CNI versions it speaks")
    check = sub.add_parser("validate", help="check a network config or conflist against the schemas")
    check.add_argument("file", help="a .conf or .conflist file, or - for stdin")
    return parser


def main(argv: list[str]) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    if args.command == "version":
        print(f"ipvlan-ip {__version__}")
        print(f"CNI protocol versions supported: {', '.join(SUPPORTED_VERSIONS)}")
        return 0
    if args.command == "validate":
        return validate(args.file)
    parser.print_help(sys.stderr)
    return 2


def validate(path: str) -> int:
    """Each problem as 'file: $.json.path: reason'; exit 0 when valid, 1 when not, 2 when unreadable."""
    import json
    from . import validation
    try:
        text = sys.stdin.read() if path == "-" else open(path).read()
        data = json.loads(text)
    except (OSError, ValueError) as e:
        print(f"ipvlan-ip: cannot read {path}: {e}", file=sys.stderr)
        return 2
    problems = []
    if isinstance(data, dict) and isinstance(data.get("plugins"), list):
        # A conflist: the runtime adds name and cniVersion to each plugin's config.
        for n, conf in enumerate(data["plugins"]):
            if isinstance(conf, dict) and conf.get("type") == "ipvlan-ip":
                merged = {"name": data.get("name"), "cniVersion": data.get("cniVersion"), **conf}
                merged = {k: v for k, v in merged.items() if v is not None}
                problems += [p.replace("$", f"$.plugins[{n}]", 1) for p in validation.problems("netconf", merged)]
    else:
        problems = validation.problems("netconf", data)
    for problem in problems:
        print(f"{path}: {problem}")
    if not problems:
        print(f"{path}: valid")
    return 1 if problems else 0

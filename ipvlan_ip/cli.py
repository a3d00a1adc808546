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
    parser.print_help(sys.stderr)
    return 2

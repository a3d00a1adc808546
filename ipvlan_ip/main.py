"""`ipvlan-ip`: the CNI plugin when CNI_COMMAND is set (runtimes run it as
$CNI_PATH/<type>, under any name), the netavark plugin when netavark runs it
with one of its subcommands (Podman 5), a command-line tool otherwise."""

import os
import sys


def main() -> None:
    if "CNI_COMMAND" in os.environ:
        from .front.plugin import main as plugin_main
        sys.exit(plugin_main())
    if sys.argv[1:2] in (["create"], ["setup"], ["teardown"], ["info"]):
        from .front.netavark import main as netavark_main
        sys.exit(netavark_main(sys.argv[1:]))
    from .front.cli import main as cli_main
    sys.exit(cli_main(sys.argv[1:]))


if __name__ == "__main__":
    main()

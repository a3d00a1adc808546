"""`ipvlan-ip`: the CNI plugin when CNI_COMMAND is set (runtimes run it as
$CNI_PATH/<type>, under any name), a command-line tool otherwise."""

import os
import sys


def main() -> None:
    if "CNI_COMMAND" in os.environ:
        from .plugin import main as plugin_main
        sys.exit(plugin_main())
    from .cli import main as cli_main
    sys.exit(cli_main(sys.argv[1:]))


if __name__ == "__main__":
    main()

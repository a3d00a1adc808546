"""The command-line side of ipvlan-ip, for people rather than runtimes."""

import argparse
import sys

from .. import __version__
from ..versions import SUPPORTED_VERSIONS

# Where Podman 5 looks for netavark plugins first among the packaged dirs (containers.conf's netavark_plugin_dirs).
NETAVARK_DIR = "/usr/libexec/netavark"


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line, not argparse's usage block: the reason and where to look.
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ipvlan-ip",
        description="A CNI plugin that gives a container an ipvlan interface through iproute2. "
                    "Run with CNI_COMMAND set (as container runtimes do) it is the plugin; "
                    "without it, these subcommands help people.")
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND", parser_class=_Parser)
    sub.add_parser("version", help="print the program version and the CNI versions it speaks")
    check = sub.add_parser("validate", help="check a network config or conflist against the schemas")
    check.add_argument("file", help="a .conf or .conflist file, or - for stdin")
    plan = sub.add_parser("plan", help="print the ip commands a CNI call would run, running nothing")
    plan.add_argument("config", help="the plugin's network config file, or - for stdin")
    plan.add_argument("--netns", required=True, help="CNI_NETNS, e.g. /run/netns/blue")
    plan.add_argument("--ifname", required=True, help="CNI_IFNAME, e.g. eth0")
    plan.add_argument("--container-id", default="example", help="CNI_CONTAINERID (names the temporary link)")
    plan.add_argument("--command", default="ADD", choices=["ADD", "DEL", "CHECK"])
    plan.add_argument("--ipam-result", metavar="FILE", help="an IPAM result (JSON) to use for the addresses")
    run = sub.add_parser("conflist", help="attach or detach a netns with a conflist, as a runtime (libcni) would")
    run.add_argument("action", choices=["ADD", "CHECK", "DEL"])
    run.add_argument("file", help="the .conflist file")
    run.add_argument("--netns", default="", help="CNI_NETNS (may be omitted for DEL)")
    run.add_argument("--ifname", default="eth0")
    run.add_argument("--container-id", required=True)
    run.add_argument("--cni-path", default="/opt/cni/bin:/usr/lib/cni", help="where the plugins are (CNI_PATH)")
    run.add_argument("--cache-dir", default="/var/lib/cni/results", help="where ADD results are kept")
    run.add_argument("--args", default="", help="CNI_ARGS, K=V;K=V")
    show = sub.add_parser("show", help="every master, its ipvlan links in every netns, and what is wrong "
                                       "(read-only)")
    form = show.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="the document schemas/show.schema.json describes")
    form.add_argument("--dot", action="store_true", help="a Graphviz graph (dot -Tsvg)")
    show.add_argument("--master", help="only this master and its links")
    show.add_argument("--ipam-dir", action="append", default=[], metavar="DIR",
                      help="a host-local dataDir besides /var/lib/cni/networks and those the configs name "
                           "(repeatable)")
    show.add_argument("--cni-conf-dir", action="append", metavar="DIR",
                      help="where network configs are (repeatable; default /etc/cni/net.d)")
    show.add_argument("--cache-dir", default="/var/lib/cni/results", help="the runtimes' CNI result cache")
    doctor = sub.add_parser("doctor", help="check this node, and network configs, before the first pod "
                                           "(read-only, but for one throwaway netns); exit 1 on a failure")
    doctor.add_argument("config", nargs="*", help="network configs or conflists to check")
    doctor.add_argument("--cni-bin-dir", action="append", metavar="DIR",
                        help="where the plugins are (repeatable; default /opt/cni/bin and the "
                             "cni_plugin_dirs of containers.conf)")
    doctor.add_argument("--json", action="store_true", help="the document schemas/doctor.schema.json describes")
    inst = sub.add_parser("install", help="put a launcher for this installation, or with --standalone the "
                                          "whole plugin as one file, into the CNI bin dir")
    inst.add_argument("--cni-bin-dir", help="where the runtimes look for CNI plugins (default /opt/cni/bin)")
    inst.add_argument("--netavark", nargs="?", const=NETAVARK_DIR, metavar="DIR",
                      help="as a netavark plugin, for Podman 5, into DIR, one of containers.conf's "
                           f"netavark_plugin_dirs (default {NETAVARK_DIR}); the network driver is then the file "
                           "name (podman network create -d ipvlan-ip)")
    inst.add_argument("--name", default="ipvlan-ip", help="file name, which is the config's \"type\"")
    inst.add_argument("--force", action="store_true", help="replace a file this command did not write")
    inst.add_argument("--standalone", action="store_true",
                      help="write one self-contained file (a zip application) that needs only python3 >= 3.9")
    inst.add_argument("--python", help="with --standalone: the interpreter for its #! line "
                                       "(default: /usr/bin/env python3)")
    return parser


def main(argv: list[str]) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return 2 if e.code else 0
    if args.subcommand == "version":
        print(f"ipvlan-ip {__version__}")
        print(f"CNI protocol versions supported: {', '.join(SUPPORTED_VERSIONS)}")
        return 0
    if args.subcommand == "validate":
        return validate(args.file)
    if args.subcommand == "plan":
        return _plan(args)
    if args.subcommand == "install":
        return _install(args)
    if args.subcommand == "conflist":
        return _conflist(args)
    if args.subcommand == "show":
        return _show(args)
    if args.subcommand == "doctor":
        return _doctor(args)
    parser.print_help(sys.stderr)
    return 2


def _fail(message: str, status: int) -> int:
    print(f"ipvlan-ip: {message}", file=sys.stderr)
    return status


def _read(path: str) -> bytes:
    return sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()


def _plan(args) -> int:
    import json

    from ..errors import CniError
    from ..tools.plan import plan
    try:
        conf = _read(args.config)
        ipam_result = json.loads(_read(args.ipam_result)) if args.ipam_result else None
    except (OSError, ValueError) as e:
        return _fail(f"cannot read input: {e}", 2)
    try:
        sys.stdout.write(plan(conf, args.netns, args.ifname, args.command, ipam_result, args.container_id))
    except CniError as e:
        return _fail(e.details, 1)
    return 0


def _install(args) -> int:
    from ..tools.install import install
    try:
        if args.python and not args.standalone:
            return _fail("--python goes with --standalone", 2)
        if args.netavark and args.cni_bin_dir:
            return _fail("--netavark DIR and --cni-bin-dir DIR: one place at a time", 2)
        where = args.netavark or args.cni_bin_dir or "/opt/cni/bin"
        print(f"installed {install(where, args.name, args.force, args.standalone, args.python)}")
    except ValueError as e:
        return _fail(str(e), 1)
    except OSError as e:
        return _fail(f"cannot write the launcher: {e}", 1)
    return 0


def _show(args) -> int:
    from ..errors import CniError
    from ..node.runner import Runner
    from ..tools import inventory, show
    try:
        doc = inventory.collect(Runner(), args.ipam_dir, args.cni_conf_dir or inventory.DEFAULT_CONF_DIRS,
                                args.cache_dir)
    except CniError as e:
        return _fail(e.details, 1)
    if args.master:
        doc = show.only_master(doc, args.master)
    sys.stdout.write(show.as_json(doc) if args.json else show.as_dot(doc) if args.dot else show.as_text(doc))
    return 0


def _doctor(args) -> int:
    import json

    from ..node.runner import Runner
    from ..tools import doctor
    report = doctor.examine(Runner(), args.config, args.cni_bin_dir or doctor.runtime_bin_dirs())
    sys.stdout.write(json.dumps(report, indent=1) + "\n" if args.json else doctor.as_text(report))
    return 1 if report["summary"]["failures"] else 0


def validate(path: str) -> int:
    """Each problem as 'file: $.json.path: reason'; exit 0 when valid, 1 when not, 2 when unreadable."""
    import json

    from .. import validation
    try:
        data = json.loads(_read(path))
    except (OSError, ValueError) as e:
        return _fail(f"cannot read {path}: {e}", 2)
    if isinstance(data, dict):
        from ..tools.doctor import ours  # a conflist: each plugin of ours, as the runtime gives it its config
        problems = [p.replace("$", where, 1) for where, conf in ours(data)
                    for p in validation.problems("netconf", conf)]
    else:
        problems = validation.problems("netconf", data)
    for problem in problems:
        print(f"{path}: {problem}")
    if not problems:
        print(f"{path}: valid")
    return 1 if problems else 0


def _conflist(args) -> int:
    import json

    from ..environment import CniEnv
    from ..errors import CniError
    from ..node.runner import Runner
    from .conflist import Conflist
    try:
        data = json.loads(_read(args.file))
    except (OSError, ValueError) as e:
        return _fail(f"cannot read {args.file}: {e}", 2)
    paths = tuple(p for p in args.cni_path.split(":") if p)
    env = CniEnv(command=args.action, container_id=args.container_id, netns=args.netns, ifname=args.ifname,
                 path=paths, raw={"CNI_ARGS": args.args} if args.args else {})
    try:
        conflist = Conflist(data, paths, args.cache_dir)
        if args.action == "ADD":
            print(json.dumps(conflist.add(Runner(), env), indent=2))
        else:
            (conflist.check if args.action == "CHECK" else conflist.delete)(Runner(), env)
    except CniError as e:
        print(json.dumps(e.as_result(data.get("cniVersion", "1.0.0"))))
        return _fail(e.details, 1)
    return 0

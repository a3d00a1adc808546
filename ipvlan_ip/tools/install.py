"""`ipvlan-ip install`: a launcher in the CNI bin dir that runs this
installation, or with --standalone the whole plugin as one file (standalone.py).

The launcher is a Python script whose #! line is this interpreter (the venv's
python), so a runtime's exec of $CNI_PATH/ipvlan-ip starts no shell first.
It runs Python with -I (no PYTHON* variables, no user site, not the bin dir
on sys.path) and -S (no site module): site and the .pth files it reads cost
every call about 2 ms natively, and more than that the console script's own
`import re`. The launcher adds the two paths it needs itself: where the
ipvlan_ip package is, and site-packages, for jsonschema on the error path.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

MARK = "# written by `ipvlan-ip install`"


def launcher() -> str:
    import sysconfig
    package_root = str(Path(__file__).resolve().parents[2])
    site_packages = sysconfig.get_path("purelib")
    # After the standard library, not before: each import looks through the
    # entries in order, and none of ours holds a module of the standard library.
    paths = list(dict.fromkeys([package_root, site_packages]))
    return (f"#!{sys.executable} -IS\n{MARK}: runs the ipvlan-ip installed for this Python.\n"
            "import sys\n"
            f"sys.path += {paths!r}\n"
            "from ipvlan_ip.main import main\n\nmain()\n")


def install(bin_dir: str, name: str, force: bool, standalone: bool = False, python: str | None = None) -> str:
    """Write the launcher, or the standalone file; the path written. Refuses
    (ValueError) to replace a file it did not write unless forced."""
    if "/" in name or name in ("", ".", ".."):
        raise ValueError(f"--name {name!r} must be a plain file name")
    target = Path(bin_dir) / name
    if target.exists() and not force:
        try:
            with target.open("rb") as f:    # the mark is on the second line, whichever kind
                ours = MARK.encode() in f.read(4096)
        except OSError:
            ours = False
        if not ours:
            raise ValueError(f"{target} exists and was not written by ipvlan-ip install; use --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{name}.tmp{os.getpid()}")
    if standalone:
        from .standalone import build
        tmp.write_bytes(build(python, MARK))
    else:
        tmp.write_text(launcher())
    tmp.chmod(0o755)
    os.replace(tmp, target)   # a runtime exec'ing it meanwhile sees the old or the new file, never half
    return str(target)

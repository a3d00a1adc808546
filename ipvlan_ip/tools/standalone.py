"""`ipvlan-ip install --standalone`: the plugin as one self-contained file, the
way cluster installers copy the Go plugins into /opt/cni/bin.

A zip application (PEP 441): a #! line, then a zip holding __main__.py and
the ipvlan_ip package with its schemas. Every module is there twice, as
source and byte-compiled for the interpreter that built it, so that no call
compiles anything (the compiled validators alone would cost tens of ms); another
Python version finds its own magic number missing and reads the source.
Nothing beyond CPython 3.9 is needed: a plugin call imports only the standard
library, and where jsonschema is missing the compiled validators explain a
rejected document themselves. One interpreter builds the file byte for byte
the same every time (fixed entry times and order, unchecked-hash .pyc), so
an installer can compare the copy it made with a fresh build.
"""
from __future__ import annotations

import io
import os
import py_compile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
PYTHON_TOO_OLD = 105    # errors.PYTHON_TOO_OLD; __main__ cannot import errors.py on an old Python

# Runs before anything of ours is imported, so it must parse and run on any
# Python 3 a node may have (a unit test parses it as 3.6 would): no f-strings,
# no annotations.
MAIN = '''\
# Entry point of the ipvlan-ip zip application (ipvlan_ip/tools/standalone.py).
import sys

if sys.version_info < (3, 9):
    import json
    import os
    found = "Python %d.%d" % sys.version_info[:2]
    details = "ipvlan-ip needs Python 3.9 or later, and %s runs it (%s)" % (sys.executable, found)
    if os.environ.get("CNI_COMMAND"):
        try:
            version = json.loads(sys.stdin.read()).get("cniVersion") or "0.1.0"
        except (ValueError, AttributeError):
            version = "1.1.0"
        sys.stdout.write(json.dumps({"cniVersion": version, "code": PYTHON_TOO_OLD,
                                     "msg": "Python too old for ipvlan-ip", "details": details}) + "\\n")
    sys.stderr.write("ipvlan-ip: " + details + "\\n")
    sys.exit(1)

from ipvlan_ip.main import main

main()
'''.replace("PYTHON_TOO_OLD", str(PYTHON_TOO_OLD))

# Zip entries carry a time; a fixed one keeps builds identical.
EPOCH = (1980, 1, 1, 0, 0, 0)


def shebang(python: str | None) -> bytes:
    """/usr/bin/env python3 finds the node's Python wherever it lives; a given
    interpreter is run with -I -S, as the venv launcher is (see install.py)."""
    return f"#!{python} -IS\n".encode() if python else b"#!/usr/bin/env python3\n"


def build(python: str | None, mark: str) -> bytes:
    """The whole file: #! line, `mark` on the second line, then the zip."""
    if not (PACKAGE / "__init__.py").is_file():
        raise ValueError("install --standalone needs an installed ipvlan-ip to copy from, not a zip application")
    entries = {"__main__.py": MAIN.encode()}
    # followlinks: in a checkout, ipvlan_ip/schemas is a link to the top-level schemas/.
    files = [Path(d, f) for d, _, names in os.walk(PACKAGE, followlinks=True) for f in names]
    for source in files:
        relative = source.relative_to(PACKAGE.parent).as_posix()
        if "__pycache__" in relative:
            continue
        if source.suffix == ".py":
            entries[relative] = source.read_bytes()
            entries[relative + "c"] = _bytecode(source, relative)
        elif source.suffix == ".json":
            entries[relative] = source.read_bytes()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, entries[name])
    return shebang(python) + f"{mark}: ipvlan-ip as one zip application.\n".encode() + archive.getvalue()


def _bytecode(source: Path, name: str) -> bytes:
    # Unchecked hash: zipimport then never compares the .pyc with the source's time.
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "module.pyc")
        py_compile.compile(str(source), cfile=out, dfile=name, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        return Path(out).read_bytes()

"""Packaging as a user meets it: `python -m build` makes the sdist and, from
it, the wheel without a warning; the wheel installs into a fresh venv, whose
`ipvlan-ip validate` and `plan` work (schemas and all shipped inside it)."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "example"


def run(*argv, **options) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, **options)
    assert done.returncode == 0, f"{' '.join(map(str, argv))}: {done.stdout}{done.stderr}"
    return done


def test_build_is_clean_and_the_wheel_from_the_sdist_works(tmp_path):
    # setuptools warns that it skips byte-compiling when PYTHONDONTWRITEBYTECODE is set (the test VM sets it).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    built = run(sys.executable, "-m", "build", "--outdir", str(tmp_path / "dist"), str(REPO), env=env)
    warned = [line for line in (built.stdout + built.stderr).splitlines()
              if "warning:" in line.lower() or "deprecat" in line.lower()]
    assert warned == []
    [wheel] = (tmp_path / "dist").glob("*.whl")       # built from the sdist, which is how build works
    assert (tmp_path / "dist" / wheel.name.replace("-py3-none-any.whl", ".tar.gz")).exists()

    venv = tmp_path / "venv"
    run("/usr/bin/python3", "-m", "venv", str(venv))
    run(str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel))
    cli = str(venv / "bin" / "ipvlan-ip")
    assert run(cli, "validate", str(EXAMPLE / "mynet.conf"), cwd=tmp_path).stdout.endswith("valid\n")
    bad = subprocess.run([cli, "validate", "-"], input='{"type": "ipvlan-ip", "mode": "l4"}',
                         capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 1 and "$.mode: 'l4' is not one of" in bad.stdout
    script = run(cli, "plan", str(EXAMPLE / "mynet.conf"), "--netns", "/run/netns/blue", "--ifname", "eth0",
                 cwd=tmp_path).stdout
    assert "link add link" in script and "type ipvlan mode" in script

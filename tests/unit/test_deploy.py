"""deploy/kubernetes/ checked offline: the DaemonSet against Kubernetes' own
schemas (bundled by kubernetes-validate), the NetworkAttachmentDefinition
against Multus' CRD shape with its config against our netconf schema, and
the installer script's refusal to replace a file that is not ours.
tests/kernel/test_standalone.py builds and runs the installer image."""

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from ipvlan_ip import validation

from ..conftest import SYSTEM_PATH

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "kubernetes"
KUBERNETES = "1.30"     # an old enough release that most clusters run it or later

# The part of Multus' CRD (k8s.cni.cncf.io/v1) a NetworkAttachmentDefinition is checked against.
NAD_SCHEMA = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {"apiVersion": {"const": "k8s.cni.cncf.io/v1"}, "kind": {"const": "NetworkAttachmentDefinition"},
                   "metadata": {"type": "object", "required": ["name"]},
                   "spec": {"type": "object", "properties": {"config": {"type": "string"}},
                            "additionalProperties": False}},
}


def load(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


def test_the_daemonset_is_valid_kubernetes():
    kubernetes_validate.validate(load("daemonset.yaml"), KUBERNETES, strict=True)   # raises when it is not


def test_the_daemonset_mounts_the_node_cni_bin_dir_where_the_installer_writes():
    pod = load("daemonset.yaml")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"]}
    assert volumes[mounts[env["CNI_BIN_DIR"]]["name"]] == "/opt/cni/bin"
    # install-cni.sh's default NODE_ROOT: the node's /, read only.
    assert volumes[mounts["/host/root"]["name"]] == "/" and mounts["/host/root"]["readOnly"] is True
    assert "/ipvlan-ip" in (DEPLOY / "Containerfile").read_text()


def test_the_network_attachment_definition_is_the_install_pages_and_its_config_is_valid():
    nad = load("network-attachment-definition.yaml")
    jsonschema.validate(nad, NAD_SCHEMA)
    config = json.loads(nad["spec"]["config"])
    assert validation.problems("netconf", {**config, "name": nad["metadata"]["name"]}) == []
    manifest = (DEPLOY / "network-attachment-definition.yaml").read_text()
    shown = [line.strip() for line in manifest[manifest.index("apiVersion:"):].splitlines()]
    page = [line.strip() for line in (REPO / "docs" / "install.md").read_text().splitlines()]
    assert any(page[n:n + len(shown)] == shown for n in range(len(page))), "docs/install.md's NAD differs"


def test_the_installer_leaves_a_file_that_is_not_ours(tmp_path):
    foreign = tmp_path / "ipvlan-ip"
    foreign.write_text("#!/bin/sh\necho another plugin\n")
    done = subprocess.run(["sh", str(DEPLOY / "install-cni.sh")], env={"CNI_BIN_DIR": str(tmp_path), "NODE_ROOT": "/"},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "not written by ipvlan-ip" in done.stderr
    assert foreign.read_text() == "#!/bin/sh\necho another plugin\n"


def node_root(path: Path, python: str | None) -> Path:
    """A node's root with busybox's sh and ip, and `python` as its python3 (a
    script answering like that version), or none."""
    (path / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", path / "bin" / "busybox")
    for applet in ("sh", "ip"):
        (path / "bin" / applet).symlink_to("busybox")
    if python:
        (path / "bin" / "python3").write_text(
            f"#!/bin/sh\ncase \"$*\" in --version) echo Python {python};; *) exit {int(python < '3.9')};; esac\n")
        (path / "bin" / "python3").chmod(0o755)
    return path


@pytest.mark.parametrize("python, missing", [(None, "python3 (3.9 or later)"),
                                             ("3.8.10", "python3 3.9 or later (it has Python 3.8.10)")])
def test_the_installer_refuses_a_node_that_cannot_run_the_plugin(python, missing, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    done = subprocess.run(["sh", str(DEPLOY / "install-cni.sh")], capture_output=True, text=True, timeout=30,
                          env={"CNI_BIN_DIR": str(bin_dir), "NODE_ROOT": str(node_root(tmp_path / "node", python)),
                               "PATH": SYSTEM_PATH})
    assert done.returncode == 1 and list(bin_dir.iterdir()) == []
    assert done.stderr == f"install-cni: this node cannot run ipvlan-ip: it lacks {missing}; nothing installed\n"


@pytest.mark.parametrize("name", ["daemonset.yaml", "network-attachment-definition.yaml"])
def test_the_readme_points_at_the_manifests(name):
    assert f"deploy/kubernetes/{name}" in (REPO / "README.md").read_text()

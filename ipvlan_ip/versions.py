"""The CNI spec versions ipvlan-ip speaks, and the VERSION answer.

Kept apart and free of imports: runtimes (podman among them) ask every
plugin for VERSION on every command, so that path must start fast."""

SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = SUPPORTED_VERSIONS[-1]


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def version_result(requested: str) -> dict:
    return {"cniVersion": requested if requested in SUPPORTED_VERSIONS else LATEST,
            "supportedVersions": list(SUPPORTED_VERSIONS)}

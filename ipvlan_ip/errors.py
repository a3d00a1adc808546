"""CNI error codes and the one exception type that carries them to stdout.

Codes below 100 are the spec's well-known ones; 100 and up are ours and are
listed in docs/errors.md.
"""
from __future__ import annotations

INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODING_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50

# Our own codes.
LINK_FAILURE = 100      # an `ip` command failed
IPAM_FAILURE = 101      # the IPAM plugin could not be run or answered nonsense
CHECK_FAILURE = 102     # CHECK found the container's network drifted
MASTER_FAILURE = 103    # the master interface is missing or unusable
INTERFACE_EXISTS = 104  # CNI_IFNAME is taken in the container: a repeated ADD, or another plugin's
PYTHON_TOO_OLD = 105    # the standalone file run by Python < 3.9 (answered by its __main__.py)
INTERNAL = 199          # a bug in ipvlan-ip: please report it

_SHORT = {
    INCOMPATIBLE_VERSION: "incompatible CNI version",
    UNSUPPORTED_FIELD: "unsupported field in network configuration",
    UNKNOWN_CONTAINER: "container unknown or does not exist",
    INVALID_ENVIRONMENT: "invalid environment variables",
    IO_FAILURE: "I/O failure",
    DECODING_FAILURE: "failed to decode content",
    INVALID_CONFIG: "invalid network configuration",
    TRY_AGAIN_LATER: "try again later",
    NOT_AVAILABLE: "plugin not available",
    LINK_FAILURE: "failed to configure the ipvlan link",
    IPAM_FAILURE: "IPAM plugin failed",
    CHECK_FAILURE: "container network does not match prevResult",
    MASTER_FAILURE: "master interface unusable",
    INTERFACE_EXISTS: "interface already exists in the container",
    PYTHON_TOO_OLD: "Python too old for ipvlan-ip",
    INTERNAL: "internal error in ipvlan-ip",
}


class CniError(Exception):
    """An error the plugin reports as a CNI error object."""

    def __init__(self, code: int, details: str, msg: str | None = None):
        super().__init__(details)
        self.code = code
        self.msg = msg or _SHORT.get(code, "plugin error")
        self.details = details

    def wrap(self, doing: str) -> CniError:
        """The same error, its details prefixed by what was being done."""
        return CniError(self.code, f"{doing}: {self.details}", self.msg)

    def as_result(self, cni_version: str) -> dict:
        return {"cniVersion": cni_version, "code": self.code,
                "msg": self.msg, "details": self.details}

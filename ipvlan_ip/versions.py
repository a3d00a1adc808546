"""The CNI spec versions ipvlan-ip speaks, and the VERSION answer.

Kept apart and free of imports: runtimes (podman among them) ask every
plugin for VERSION before every command, so that path must start fast.
Even `import json` (with the `re` it pulls in) would double its cost, so the
request runtimes send, `{"cniVersion": "X"}`, is read by hand; anything else
goes through json."""
from __future__ import annotations

SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = SUPPORTED_VERSIONS[-1]


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def version_result(requested: str) -> dict:
    return {"cniVersion": requested if requested in SUPPORTED_VERSIONS else LATEST,
            "supportedVersions": list(SUPPORTED_VERSIONS)}


def version_answer(stdin: bytes) -> str:
    """VERSION's answer as JSON text, in the version the request names (the
    latest for one we do not speak or for garbage; 0.1.0 for a config without
    cniVersion, as the spec reads it)."""
    requested = _plain_request(stdin)
    if requested is None:
        import json
        try:
            data = json.loads(stdin)
        except ValueError:
            data = None
        requested = data.get("cniVersion", "0.1.0") if isinstance(data, dict) else LATEST
    answer = version_result(requested)
    # Only our own constants go into the text, so no escaping is needed.
    listed = ", ".join(f'"{v}"' for v in answer["supportedVersions"])
    return f'{{"cniVersion": "{answer["cniVersion"]}", "supportedVersions": [{listed}]}}\n'


def _plain_request(stdin: bytes) -> str | None:
    """X from exactly `{"cniVersion": "X"}` (any spacing), else None."""
    text = stdin.decode("ascii", "replace").strip()
    if not (text.startswith("{") and text.endswith("}")):
        return None
    key, colon, value = text[1:-1].partition(":")
    value = value.strip()
    if key.strip() != '"cniVersion"' or not colon or len(value) < 2 or value[0] != '"' or value[-1] != '"':
        return None
    inner = value[1:-1]
    return None if '"' in inner or "\\" in inner else inner

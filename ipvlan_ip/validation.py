"""JSON Schema validation of configs and results, against the files in schemas/.

jsonschema is imported here, and only when something is validated: VERSION
never needs it, and its import is the largest part of the plugin's start-up.
"""

import json
import os
from functools import cache

# Next to this file, in the installed package too (importlib.resources would
# find them as well, at a start-up cost that every plugin call pays).
_DIR = os.path.join(os.path.dirname(__file__), "schemas")


@cache
def _load(name: str) -> dict:
    with open(os.path.join(_DIR, f"{name}.schema.json")) as f:
        return json.load(f)


@cache
def _validator(name: str):
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    # Results refer to each other's definitions by relative $ref.
    registry = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema))
        for schema in (_load(n) for n in _names()))
    return Draft202012Validator(_load(name), registry=registry,
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def _names() -> list[str]:
    return [f.removesuffix(".schema.json") for f in os.listdir(_DIR) if f.endswith(".schema.json")]


def problems(name: str, instance) -> list[str]:
    """Every way `instance` breaks schema `name`, as 'path: reason' lines."""
    found = sorted(_validator(name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [f"{_json_path(e.absolute_path)}: {_reason(e)}" for e in found]


def _json_path(parts) -> str:
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _reason(error) -> str:
    # A schema's own "description" says what a value should be more plainly
    # than a regular expression does.
    description = error.schema.get("description") if isinstance(error.schema, dict) else None
    if error.validator in ("pattern", "anyOf", "not") and description:
        return f"{error.instance!r} is not valid: {description}"
    return error.message

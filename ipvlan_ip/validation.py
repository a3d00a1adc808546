"""JSON Schema validation of configs and results, against the files in schemas/.

Two engines, one source. Every plugin call checks its documents with the
validators compiled from schemas/ ahead of time (compiled_schemas.py), which
need nothing beyond the standard library. jsonschema is the engine of record:
`problems` uses it to list every problem with its JSON path and reason, for
`ipvlan-ip validate` and to explain a document the compiled check rejected.
So the import of jsonschema, the largest part of a call's start-up before,
is paid only on the way to an error. Where jsonschema is not installed, the
compiled validator's own message stands in.
"""

import json
from functools import cache

from .compiled_schemas import VALIDATORS, JsonSchemaValueException


def check(name: str, instance) -> list[str]:
    """Every way `instance` breaks schema `name`, as 'path: reason' lines;
    the compiled validator decides, so a valid document costs no import."""
    try:
        VALIDATORS[name](instance)
        return []
    except JsonSchemaValueException as e:
        return problems(name, instance) or [_compiled_problem(e)]


def valid(name: str, instance) -> bool:
    """Whether `instance` meets schema `name`, by the compiled validator alone."""
    try:
        VALIDATORS[name](instance)
        return True
    except JsonSchemaValueException:
        return False


def problems(name: str, instance) -> list[str]:
    """Every way `instance` breaks schema `name`, by jsonschema when it is
    installed; else the first problem the compiled validator finds."""
    try:
        validator = _validator(name)
    except ImportError:
        try:
            VALIDATORS[name](instance)
            return []
        except JsonSchemaValueException as e:
            return [_compiled_problem(e)]
    found = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [f"{_json_path(e.absolute_path)}: {_reason(e)}" for e in found]


@cache
def _load(name: str) -> dict:
    # Through the package's loader, so that it works from the standalone zip too;
    # only the way to an explanation pays for importlib.resources.
    from importlib.resources import files
    return json.loads(files("ipvlan_ip.schemas").joinpath(f"{name}.schema.json").read_text())


@cache
def _validator(name: str):
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    # Results refer to each other's definitions by relative $ref.
    registry = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema))
        for schema in (_load(n) for n in VALIDATORS))
    return Draft202012Validator(_load(name), registry=registry,
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


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


def _compiled_problem(error: JsonSchemaValueException) -> str:
    """fastjsonschema says 'data.ips[0].address must match pattern …': the
    same 'path: reason' shape as jsonschema's lines."""
    name = error.name or "data"
    path = "$" + name.removeprefix("data")
    reason = error.message.removeprefix(name).strip()
    description = error.definition.get("description") if isinstance(error.definition, dict) else None
    if error.rule in ("pattern", "anyOf", "not") and description:
        reason = f"{error.value!r} is not valid: {description}"
    return f"{path}: {reason}"

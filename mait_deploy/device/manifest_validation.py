"""Every manifest read is checked against the checked-in schema (``assets/manifest.schema.json``, the file the native
runner compiles in too; ``manifest_schema.py`` generates it from the dataclasses) before any value is used."""

from __future__ import annotations

import functools
import json
import math
from typing import Any, Mapping

from mait_deploy._assets import ASSETS
from mait_deploy.errors import BundleError, shorten

SCHEMA_FILE = ASSETS / "manifest.schema.json"


def _is_integer(checker: Any, instance: Any) -> bool:
    """JSON integers only: jsonschema takes 3.0 for an integer, which the native reader (and numpy) do not."""
    return isinstance(instance, int) and not isinstance(instance, bool)


@functools.lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    strict = jsonschema.validators.extend(
        jsonschema.Draft202012Validator,
        type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer))
    return strict(schema)


def validate_manifest(data: Any, origin: str) -> None:
    """One BundleError naming the first offending field and its bound, before any value is used."""
    from jsonschema.exceptions import best_match

    error = best_match(_validator().iter_errors(data))
    if error is None:
        _check_finite(data, origin, "")
        return
    where = ".".join(str(part) for part in error.absolute_path) or "(top level)"
    if error.validator == "anyOf":  # "is not valid under any of the given schemas" says too little: name them
        message = f"{_short(error.instance)} is not {' or '.join(_describe(s) for s in error.validator_value)}"
    else:
        message = shorten(error.message, 200)
    raise BundleError(f"{origin}: {where}: {message}")


def _check_finite(value: Any, origin: str, where: str) -> None:
    """JSON Schema cannot refuse NaN or Infinity (Python's json reads both): a tolerance or a mean of NaN would
    pass every bound and decide nothing."""
    if isinstance(value, float) and not math.isfinite(value):
        raise BundleError(f"{origin}: {where or '(top level)'}: {value} is not a finite number")
    children = value.items() if isinstance(value, Mapping) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        _check_finite(child, origin, f"{where}.{key}" if where else str(key))


def _short(value: Any) -> str:
    return shorten(json.dumps(value) if not isinstance(value, str) else repr(value))


def _describe(schema: Mapping[str, Any]) -> str:
    """'an integer from 1 to 65536', "'dynamic'", 'an object', 'null': one alternative of an anyOf."""
    if "const" in schema:
        return repr(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(map(repr, schema["enum"]))
    kind = schema.get("type")
    article = {"integer": "an integer", "number": "a number", "string": "a string", "object": "an object",
               "array": "a list", "boolean": "true/false", "null": "null"}.get(kind, "valid")
    if "minimum" in schema and "maximum" in schema:
        return f"{article} from {schema['minimum']:g} to {schema['maximum']:g}"
    return article

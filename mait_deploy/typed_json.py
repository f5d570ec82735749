"""Typed dataclasses <-> JSON, strictly, and their JSON Schema: what every result and contract that crosses a
process, an SSH link or a file uses (the bundle manifest's schema, the reports' BundleRun, results.py).

``decode`` rebuilds a dataclass from parsed JSON and refuses what its type hints do not allow (an unknown or
missing field, a string where a number belongs, a value outside an enum), naming the path of the first bad value.
``SchemaBuilder`` turns the same type hints into JSON Schema (draft 2020-12), with bounds by dotted path.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any, Mapping, TypeVar

from mait_deploy.errors import ValidationError

T = TypeVar("T")

# Defaults for anything not bounded: a contract or a report row is kilobytes, so every string, array and object is
# small.
MAX_STRING = 4096
MAX_ITEMS = 4096
MAX_PROPERTIES = 256


def _optional(hint: Any) -> tuple[bool, list[Any]]:
    """Whether ``hint`` admits None, and its other members."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        return type(None) in args, [arg for arg in args if arg is not type(None)]
    return False, [hint]


def decode(cls: type[T], data: Any, origin: str = "value") -> T:
    """``data`` (parsed JSON) as a ``cls`` (a dataclass), checked field by field against its type hints; a
    ValidationError naming ``origin`` and the path of the first value that does not fit."""
    return typing.cast(T, _decode(cls, data, origin))


def _decode(hint: Any, value: Any, path: str) -> Any:
    nullable, options = _optional(hint)
    if value is None:
        if nullable or hint in (Any, object):
            return None
        raise ValidationError(f"{path} is null")
    if len(options) > 1:
        for option in options:
            try:
                return _decode(option, value, path)
            except ValidationError:
                continue
        raise ValidationError(f"{path} fits none of its types ({type(value).__name__})")
    hint = options[0]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in (Any, object):  # any JSON value, left as parsed (a runtime's own description, a device's state)
        return value
    if dataclasses.is_dataclass(hint):
        return _decode_dataclass(typing.cast(type, hint), value, path)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            known = ", ".join(str(member.value) for member in hint)
            raise ValidationError(f"{path} is {str(value)[:40]!r}, not one of {known}") from None
    if hint is bool:
        if not isinstance(value, bool):
            raise ValidationError(f"{path} is not true or false")
        return value
    if hint in (int, float):
        wrong = isinstance(value, bool) or not isinstance(value, int if hint is int else (int, float))
        if wrong:
            raise ValidationError(f"{path} is not {'an integer' if hint is int else 'a number'}")
        return float(value) if hint is float else value
    if hint is str:
        if not isinstance(value, str):
            raise ValidationError(f"{path} is not a string")
        return value
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, list):
            raise ValidationError(f"{path} is not a list")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ValidationError(f"{path} has {len(value)} items, not {len(args)}")
            return tuple(_decode(arg, item, f"{path}[{i}]") for i, (arg, item) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [_decode(item, entry, f"{path}[{i}]") for i, entry in enumerate(value)]
        return tuple(items) if origin is tuple or hint is tuple else items
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, dict):
            raise ValidationError(f"{path} is not an object")
        item = args[1] if len(args) == 2 else object
        return {str(key): _decode(item, entry, f"{path}.{key}") for key, entry in value.items()}
    raise TypeError(f"no decoding for {hint!r} at {path}")


def _decode_dataclass(cls: type, value: Any, path: str) -> Any:
    if not isinstance(value, dict):
        raise ValidationError(f"{path} is not an object")
    fields = {field.name: field for field in dataclasses.fields(cls) if field.init}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise ValidationError(f"{path} has unknown fields: {', '.join(str(name)[:40] for name in unknown[:5])}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, field in fields.items():
        if name in value:
            values[name] = _decode(hints[name], value[name], f"{path}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ValidationError(f"{path} has no {name}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:  # a dataclass's own checks (__post_init__)
        raise ValidationError(f"{path}: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from err


def encode(value: Any) -> Any:
    """A dataclass (or a structure of them) as JSON values: enums by value, tuples as lists; a field whose
    metadata says ``json: False`` is left out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: encode(getattr(value, field.name)) for field in dataclasses.fields(value)
                if field.metadata.get("json", True)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [encode(item) for item in value]
    if isinstance(value, dict):
        return {key: encode(item) for key, item in value.items()}
    return value


@dataclasses.dataclass
class SchemaBuilder:
    """JSON Schema from dataclass type hints. ``bounds``: extra keywords by dotted path ("*" = every item of an
    array); ``typed_dicts``: fields the dataclass keeps as a plain dict that hold a typed object; ``required_in``:
    for the objects at these paths, only these fields are required (elsewhere: every field without a default);
    ``typed_values``: a ``dict[str, X]`` also says what its values are (the manifest's schema, older, does not)."""

    bounds: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    typed_dicts: Mapping[str, type] = dataclasses.field(default_factory=dict)
    required_in: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    typed_values: bool = False

    def for_type(self, hint: Any, path: str) -> dict[str, Any]:
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin in (typing.Union, types.UnionType):
            options = [self.for_type(arg, path) for arg in args if arg is not type(None)]
            one = options[0] if len(options) == 1 else {"anyOf": options}
            return {"anyOf": [one, {"type": "null"}]} if type(None) in args else one
        if hint in (Any, object):
            return {}
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            return {"enum": [member.value for member in hint]}
        if hint is bool:
            return {"type": "boolean"}
        if hint is int:
            return {"type": "integer"}
        if hint is float:
            return {"type": "number"}
        if hint is str:
            return {"type": "string", "maxLength": MAX_STRING}
        if path in self.typed_dicts or dataclasses.is_dataclass(hint):
            return self.for_dataclass(self.typed_dicts.get(path, hint), path)
        if origin in (list, tuple) or hint in (list, tuple):
            item = args[0] if args else Any
            return {"type": "array", "maxItems": MAX_ITEMS, "items": self.for_type(item, f"{path}.*")}
        if origin in (dict, Mapping) or hint is dict:
            schema: dict[str, Any] = {"type": "object", "maxProperties": MAX_PROPERTIES}
            if self.typed_values and len(args) == 2 and args[1] not in (Any, object):
                schema["additionalProperties"] = self.for_type(args[1], f"{path}.*")
            return schema
        raise TypeError(f"no JSON Schema for {hint!r} at {path}")

    def for_dataclass(self, cls: type, path: str = "") -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        properties, required = {}, []
        for field in dataclasses.fields(cls):
            if field.name.startswith("_") or not field.metadata.get("json", True):
                continue
            child = f"{path}.{field.name}" if path else field.name
            hint = hints[field.name]
            plain_dict = hint is dict or typing.get_origin(hint) in (dict, Mapping)
            schema = self.for_type(self.typed_dicts[child] if child in self.typed_dicts and plain_dict else hint,
                                   child)
            if child in self.bounds:
                schema = bounded(schema, self.bounds[child])
            properties[field.name] = schema
            # Required: what the dataclass cannot default (older files lack the fields added since, which default).
            has_default = field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
            if field.name in self.required_in.get(path, ()) or (path not in self.required_in and not has_default):
                required.append(field.name)
        for item_path, bound in self.bounds.items():  # bounds on array items ("files.*.path") reach into them
            prefix = f"{path}." if path else ""
            if item_path.startswith(prefix) and ".*." in item_path[len(prefix):]:
                array, rest = item_path[len(prefix):].split(".*.", 1)
                if array in properties and "." not in rest:
                    target = properties[array]
                    if "anyOf" in target:  # a nullable list: bound the list, not the null
                        target = next(option for option in target["anyOf"] if option.get("type") == "array")
                    items = target.setdefault("items", {})
                    items.setdefault("properties", {})[rest] = bounded(items.get("properties", {}).get(rest, {}),
                                                                       bound)
        return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def bounded(schema: dict[str, Any], bound: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` with ``bound`` applied; a nullable schema keeps its null."""
    if "anyOf" in schema and {"type": "null"} in schema["anyOf"] and "anyOf" not in bound and "enum" not in bound:
        inner = [s for s in schema["anyOf"] if s != {"type": "null"}][0]
        return {"anyOf": [{**inner, **bound}, {"type": "null"}]}
    if "anyOf" in bound or "enum" in bound or "const" in bound:
        return {key: value for key, value in {**schema, **bound}.items()
                if key not in ("type", "anyOf") or key in bound}
    return {**schema, **bound}

"""Declared options (after Olive's PassConfigParam): each a name, a type, a default, a help line and its allowed
values, validated in one place. Targets declare their ``-O KEY=VALUE`` compile options with them, runners the
runtime options a bundle's manifest or a caller passes (``RunnerOptions.extra``); ``mait-deploy targets`` prints
both. stdlib only: runners on a device import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from mait_deploy.errors import UnsupportedOption

MAX_THREADS = 256  # runtime threads a runner takes (the native runner's kMaxThreads: one range on both sides)

_TYPE_NAMES = {bool: "true/false", int: "an integer", float: "a number", str: "a string", list: "a list",
               dict: "an object"}


@dataclass(frozen=True)
class Option:
    """One declared option. ``default`` None means "not set" (the runtime's or the target's own choice)."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    precisions: tuple[str, ...] | None = None  # compile options that apply to these precisions only
    note: str = ""  # said after a refused value (why these choices, where to find the right one)

    def check(self, value: Any, flag: str = "-O") -> Any:
        """The value, checked (a one-line UnsupportedOption naming the option otherwise)."""
        # bool is an int in Python: an integer option must not take true/false, nor a bool option 1.
        ok = isinstance(value, self.type) and (isinstance(value, bool) == (self.type is bool))
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            ok, value = True, float(value)
        if not ok:
            raise UnsupportedOption(f"{flag} {self.name}={value!r}: {self.name} takes {_TYPE_NAMES[self.type]}")
        if self.choices is not None and value not in self.choices:
            raise UnsupportedOption(f"{flag} {self.name}={value!r}: use one of {', '.join(map(str, self.choices))}"
                                    + (f" ({self.note})" if self.note else ""))
        if self.minimum is not None and value < self.minimum:
            raise UnsupportedOption(f"{flag} {self.name}={value!r}: {self.name} must be >= {self.minimum:g}")
        return value

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type.__name__, "default": self.default, "help": self.help,
                "choices": list(self.choices) if self.choices is not None else None, "minimum": self.minimum,
                "precisions": list(self.precisions) if self.precisions is not None else None}


def validate(declared: Sequence[Option], values: Mapping[str, Any], owner: str, precision: str | None = None,
             flag: str = "-O") -> dict[str, Any]:
    """``values`` checked against ``declared`` (unknown names, types, choices, bounds, precision), with every
    declared default filled in. ``owner`` names who declares them in the error ("target openvino")."""
    by_name = {option.name: option for option in declared}
    unknown = sorted(set(values) - set(by_name))
    if unknown:
        known = ", ".join(by_name) or "none"
        raise UnsupportedOption(f"{owner} has no option(s) {', '.join(unknown)} (it takes: {known})")
    result = {option.name: option.default for option in declared}
    for name, value in values.items():
        option = by_name[name]
        if precision is not None and option.precisions is not None and precision not in option.precisions:
            raise UnsupportedOption(f"{flag} {name} applies to {' and '.join(option.precisions)} only")
        result[name] = option.check(value, flag)
    return result

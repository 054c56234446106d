"""Label and field selectors of the emulated API server (`?labelSelector=` / `?fieldSelector=`).

The label selector grammar is Kubernetes' full one: `k=v`, `k==v`, `k!=v`, `k in (a,b)`,
`k notin (a,b)`, `k` (exists), `!k` (does not exist), `k>N`, `k<N`, joined by commas (AND).
Field selectors support `=`, `==` and `!=` on the field labels a resource declares; like the
real server, an unknown field label is a 400 rather than a silently empty result, so an
operator that selects on a field a real cluster would reject fails here too.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from accelqual.sim.emu_errors import ApiError, bad_request

_KEY = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_NOT_EXISTS = re.compile(rf"^!\s*({_KEY})$")
_SET = re.compile(rf"^({_KEY})\s+(in|notin)\s*\(([^()]*)\)$")
_COMPARE = re.compile(rf"^({_KEY})\s*(==|=|!=|>|<)\s*({_VALUE})$")
_EXISTS = re.compile(rf"^({_KEY})$")
_SET_VALUE = re.compile(rf"^{_VALUE}$")


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector; `operator` is one of =, !=, in, notin, exists, !, gt, lt."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        if self.operator == "=":
            return value == self.values[0]
        if self.operator == "!=":
            return value != self.values[0]
        if self.operator == "in":
            return value is not None and value in self.values
        if self.operator == "notin":
            return value is None or value not in self.values
        if self.operator == "exists":
            return self.key in labels
        if self.operator == "!":
            return self.key not in labels
        # gt / lt: both sides must be integers, as in apimachinery's labels package.
        try:
            actual, wanted = int(str(value)), int(self.values[0])
        except ValueError:
            return False
        return actual > wanted if self.operator == "gt" else actual < wanted


def _split_terms(text: str) -> list[str]:
    """Split on the commas that are not inside `( ... )` value sets."""
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return [t.strip() for t in terms]


@dataclass(frozen=True)
class LabelSelector:
    """A parsed label selector; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> LabelSelector:
        if not text or not text.strip():
            return cls()
        requirements = []
        for term in _split_terms(text):
            requirements.append(_parse_requirement(term, text))
        return cls(tuple(requirements))

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        for req in self.requirements:  # a plain loop: this runs once per object per LIST
            if not req.matches(labels):
                return False
        return True


def _parse_requirement(term: str, whole: str) -> Requirement:
    if not term:
        raise bad_request(f"unable to parse requirement: empty term in label selector {whole!r}")
    if m := _NOT_EXISTS.match(term):
        return Requirement(m.group(1), "!")
    if m := _SET.match(term):
        values = tuple(v.strip() for v in m.group(3).split(","))
        if not values or any(not _SET_VALUE.match(v) for v in values) or values == ("",):
            raise bad_request(f"unable to parse requirement: invalid value set in {term!r}")
        return Requirement(m.group(1), m.group(2), values)
    if m := _COMPARE.match(term):
        op = {"==": "=", ">": "gt", "<": "lt"}.get(m.group(2), m.group(2))
        if op in ("gt", "lt") and not re.fullmatch(r"-?\d+", m.group(3)):
            raise bad_request(f"unable to parse requirement: {term!r}: for 'gt', 'lt' operators, "
                              f"the value must be an integer")
        return Requirement(m.group(1), op, (m.group(3),))
    if m := _EXISTS.match(term):
        return Requirement(m.group(1), "exists")
    raise bad_request(f"unable to parse requirement: {term!r} in label selector {whole!r}")


def field_value(obj: Mapping[str, Any], label: str) -> str:
    """The string value of a dotted field path as the API server compares it ('' when absent)."""
    node: Any = obj
    for part in label.split("."):
        if not isinstance(node, Mapping):
            return ""
        node = node.get(part)
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


@dataclass(frozen=True)
class FieldRequirement:
    label: str
    equal: bool
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return (field_value(obj, self.label) == self.value) == self.equal


def _unescape(value: str) -> str:
    # Field selector values escape `\`, `,` and `=` with a backslash (fields.EscapeValue).
    return re.sub(r"\\(.)", r"\1", value)


@dataclass(frozen=True)
class FieldSelector:
    """A parsed field selector over the field labels a resource supports."""

    requirements: tuple[FieldRequirement, ...] = ()

    @classmethod
    def parse(cls, text: str | None, supported: Collection[str]) -> FieldSelector:
        if not text or not text.strip():
            return cls()
        requirements = []
        for term in re.split(r"(?<!\\),", text):
            term = term.strip()
            m = re.match(r"^([A-Za-z0-9_.\-/]+)\s*(==|!=|=)\s*(.*)$", term)
            if not m:
                raise bad_request(f"invalid selector: {text!r}; can't understand {term!r}")
            label, op, value = m.group(1), m.group(2), _unescape(m.group(3))
            if label not in supported:
                raise ApiError(400, f'field label not supported: {label}')
            requirements.append(FieldRequirement(label, op != "!=", value))
        return cls(tuple(requirements))

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, obj: Mapping[str, Any]) -> bool:
        for req in self.requirements:
            if not req.matches(obj):
                return False
        return True

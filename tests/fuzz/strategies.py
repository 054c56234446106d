"""Hypothesis strategies for hostile input: probe output, Qualification specs and Kubernetes names.

- `json_schema(schema)`: values for the JSON schema pydantic derives from a model (the same schema
  the CRD is generated from), so spec and status strategies follow the models as they change.
- `tricky_text()`: the unicode a compromised node would use against people reading its output:
  bidi overrides, zero-width and format characters, NULs and other controls, escape sequences,
  lone surrogates, lookalikes, very long runs.
- `hostile_outputs()`: whole probe logs (random bytes, random and deeply nested JSON after the
  report marker, NaN/Infinity tokens, oversized lines).
- `dns_subdomains()` / `label_values()`: names at Kubernetes' limits (253 / 63 characters).
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from accelqual.models import LABEL_KEY_PATTERN, LABEL_VALUE_PATTERN
from accelqual_probes.catalog import BY_ID
from accelqual_probes.profiles import BUILTIN
from accelqual_probes.schema import CHECK_ID_PATTERN, MAX_REPORT_BYTES, REPORT_MARKER
from hypothesis import strategies as st

Json = Any

BIDI = ("\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e",
        "\u200f", "\u061c")
INVISIBLE = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e")
CONTROLS = ("\x00", "\x07", "\x08", "\x1b[31m", "\x1b]0;pwned\x07", "\r", "\n", "\t", "\x7f", "\x85", "\u2028",
            "\u2029")
SURROGATES = ("\ud800", "\udbff", "\udc00", "\udfff")
LOOKALIKES = ("\u0440\u0435\u0430l", "\uff50\uff41\uff53\uff53", "\ufb01", "\u2215",
              "\U0001d5c9\U0001d5ba\U0001d5cc\U0001d5cc", "pass\u0338")


def tricky_text(max_size: int = 400) -> st.SearchStrategy[str]:
    """Text mixing ordinary characters with the tricks above (lone surrogates included)."""
    piece = st.one_of(st.sampled_from(BIDI + INVISIBLE + CONTROLS + SURROGATES + LOOKALIKES),
                      st.text(max_size=12), st.text(alphabet=string.ascii_letters + "|`*_<>[]()#!", max_size=12))
    return st.lists(piece, max_size=40).map(lambda parts: "".join(parts)[:max_size])


def json_values(max_leaves: int = 30) -> st.SearchStrategy[Json]:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                        st.text(max_size=30), tricky_text(60))
    return st.recursive(scalars, lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.text(max_size=15), children, max_size=5)),
        max_leaves=max_leaves)


def _deep(depth: int, kind: str) -> str:
    return ("[" * depth + "]" * depth) if kind == "list" else ('{"a":' * depth + "1" + "}" * depth)


def hostile_outputs() -> st.SearchStrategy[str]:
    """A probe pod's log as a compromised or broken node might leave it."""
    marked = st.builds(lambda body, noise: f"{noise}\n{REPORT_MARKER}{body}\n", st.one_of(
        json_values().map(json.dumps),
        st.dictionaries(st.text(max_size=20), json_values(10), max_size=8).map(json.dumps),
        st.builds(_deep, st.integers(1, 100_000), st.sampled_from(("list", "dict"))),
        st.sampled_from(("NaN", "Infinity", "-Infinity", '{"value": NaN}', '{"value": 1e999}', "{", "}", "",
                         '{"schemaVersion": "accelqual.io/v1", "verdict": "pass"}',
                         '{"schemaVersion": "accelqual.io/v2", "verdict": "pass"}')),
        st.integers(MAX_REPORT_BYTES - 2, MAX_REPORT_BYTES + 2).map(lambda n: '{"x":"' + "y" * n + '"}'),
    ), st.text(max_size=100))
    return st.one_of(
        st.binary(max_size=4000).map(lambda b: b.decode("utf-8", errors="replace")),
        st.text(max_size=2000),
        tricky_text(2000),
        marked,
        st.lists(marked, min_size=2, max_size=4).map("".join),
    )


# --- names -------------------------------------------------------------------------------------

_LABEL_CHARS = string.ascii_lowercase + string.digits


@st.composite
def dns_labels(draw: st.DrawFn, max_size: int = 63) -> str:
    size = draw(st.integers(1, max_size))
    if size == 1:
        return draw(st.sampled_from(_LABEL_CHARS))
    inner = draw(st.text(alphabet=_LABEL_CHARS + "-", min_size=size - 2, max_size=size - 2))
    return draw(st.sampled_from(_LABEL_CHARS)) + inner + draw(st.sampled_from(_LABEL_CHARS))


@st.composite
def dns_subdomains(draw: st.DrawFn, max_size: int = 253) -> str:
    """RFC 1123 subdomains (what the API server accepts as node and Qualification names), often at the limit."""
    labels = draw(st.lists(dns_labels(), min_size=1, max_size=6))
    name = ".".join(labels)
    if draw(st.booleans()):  # pad to the limit: long labels joined with dots
        while len(name) < max_size - 2:
            name += "." + draw(dns_labels())
    return name[:max_size].rstrip(".-")  # cut at the limit: ends with an alphanumeric again


@st.composite
def label_values(draw: st.DrawFn) -> str:
    """Valid label values (63 characters at most, alphanumeric ends, `-_.` inside), often exactly 63."""
    size = draw(st.sampled_from((0, 1, 2, 62, 63)) | st.integers(0, 63))
    if size == 0:
        return ""
    chars = string.ascii_letters + string.digits
    if size == 1:
        return draw(st.sampled_from(chars))
    inner = draw(st.text(alphabet=chars + "-_.", min_size=size - 2, max_size=size - 2))
    return draw(st.sampled_from(chars)) + inner + draw(st.sampled_from(chars))


@st.composite
def label_keys(draw: st.DrawFn) -> str:
    """Label keys: an optional DNS-subdomain prefix and a name of at most 63 characters."""
    name = draw(label_values().filter(bool))
    prefix = draw(st.none() | dns_subdomains(max_size=60))
    return f"{prefix}/{name}" if prefix else name


#: Patterns of the models drawn by hand (from_regex is exact but slow for these; they are everywhere).
_FAST_PATTERNS: dict[str, Callable[[], st.SearchStrategy[str]]] = {
    LABEL_KEY_PATTERN: label_keys,
    LABEL_VALUE_PATTERN: label_values,
    r"^[0-9a-f]{64}$": lambda: st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    # Known ids and profiles half of the time, so that drawn specs get past validation into plan().
    CHECK_ID_PATTERN: lambda: st.sampled_from(sorted(BY_ID)) | st.from_regex(CHECK_ID_PATTERN, fullmatch=True),
    r"^(auto|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$":
        lambda: st.sampled_from(["auto", *sorted(BUILTIN)]) | st.from_regex(r"^[a-z0-9]{1,20}$", fullmatch=True),
}


# --- JSON schema -> values -----------------------------------------------------------------------

def json_schema(schema: Mapping[str, Any], *, optional_rate: bool = True) -> st.SearchStrategy[Json]:
    """Values for a pydantic-generated JSON schema (the subset pydantic emits for our models)."""
    return _Schema(schema.get("$defs") or {}, optional_rate).strategy(schema)


class _Schema:
    """Builds each node's strategy once (a strategy built inside a draw is rebuilt and re-validated every time)."""

    def __init__(self, defs: Mapping[str, Any], optional: bool) -> None:
        self.defs, self.optional = defs, optional
        self._built: dict[int, st.SearchStrategy[Json]] = {}
        self._refs: dict[str, st.SearchStrategy[Json]] = {}

    def strategy(self, node: Mapping[str, Any]) -> st.SearchStrategy[Json]:
        key = id(node)
        if key not in self._built:
            self._built[key] = self._build(node)
        return self._built[key]

    def _ref(self, name: str) -> st.SearchStrategy[Json]:
        if name not in self._refs:
            self._refs[name] = st.deferred(lambda: self.strategy(self.defs[name]))
        return self._refs[name]

    def _build(self, node: Mapping[str, Any]) -> st.SearchStrategy[Json]:
        if "$ref" in node:
            return self._ref(str(node["$ref"]).rsplit("/", 1)[-1])
        if "const" in node:
            return st.just(node["const"])
        if "enum" in node:
            return st.sampled_from(list(node["enum"]))
        for combinator in ("anyOf", "oneOf"):
            if combinator in node:
                return st.one_of(*(self.strategy(option) for option in node[combinator]))
        if "allOf" in node:
            return self.strategy(node["allOf"][0])
        kind = node.get("type")
        if kind == "object":
            return self._object(node)
        if kind == "array":
            return st.lists(self.strategy(node.get("items") or {}), min_size=int(node.get("minItems", 0)),
                            max_size=min(int(node.get("maxItems", 4)), 4))
        if kind == "string":
            return _string(node)
        if kind == "integer":
            low = node.get("minimum", node.get("exclusiveMinimum", -(2**40)) + ("exclusiveMinimum" in node))
            high = node.get("maximum", node.get("exclusiveMaximum", 2**40) - ("exclusiveMaximum" in node))
            return st.integers(int(low), int(high))
        if kind == "number":
            low = node.get("minimum", node.get("exclusiveMinimum"))
            high = node.get("maximum", node.get("exclusiveMaximum"))
            return st.floats(low, high, allow_nan=False, allow_infinity=False,
                             exclude_min="exclusiveMinimum" in node, exclude_max="exclusiveMaximum" in node)
        if kind == "boolean":
            return st.booleans()
        if kind == "null":
            return st.none()
        return json_values(8)

    def _object(self, node: Mapping[str, Any]) -> st.SearchStrategy[Json]:
        properties: Mapping[str, Any] = node.get("properties") or {}
        required = set(node.get("required") or ())
        patterns: Mapping[str, Any] = node.get("patternProperties") or {}
        if not properties and patterns:
            pattern, value_schema = next(iter(patterns.items()))
            return st.dictionaries(st.from_regex(pattern, fullmatch=True).filter(lambda k: len(k) <= 316),
                                   self.strategy(value_schema), max_size=3)
        fields = {key: self.strategy(sub) for key, sub in properties.items()}
        optional = self.optional

        @st.composite
        def build(draw: st.DrawFn) -> dict[str, Json]:
            out: dict[str, Json] = {}
            for key, strategy in fields.items():
                if key in required or (optional and draw(st.booleans())):
                    out[key] = draw(strategy)
            return out
        return build()


def _string(node: Mapping[str, Any]) -> st.SearchStrategy[str]:
    low, high = int(node.get("minLength", 0)), int(node.get("maxLength", 80))
    if node.get("format") == "date-time":
        return st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                            timezones=st.just(UTC)).map(lambda d: d.isoformat())
    if "pattern" in node:
        fast = _FAST_PATTERNS.get(str(node["pattern"]))
        strategy = fast() if fast is not None else st.from_regex(str(node["pattern"]), fullmatch=True)
        return strategy.filter(lambda s: low <= len(s) <= high)
    return st.text(min_size=low, max_size=min(high, 80))

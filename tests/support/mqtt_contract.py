"""docs/mqtt-api.yaml as a machine check: map a concrete topic to its channel and validate a
payload against the channel's message schema (JSON Schema draft 2020-12, `jsonschema`).

    contract().check("kiosk/v1/AH-1/events/sale", payload) -> [] or a list of Violation

What counts as a violation: a topic no channel matches; a payload over the channel's
x-max-bytes; a JSON payload that is not UTF-8 JSON or fails the schema (each schema error with
its instance path and schema path); an image whose sha256 is not the topic's; an uplink payload
whose `kiosk_id` differs from the topic's kiosk id. Other topic prefixes (test isolation on a
shared broker, kiosk.sync.topics.Topics(prefix=...)) map onto the document's `kiosk/v1`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC = Path(__file__).resolve().parents[2] / "docs" / "mqtt-api.yaml"
DOC_PREFIX = "kiosk/v1"
_BASE_URI = "urn:kiosk:mqtt-api"
_PARAMS = {
    # a kiosk id is one level and never a reserved word (the schema KioskId says the same)
    "kioskId": r"(?!(?:province|register)/)(?P<kioskId>[A-Za-z0-9][A-Za-z0-9_-]{0,63})",
    "sha256": r"(?P<sha256>[0-9a-f]{64})",
}
EXCERPT = 240


@dataclass(frozen=True, slots=True)
class Channel:
    name: str  # the template, e.g. kiosk/v1/{kioskId}/events/sale
    direction: str  # "up" (kiosk -> province) or "down"
    message: str  # components/messages name
    max_bytes: int
    binary: bool  # raw bytes (images), not JSON
    regex: re.Pattern[str]


@dataclass(frozen=True, slots=True)
class Violation:
    topic: str
    payload: bytes
    problem: str
    schema_path: str = ""
    instance_path: str = ""

    def excerpt(self) -> str:
        text = self.payload[:EXCERPT].decode("utf-8", errors="replace")
        return text + ("..." if len(self.payload) > EXCERPT else "")

    def __str__(self) -> str:
        where = f" at {self.instance_path}" if self.instance_path else ""
        schema = f" (schema {self.schema_path})" if self.schema_path else ""
        return (
            f"topic {self.topic}: {self.problem}{where}{schema}\n"
            f"    payload ({len(self.payload)} bytes): {self.excerpt()}"
        )


class Contract:
    """The channels and message schemas of one AsyncAPI document."""

    def __init__(self, path: Path = SPEC) -> None:
        self.doc: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
        registry: Registry[Any] = Registry().with_resource(
            _BASE_URI, Resource.from_contents(self.doc, default_specification=DRAFT202012)
        )
        self.channels: list[Channel] = []
        self._validators: dict[str, Draft202012Validator] = {}
        self._pointers: dict[int, str] = {}  # id(subschema) -> its JSON pointer in the doc
        _index(self.doc["components"]["schemas"], "#/components/schemas", self._pointers)
        messages = self.doc["components"]["messages"]
        for name, ch in self.doc["channels"].items():
            op = ch.get("subscribe") or ch.get("publish")
            msg = op["message"]["$ref"].rsplit("/", 1)[1]
            binary = messages[msg].get("contentType") == "application/octet-stream"
            self.channels.append(
                Channel(
                    name,
                    str(ch["x-direction"]),
                    msg,
                    int(ch["x-max-bytes"]),
                    binary,
                    _channel_regex(name),
                )
            )
            if msg not in self._validators:
                payload_ref = messages[msg]["payload"]["$ref"]
                self._validators[msg] = Draft202012Validator(
                    {"$ref": f"{_BASE_URI}{payload_ref}"},
                    registry=registry,
                    format_checker=Draft202012Validator.FORMAT_CHECKER,
                )

    def schema_names(self) -> list[str]:
        return sorted(self.doc["components"]["schemas"])

    def validator(self, schema_name: str) -> Draft202012Validator:
        """A validator for one components/schemas entry (tests of the document itself)."""
        registry: Registry[Any] = Registry().with_resource(
            _BASE_URI, Resource.from_contents(self.doc, default_specification=DRAFT202012)
        )
        return Draft202012Validator(
            {"$ref": f"{_BASE_URI}#/components/schemas/{schema_name}"},
            registry=registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )

    def _schema_path(self, schema: Any, keyword: str) -> str:
        """Where in docs/mqtt-api.yaml the failing keyword is, e.g.
        `#/components/schemas/AlarmBody/required`."""
        return f"{self._pointers.get(id(schema), '?')}/{keyword}"

    def match(self, topic: str, prefix: str = DOC_PREFIX) -> tuple[Channel, dict[str, str]] | None:
        """The channel of a concrete topic and its parameters, None if the document has none."""
        if prefix != DOC_PREFIX:
            if not topic.startswith(prefix + "/"):
                return None
            topic = DOC_PREFIX + topic[len(prefix) :]
        for ch in self.channels:
            m = ch.regex.fullmatch(topic)
            if m is not None:
                return ch, {k: v for k, v in m.groupdict().items() if v is not None}
        return None

    def check(self, topic: str, payload: bytes, prefix: str = DOC_PREFIX) -> list[Violation]:
        """Every way `payload` on `topic` breaks the contract ([] = valid)."""
        found = self.match(topic, prefix)
        if found is None:
            return [Violation(topic, payload, "no channel of docs/mqtt-api.yaml has this topic")]
        ch, params = found
        if len(payload) > ch.max_bytes:
            return [Violation(topic, payload, f"{len(payload)} bytes > x-max-bytes {ch.max_bytes}")]
        if ch.binary:
            digest = hashlib.sha256(payload).hexdigest()
            if digest != params.get("sha256"):
                return [Violation(topic, payload, f"image sha256 {digest} is not the topic's")]
            return []
        try:
            obj = json.loads(payload.decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError) as e:
            return [Violation(topic, payload, f"not UTF-8 JSON: {e}")]
        out = [
            Violation(
                topic,
                payload,
                f"{ch.message}: {e.message}",
                self._schema_path(e.schema, str(e.validator)),
                e.json_path,
            )
            for e in sorted(
                self._validators[ch.message].iter_errors(obj), key=lambda e: list(e.path)
            )
        ]
        kiosk = params.get("kioskId")
        if (
            ch.direction == "up"
            and kiosk
            and isinstance(obj, dict)
            and obj.get("kiosk_id", kiosk) != kiosk
        ):
            problem = f"kiosk_id {obj['kiosk_id']!r} is not the topic's"
            out.append(Violation(topic, payload, problem))
        return out


def _index(node: Any, pointer: str, out: dict[int, str]) -> None:
    if isinstance(node, dict):
        out.setdefault(id(node), pointer)
        for k, v in node.items():
            _index(v, f"{pointer}/{str(k).replace('~', '~0').replace('/', '~1')}", out)
    elif isinstance(node, list):
        for n, v in enumerate(node):
            _index(v, f"{pointer}/{n}", out)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _channel_regex(name: str) -> re.Pattern[str]:
    parts = re.split(r"(\{\w+\})", name)
    return re.compile(
        "".join(_PARAMS[p[1:-1]] if p.startswith("{") else re.escape(p) for p in parts)
    )


@functools.cache
def contract() -> Contract:
    """The document, loaded once per test session."""
    return Contract()

"""Read an ``http`` action (STORIES.md, "Calling an API"), every field checked with its position.

Its templates are the only ones that may use ``@secret.NAME``; everything that can be decided when the
stories load is decided here: the method, the header names, a URL that starts with ``http://`` or
``https://`` as written (values are percent-encoded, so a value can never supply the scheme or the
host's punctuation), the timeout's bounds, every ``save`` path, and the ``on_error`` step.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit

from worker.engine.conditions import Condition
from worker.engine.json_path import SavePath, parse_path
from worker.engine.model import CallApi, JsonArray, JsonBody, JsonLiteral, JsonObject, Where
from worker.engine.reader import ID, Reader
from worker.engine.templates import Template, compile_template
from worker.engine.yaml_source import (
    MappingNode,
    Node,
    ScalarNode,
    SequenceNode,
    is_null,
    locate,
    scalar_text,
)

HTTP_KEYS: Final = ("url", "method", "headers", "json", "body", "timeout", "save", "on_error")
SAVE_KEYS: Final = ("session", "user")
METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE")
DEFAULT_TIMEOUT: Final = 5.0
MAX_TIMEOUT: Final = 30.0
# Set by the gateway (or by the HTTP client from the body): a story may not write them.
MANAGED_HEADERS: Final = frozenset(
    {"content-length", "transfer-encoding", "connection", "host", "idempotency-key"}
)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_BOOLEANS: Final = {"true": "true", "True": "true", "TRUE": "true", "false": "false", "False": "false",
                    "FALSE": "false"}  # fmt: skip


def plain_literal(node: Node) -> str | None:
    """The JSON text of a plain (unquoted) ``null``, boolean or number; None for anything else (text)."""
    if not isinstance(node, ScalarNode) or getattr(node, "style", None):
        return None
    if is_null(node):
        return "null"
    value: str = node.value
    if value in _BOOLEANS:
        return _BOOLEANS[value]
    return value if _NUMBER.fullmatch(value) else None


class HttpActionReader(Reader):
    """The part of the action reader that reads ``http`` actions; ``step_refs`` collects ``on_error``."""

    def __init__(self) -> None:
        super().__init__()
        self.http_templates: dict[tuple[str, bool], Template] = {}

    def read_http(
        self, node: Node, step_refs: list[tuple[str, Where]], when: tuple[Condition, ...]
    ) -> CallApi | None:
        found = self.entries(node, HTTP_KEYS, "http")
        if found is None:
            return None
        complete = True
        if "url" not in found:
            self.problem(node, "http needs a 'url'")
            complete = False
        url = self.http_url(found["url"][1]) if "url" in found else None
        method = self.method(found["method"][1]) if "method" in found else "GET"
        headers = self.headers(found["headers"][1]) if "headers" in found else ()
        body_json = self.json_body(found["json"][1]) if "json" in found else None
        body = self.http_template(found["body"][1], "http body") if "body" in found else None
        if "json" in found and "body" in found:
            self.problem(found["body"][0], "http has both 'json' and 'body'; keep one")
            complete = False
        elif method == "GET" and ("json" in found or "body" in found):
            key = "json" if "json" in found else "body"
            self.problem(found[key][0], f"a GET request sends no '{key}'; add method: POST (or PUT, PATCH)")
            complete = False
        timeout = self.timeout(found["timeout"][1]) if "timeout" in found else DEFAULT_TIMEOUT
        saves = self.saves(found["save"][1]) if "save" in found else ((), ())
        on_error = None
        if "on_error" in found:
            on_error = self.identifier(found["on_error"][1], "on_error step")
            if on_error is not None:
                step_refs.append((on_error, self.where(found["on_error"][1])))
        if (
            not complete
            or url is None
            or method is None
            or headers is None
            or ("json" in found and body_json is None)
            or ("body" in found and body is None)
            or timeout is None
            or saves is None
            or ("on_error" in found and on_error is None)
        ):
            return None
        template, host = url
        return CallApi(
            url=template, method=method, headers=headers, json=body_json, body=body, timeout=timeout,
            save_session=saves[0], save_user=saves[1], on_error=on_error, host=host, where=self.where(node),
            when=when,
        )  # fmt: skip

    def http_template(self, node: Node, what: str) -> Template | None:
        """A template that may use ``@secret.NAME``."""
        value = scalar_text(node)
        if value is None:
            self.problem(node, f"{what} must be text")
            return None
        label = f"bad template in {what}"
        return self._compiled(node, label, self.http_templates, value, True, _with_secrets)

    def http_url(self, node: Node) -> tuple[Template, str | None] | None:
        """The URL template and, when the story writes the host out, that host."""
        template = self.http_template(node, "http url")
        if template is None:
            return None
        first = template.parts[0] if template.parts else ""
        prefix = first.lstrip() if isinstance(first, str) else ""
        if not prefix.lower().startswith(("http://", "https://")):
            self.problem(
                node, "http url must start with http:// or https:// (written out: values are percent-encoded)"
            )
            return None
        after_scheme = prefix.split("://", 1)[1]
        authority_written = template.constant is not None or any(c in after_scheme for c in "/?#")
        host = urlsplit(prefix).hostname if authority_written else None
        if authority_written and not host:
            self.problem(node, "http url has no host")
            return None
        return template, host

    def method(self, node: Node) -> str | None:
        value = self.text(node, "http method")
        if value is None:
            return None
        if value.upper() not in METHODS:
            self.problem(node, f"http method must be one of {', '.join(METHODS)}, not {value!r}")
            return None
        return value.upper()

    def headers(self, node: Node) -> tuple[tuple[str, Template], ...] | None:
        found = self.entries(node, None, "http headers")
        if found is None:
            return None
        headers: list[tuple[str, Template]] = []
        valid = True
        for name, (key_node, value_node) in found.items():
            if not _TOKEN.fullmatch(name):
                self.problem(key_node, f"header name {name!r}: use letters, digits and !#$%&'*+.^_`|~-")
                valid = False
                continue
            if name.lower() in MANAGED_HEADERS:
                self.problem(key_node, f"header {name!r} is set by the gateway; leave it out")
                valid = False
                continue
            template = self.http_template(value_node, f"header {name}")
            if template is None:
                valid = False
            else:
                headers.append((name, template))
        return tuple(headers) if valid else None

    def json_body(self, node: Node) -> JsonBody | None:
        """A YAML value as a JSON body: mappings, lists, plain null/true/false/numbers; text is a template."""
        if isinstance(node, MappingNode):
            found = self.entries(node, None, "json")
            if found is None:
                return None
            entries: list[tuple[Template, JsonBody]] = []
            valid = True
            for name, (key_node, value_node) in found.items():
                key = self.http_template(key_node, f"json key {name!r}")
                value = self.json_body(value_node)
                if key is None or value is None:
                    valid = False
                else:
                    entries.append((key, value))
            return JsonObject(tuple(entries)) if valid else None
        if isinstance(node, SequenceNode):
            items = [self.json_body(item) for item in node.value]
            if any(item is None for item in items):
                return None
            return JsonArray(tuple(item for item in items if item is not None))
        literal = plain_literal(node)
        if literal is not None:
            return JsonLiteral(literal)
        return self.http_template(node, "json value")

    def timeout(self, node: Node) -> float | None:
        value = self.text(node, "http timeout")
        if value is None:
            return None
        seconds = self.duration(node)
        if seconds is None:
            return None
        if seconds > MAX_TIMEOUT:
            self.problem(node, f"http timeout {value!r} is over the limit of 30s")
            return None
        return seconds

    def saves(
        self, node: Node
    ) -> tuple[tuple[tuple[str, SavePath], ...], tuple[tuple[str, SavePath], ...]] | None:
        found = self.entries(node, SAVE_KEYS, "http save")
        if found is None:
            return None
        scopes: dict[str, tuple[tuple[str, SavePath], ...]] = {}
        valid = True
        for scope in SAVE_KEYS:
            if scope not in found:
                scopes[scope] = ()
                continue
            entries = self.entries(found[scope][1], None, f"http save.{scope}")
            if entries is None:
                valid = False
                continue
            paths: list[tuple[str, SavePath]] = []
            for name, (key_node, value_node) in entries.items():
                if not ID.fullmatch(name):
                    self.problem(key_node, f"name {name!r} may only use letters, digits, '_' and '-'")
                    valid = False
                    continue
                path = self.save_path(value_node)
                if path is None:
                    valid = False
                else:
                    paths.append((name, path))
            scopes[scope] = tuple(paths)
        return (scopes["session"], scopes["user"]) if valid else None

    def save_path(self, node: Node) -> SavePath | None:
        value = self.text(node, "a save path")
        if value is None:
            return None
        try:
            return parse_path(value)
        except ValueError as exc:
            offset = getattr(exc, "offset", 0)
            line, col = locate(self.source, node, offset)
            message = getattr(exc, "message", str(exc))
            self.problem_at(Where(self.source.name, line, col), f"bad save path: {message}")
            return None


def _with_secrets(source: str, _: bool) -> Template:
    return compile_template(source, secrets=True)

"""What an http action asks of the outside world, and what comes back: the engine's side of a call.

The engine renders an :class:`HttpRequest` and stops; the worker makes the call and hands the engine an
:class:`HttpAnswer` when it runs the turn again. Both are plain values: the engine stays a pure function,
and the worker can tell a call it already made (the same request) from a new one.

Secrets: an http action's templates render ``@secret.NAME`` through :class:`SecretValues`, which notes the
values it gave out, so that a request can hide them (``redact``) wherever it is shown: logs, metrics,
failures, ``repr``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import quote

from yarl import URL

from worker.engine.expressions.tokens import SECRET_PREFIX
from worker.engine.json_path import NotJson, read_json
from worker.engine.model import CallApi, JsonArray, JsonBody, JsonLiteral, JsonObject, Stories
from worker.engine.templates import Expr, Template, Values

MAX_CALLS: Final = 10  # http calls one message may make; more fail with "too many calls"
REDACTED: Final = "***"
JSON_TYPE: Final = "application/json"
TEXT_TYPE: Final = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True, eq=True)
class HttpRequest:
    """One call, rendered. ``key`` goes out as the ``Idempotency-Key`` header (``<message id>/h<N>``)."""

    method: str
    url: str  # absolute, percent-encoded
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    timeout: float
    key: str
    host: str  # for metrics and logs: the host written in the story, or "(templated)"
    where: str  # the action in the stories, FILE:LINE:COL
    secret_headers: frozenset[str] = frozenset()  # (lower-case) names of headers that carry a secret
    redact: tuple[str, ...] = field(default=(), repr=False)  # secret values used, to hide when shown
    shown_url: str = ""  # the URL rendered with *** for every secret, for logs

    def hide(self, text: str) -> str:
        """``text`` with every secret value of this request (raw or percent-encoded) replaced by ***."""
        for secret in self.redact:
            text = text.replace(secret, REDACTED)
            encoded = quote(secret, safe="")
            if encoded != secret:
                text = text.replace(encoded, REDACTED)
        return text

    @property
    def shown(self) -> str:
        """``GET https://...`` without secrets, for logs and failures."""
        return f"{self.method} {self.shown_url or self.hide(self.url)}"

    def __repr__(self) -> str:
        return f"HttpRequest({self.shown}, key={self.key!r}, at {self.where})"


class HttpAnswer:
    """The outcome of a call: a status and body, or ``error``, a short reason (``timeout``, ``status 503``).

    The JSON document is read at most once, however often the turn runs again.
    """

    __slots__ = ("_document", "body", "error", "status")

    def __init__(self, status: int, body: bytes = b"", error: str | None = None) -> None:
        self.status = status
        self.body = body
        self.error = error
        self._document: object = _UNREAD

    @classmethod
    def failed(cls, reason: str, status: int = 0) -> HttpAnswer:
        return cls(status, b"", reason)

    @property
    def ok(self) -> bool:
        return self.error is None

    def document(self) -> object:
        """The body as JSON; raises :class:`NotJson`."""
        if self._document is _UNREAD:
            try:
                self._document = read_json(self.body)
            except NotJson as exc:
                self._document = exc
        if isinstance(self._document, NotJson):
            raise self._document
        return self._document

    def __repr__(self) -> str:
        shown = self.error or f"status {self.status}"
        return f"HttpAnswer({shown}, {len(self.body)} bytes)"


_UNREAD = object()


class SecretValues(Mapping[str, str]):
    """The session values plus ``@secret.NAME`` (compiled as a session name under ``SECRET_PREFIX``).

    Counts the secrets read (``reads``) and keeps the values given out (``used``), so a request knows what
    to hide; with ``hidden``, every secret that is set reads as ``***`` (to show a URL in a log).
    """

    __slots__ = ("hidden", "reads", "secrets", "session", "used")

    def __init__(self, session: Mapping[str, str], secrets: Mapping[str, str], hidden: bool = False) -> None:
        self.session = session
        self.secrets = secrets
        self.hidden = hidden
        self.reads = 0
        self.used: set[str] = set()

    def masked(self) -> SecretValues:
        return SecretValues(self.session, self.secrets, hidden=True)

    def __getitem__(self, name: str) -> str:
        if name.startswith(SECRET_PREFIX):
            self.reads += 1
            value = self.secrets.get(name[len(SECRET_PREFIX) :], "")
            if value:
                self.used.add(value)
                if self.hidden:
                    return REDACTED
            return value
        return self.session[name]

    def get(self, name: str, default: object = None) -> str | None:  # type: ignore[override]
        try:
            return self[name]
        except KeyError:
            return default  # type: ignore[return-value]

    def __iter__(self) -> Iterator[str]:
        return iter(self.session)

    def __len__(self) -> int:
        return len(self.session)


def render_url(template: Template, values: Values, user: Values, message: str) -> str | None:
    """The URL with every substituted value percent-encoded; None when it is not an absolute http(s) URL."""
    constant = template.constant
    if constant is not None:
        text = constant
    else:
        parts: list[str] = []
        for part in template.parts:
            if isinstance(part, Expr):
                parts.append(quote(part.value(values, user, message), safe=""))
            else:
                parts.append(part)
        text = "".join(parts)
    try:
        url = URL(text.strip())
    except (ValueError, TypeError):
        return None
    if url.scheme not in ("http", "https") or not url.host:
        return None
    return str(url)


_SECRET = re.compile(r"@secret\.([A-Za-z0-9_-]+)")


def secret_names(template: Template) -> set[str]:
    """The NAMEs of ``@secret.NAME`` the template's expressions read (or quote: a text written as one)."""
    return {name for expr in template.expressions for name in _SECRET.findall(expr.source)}


def secrets_used(stories: Stories) -> set[str]:
    """Every NAME of ``@secret.NAME`` the stories' http actions read (to warn about unset ones at start)."""
    names: set[str] = set()
    for story in stories.stories.values():
        for step in story.steps.values():
            for action in step.actions:
                if isinstance(action, CallApi):
                    templates = [action.url, *(template for _, template in action.headers)]
                    if action.body is not None:
                        templates.append(action.body)
                    if action.json is not None:
                        templates.extend(_json_templates(action.json))
                    for template in templates:
                        names |= secret_names(template)
    return names


def _json_templates(body: JsonBody) -> list[Template]:
    if isinstance(body, Template):
        return [body]
    if isinstance(body, JsonArray):
        return [template for item in body.items for template in _json_templates(item)]
    if isinstance(body, JsonObject):
        return [t for key, item in body.entries for t in (key, *_json_templates(item))]
    return []


def build_request(
    action: CallApi, url: str, scope: SecretValues, user: Values, message: str, key: str
) -> HttpRequest:
    """The request an http action makes now; ``url`` is its URL rendered through ``scope`` just before."""
    shown_url = url
    if scope.reads:  # the URL holds a secret: logs show it with *** in its place
        shown_url = render_url(action.url, scope.masked(), user, message) or ""
    headers: list[tuple[str, str]] = []
    secret_headers: set[str] = set()
    for name, template in action.headers:
        reads = scope.reads
        headers.append((name, header_value(template.render(scope, user, message))))
        if scope.reads != reads:
            secret_headers.add(name.lower())
    body: bytes | None = None
    if action.json is not None:
        out: list[str] = []
        _render_json(action.json, scope, user, message, out)
        body = "".join(out).encode()
        content_type = JSON_TYPE
    elif action.body is not None:
        body = action.body.render(scope, user, message).encode()
        content_type = TEXT_TYPE
    if body is not None and not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", content_type))
    return HttpRequest(
        method=action.method,
        url=url,
        headers=tuple(headers),
        body=body,
        timeout=action.timeout,
        key=key,
        host=action.host or "(templated)",
        where=str(action.where),
        secret_headers=frozenset(secret_headers),
        redact=tuple(sorted(scope.used, key=len, reverse=True)),
        shown_url=shown_url,
    )


def _render_json(body: JsonBody, values: Values, user: Values, message: str, out: list[str]) -> None:
    if isinstance(body, Template):
        out.append(json.dumps(body.render(values, user, message), ensure_ascii=False))
    elif isinstance(body, JsonLiteral):
        out.append(body.text)
    elif isinstance(body, JsonArray):
        out.append("[")
        for n, item in enumerate(body.items):
            if n:
                out.append(",")
            _render_json(item, values, user, message, out)
        out.append("]")
    else:
        out.append("{")
        for n, (name, item) in enumerate(body.entries):
            if n:
                out.append(",")
            out.append(json.dumps(name.render(values, user, message), ensure_ascii=False))
            out.append(":")
            _render_json(item, values, user, message, out)
        out.append("}")


def header_value(text: str) -> str:
    """Safe in an HTTP header: whitespace runs (CR and LF included) become one space; other controls go."""
    cleaned = " ".join(text.split())
    return cleaned if cleaned.isprintable() else "".join(c for c in cleaned if c.isprintable())

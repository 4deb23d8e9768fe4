"""Read the canned API answers of a conversation test (its ``http:`` list), with positions.

```yaml
    http:
      - url: https://api.example.com/orders/42   # exact (as sent: normalised, percent-encoded), or re:REGEX
        method: GET                               # optional: any method when left out
        status: 200                               # optional, default 200; 400 or more makes the call fail
        json: {order: {status: shipped}}          # or body: TEXT, or error: timeout (no status then)
```
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

from yarl import URL

from designer.conversation_tests.model import CannedAnswer, TextMatch
from worker.engine.http_reader import METHODS, plain_literal
from worker.engine.reader import Reader
from worker.engine.yaml_source import MappingNode, Node, SequenceNode, scalar_text

ANSWER_KEYS: Final = ("url", "method", "status", "json", "body", "error")
ERRORS: Final = ("timeout", "network error", "refused address", "too many redirects", "answer too large")


class CannedReader(Reader):
    """Reads a test's ``http:`` list; ``match`` (exact text or ``re:``) comes from the test reader."""

    def match(self, node: Node, what: str) -> TextMatch | None:
        raise NotImplementedError

    def read_canned(self, node: Node) -> tuple[CannedAnswer, ...] | None:
        items = self.items(node, "http")
        if items is None:
            return None
        answers = [self.read_answer(item) for item in items]
        if any(answer is None for answer in answers):
            return None
        return tuple(answer for answer in answers if answer is not None)

    def read_answer(self, node: Node) -> CannedAnswer | None:
        found = self.entries(node, ANSWER_KEYS, "a canned http answer")
        if found is None:
            return None
        if "url" not in found:
            self.problem(node, "a canned http answer needs a 'url'")
            return None
        url = self.match(found["url"][1], "url")
        if url is not None and url.pattern is None:
            try:
                url = TextMatch(str(URL(url.written.strip())))
            except ValueError:
                self.problem(found["url"][1], f"not a URL: {url.written!r}")
                url = None
        method = None
        if "method" in found:
            method = (self.text(found["method"][1], "method") or "").upper()
            if method not in METHODS:
                self.problem(found["method"][1], f"method must be one of {', '.join(METHODS)}")
                return None
        status = self.status(found["status"][1]) if "status" in found else 200
        body = self.answer_body(found)
        error = None
        if "error" in found:
            error = self.text(found["error"][1], "error")
            if error not in ERRORS:
                self.problem(found["error"][1], f"error must be one of: {', '.join(ERRORS)}")
                return None
            others = [key for key in ("status", "json", "body") if key in found]
            if others:
                self.problem(found[others[0]][0], f"an answer with an error has no '{others[0]}'")
                return None
        if url is None or status is None or body is None:
            return None
        return CannedAnswer(url, method, status, body, error, self.where(node))

    def status(self, node: Node) -> int | None:
        value = self.text(node, "status")
        if value is None or not value.isdigit() or not 100 <= int(value) <= 599:
            self.problem(node, "status must be an HTTP status code, 100 to 599")
            return None
        return int(value)

    def answer_body(self, found: Mapping[str, tuple[Node, Node]]) -> bytes | None:
        if "json" in found and "body" in found:
            self.problem(found["body"][0], "a canned answer has 'json' or 'body', not both")
            return None
        if "body" in found:
            text = self.text(found["body"][1], "body")
            return text.encode() if text is not None else None
        if "json" in found:
            document = self.json_text(found["json"][1])
            return document.encode() if document is not None else None
        return b""

    def json_text(self, node: Node) -> str | None:
        """A YAML value as JSON: plain null, true, false and numbers as such, every other scalar as text."""
        if isinstance(node, MappingNode):
            found = self.entries(node, None, "json")
            if found is None:
                return None
            parts = [(_quoted(key), self.json_text(item)) for key, (_, item) in found.items()]
            if any(value is None for _, value in parts):
                return None
            return "{" + ",".join(f"{key}:{value}" for key, value in parts) + "}"
        if isinstance(node, SequenceNode):
            items = [self.json_text(item) for item in node.value]
            if any(item is None for item in items):
                return None
            return "[" + ",".join(item for item in items if item is not None) + "]"
        literal = plain_literal(node)
        if literal is not None:
            return literal
        text = scalar_text(node)
        if text is None:
            self.problem(node, "json must be text, numbers, true, false, null, lists and mappings")
            return None
        return _quoted(text)


def _quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)

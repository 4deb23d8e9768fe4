"""Conversation tests give canned answers to the http calls of the stories, and fail on an unexpected one."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest

from designer.conversation_tests import run_tests
from tests.support.designer import write

STORIES = """\
stories:
  order:
    triggers: [order]
    steps:
      - id: ask
        actions:
          - message: Which order?
        next: look
      - id: look
        actions:
          - http:
              url: "https://api.example.com/orders/{{@message}}?key={{@secret.TOKEN}}"
              save: {session: {Status: $.status, Items: $.items, Code: status}}
              on_error: sorry
          - message: "Order {{@message}}: {{@session.Status}} {{@session.Items}} ({{@session.Code}})"
      - id: sorry
        actions:
          - message: "Sorry ({{@session.http_error}})"
  note:
    triggers: [note]
    steps:
      - id: post
        actions:
          - http: {url: "https://notes.example.com/", method: POST, body: "{{@message}}", on_error: failed}
          - message: noted
      - id: failed
        actions:
          - message: "not noted: {{@session.http_error}}"
"""


@pytest.fixture
def stories(tmp_path: Path) -> Path:
    write(tmp_path / "stories" / "bot.yml", STORIES)
    return tmp_path / "stories"


def run(tmp_path: Path, stories: Path, text: str) -> tuple[int, str]:
    path = write(tmp_path / "tests" / "api.yml", text)
    out = StringIO()
    code = run_tests(path, stories, out=out, secrets={"TOKEN": "t0ps3cret"})
    return code, out.getvalue().replace(f"{path}", "api.yml")


def test_canned_answers_by_url_method_status_json_and_error(tmp_path: Path, stories: Path) -> None:
    code, out = run(
        tmp_path,
        stories,
        """\
        tests:
          - name: a shipped order, a missing one, a slow API, a note
            http:
              - url: https://api.example.com/orders/42?key=t0ps3cret
                json: {status: shipped, items: [1, two, {n: 3.50}], extra: null}
              - url: "re:/orders/404"
                status: 404
              - url: re:/orders/slow
                method: GET
                error: timeout
              - url: https://notes.example.com/
                method: POST
                status: 201
            conversation:
              - user: order
              - bot: Which order?
              - user: "42"
              - bot: 'Order 42: shipped [1,"two",{"n":3.50}] (200)'
              - user: order
              - bot: Which order?
              - user: "404"
              - bot: Sorry (status 404)
              - user: order
              - bot: Which order?
              - user: slow
              - bot: Sorry (timeout)
              - user: note
              - bot: noted
        """,
    )
    assert (code, out.splitlines()[-1][:30]) == (0, "OK: 1 test passed (1 file, 0.0"), out


def test_a_call_no_canned_answer_expects_fails_at_its_user_line(tmp_path: Path, stories: Path) -> None:
    code, out = run(
        tmp_path,
        stories,
        """\
        tests:
          - name: the order API was forgotten
            http:
              - url: https://notes.example.com/
                method: GET
            conversation:
              - user: order
              - bot: Which order?
              - user: "7"
              - bot: Sorry (no canned answer)
          - name: a POST is not a GET
            http:
              - {url: "https://notes.example.com/", method: GET}
            conversation:
              - user: note
              - bot: "not noted: no canned answer"
        """,
    )
    assert code == 1
    assert out.splitlines()[:6] == [
        "api.yml:9: FAIL the order API was forgotten",
        "  expected:   no http call after user '7' (or an 'http:' answer of the test for it)",
        f"  bot called: GET https://api.example.com/orders/7?key=*** (at {stories}/bot.yml:12:15)",
        "api.yml:15: FAIL a POST is not a GET",
        "  expected:   no http call after user 'note' (or an 'http:' answer of the test for it)",
        f"  bot called: POST https://notes.example.com/ (at {stories}/bot.yml:24:19)",
    ]
    assert "t0ps3cret" not in out


def test_canned_answers_that_cannot_be_read_are_positioned(tmp_path: Path, stories: Path) -> None:
    code, out = run(
        tmp_path,
        stories,
        """\
        tests:
          - name: broken answers
            http:
              - method: GET
              - {url: "re:(", status: 200}
              - {url: "https://a.example/", status: 99, json: {a: 1}}
              - {url: "https://a.example/", method: FETCH}
              - {url: "https://a.example/", error: boom}
              - {url: "https://a.example/", error: timeout, status: 503}
              - {url: "https://a.example/", json: {}, body: x}
              - {url: "https://a.example/", headers: {}}
            conversation:
              - user: order
        """,
    )
    assert code == 1
    assert out.splitlines()[:-1] == [
        "api.yml:4:9: a canned http answer needs a 'url'",
        "api.yml:5:19: bad regular expression: missing ), unterminated subpattern",
        "api.yml:6:45: status must be an HTTP status code, 100 to 599",
        "api.yml:7:45: method must be one of GET, POST, PUT, PATCH, DELETE",
        "api.yml:8:44: error must be one of: timeout, network error, refused address, too many redirects, "
        "answer too large",
        "api.yml:9:53: an answer with an error has no 'status'",
        "api.yml:10:47: a canned answer has 'json' or 'body', not both",
        "api.yml:11:37: unknown key 'headers' in a canned http answer (expected one of: url, method, status, "
        "json, body, error)",
    ]

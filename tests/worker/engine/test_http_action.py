"""The http action in the engine: the request it renders, the turn that stops at it, and what it saves."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from gateway.core.schema import Inbound
from gateway.core.store.base import Session
from tests.support.engine import Chat, load
from worker.engine import Engine, Stories
from worker.engine.calls import MAX_CALLS, HttpAnswer


def answer(document: object, status: int = 200) -> HttpAnswer:
    return HttpAnswer(status, json.dumps(document).encode())


def story(
    tmp_path: Path, http: str, after: tuple[str, ...] = ('message: "done {{@session.http_error}}"',)
) -> Stories:
    """A story ``go`` whose step ``call`` runs the http action, then the ``after`` actions; ``sorry`` says
    the error (for ``on_error: sorry``)."""
    actions = "          - http:\n" + textwrap.indent(textwrap.dedent(http).strip("\n") + "\n", " " * 14)
    actions += "".join(f"          - {action}\n" for action in after)
    text = (
        "stories:\n  go:\n    triggers: [go]\n    steps:\n      - id: call\n        actions:\n"
        + actions
        + '      - id: sorry\n        actions:\n          - message: "sorry: {{@session.http_error}}"\n'
    )
    return load(tmp_path, text)


SAVES = """\
url: https://api.example.com/x
save:
  session:
    Whole: $
    Text: $.order.status
    Quoted: '$[''odd key''][''it\\''s'']'
    Double: '$["a"]["b"]'
    Index: $.items[1].name
    Number: $.total
    Exponent: $.big
    Bool: $.paid
    Object: $.order
    List: $.items
    Nothing: $.gone
    Missing: $.nothing.here
    Past: $.items[9]
    IntoText: $.order.status.x
    Code: status
  user:
    Tier: $.customer.tier
    Old: $.customer.none
"""

DOCUMENT = (
    '{"order": {"status": "shipped", "eta": "2 days"}, "odd key": {"it\'s": "é"}, "a": {"b": "B"},'
    ' "items": [{"name": "cup"}, {"name": "mug", "n": 2}], "total": 4.50, "big": 1E3, "paid": true,'
    ' "gone": null, "customer": {"tier": "gold"}}'
)


def test_every_save_path_form(tmp_path: Path) -> None:
    chat = Chat(
        story(tmp_path, SAVES), api=lambda request: HttpAnswer(201, DOCUMENT.encode()), user={"Old": "x"}
    )
    chat.session = Session(values={"Nothing": "was set", "Missing": "was set"})
    assert chat.say("go") == ["done "]
    values = chat.values
    assert values.pop("Whole") == (
        '{"order":{"status":"shipped","eta":"2 days"},"odd key":{"it\'s":"é"},"a":{"b":"B"},'
        '"items":[{"name":"cup"},{"name":"mug","n":2}],"total":4.50,"big":1E3,"paid":true,'
        '"gone":null,"customer":{"tier":"gold"}}'
    )
    assert values == {
        "Text": "shipped",
        "Quoted": "é",
        "Double": "B",
        "Index": "mug",
        "Number": "4.50",  # as written
        "Exponent": "1E3",
        "Bool": "true",
        "Object": '{"status":"shipped","eta":"2 days"}',
        "List": '[{"name":"cup"},{"name":"mug","n":2}]',
        "Code": "201",
    }  # Nothing, Missing, Past and IntoText found nothing: deleted
    assert chat.user == {"Tier": "gold"}
    assert chat.turns[-1].user_changes == {"Tier": "gold", "Old": None}


def test_a_turn_stops_at_a_call_and_the_same_run_goes_on_with_its_answer(tmp_path: Path) -> None:
    stories = story(
        tmp_path,
        """\
        url: "https://api.example.com/a/{{@message}}"
        save: {session: {A: $.v}}
        """,
        after=(
            'message: "first {{@session.A}}"',
            'http: {url: "https://api.example.com/b/{{@session.A}}", save: {session: {B: $.v}}}',
            'message: "second {{@session.B}}"',
        ),
    )
    engine = Engine(stories)
    message = Inbound(id="tg:7", channel="tg", chat="c", user="u", text="go")
    first = engine.handle(None, {}, message, 1.0)
    assert first.call is not None and not first.replies and not first.user_changes
    assert (first.call.key, first.call.url) == ("tg:7/h0", "https://api.example.com/a/go")
    again = engine.handle(None, {}, message, 1.0)
    assert again.call == first.call  # deterministic: the worker recognises a call it made already
    second = engine.handle(None, {}, message, 1.0, [answer({"v": "x y"})])
    assert second.call is not None and second.call.key == "tg:7/h1"
    assert second.call.url == "https://api.example.com/b/x%20y"
    done = engine.handle(None, {}, message, 1.0, [answer({"v": "x y"}), answer({"v": "z"})])
    assert done.call is None
    assert [reply.text for reply in done.replies] == ["first x y", "second z"]
    assert [reply.id for reply in done.replies] == ["tg:7/r0", "tg:7/r1"]


def test_values_in_the_url_are_percent_encoded_and_cannot_change_its_shape(tmp_path: Path) -> None:
    stories = story(tmp_path, 'url: "https://api.example.com/o/{{@user.Id}}?q={{@user.Id}}&lang=fr"')
    chat = Chat(stories, user={"Id": "a/../b?c=d&e#f é"}, api=lambda request: answer({}))
    chat.say("go")
    (request,) = chat.requests
    # "/", "?", "#" stay encoded wherever they are; "=" and "&" too where they would split the query (in the
    # path, where they mean nothing, the URL's normal form writes them plainly)
    assert request.url == (
        "https://api.example.com/o/a%2F..%2Fb%3Fc=d&e%23f%20%C3%A9?q=a/../b?c%3Dd%26e%23f%20%C3%A9&lang=fr"
    )
    assert request.host == "api.example.com"


def test_json_and_text_bodies_and_headers(tmp_path: Path) -> None:
    stories = load(
        tmp_path,
        """\
        stories:
          go:
            triggers: [go]
            steps:
              - id: call
                actions:
                  - http:
                      url: https://api.example.com/orders
                      method: POST
                      headers: {X-Note: "{{@message}}\\r\\nX-Injected: 1", Accept: application/json}
                      json:
                        email: "{{@user.Email}}"
                        "{{@message}}": key from a template
                        count: 3
                        price: -1.25e2
                        gift: true
                        wrap: False
                        note: null
                        quoted: "42"
                        list: [1, "two", {three: 3}]
                  - http:
                      url: https://api.example.com/notes
                      method: PATCH
                      body: "Note from {{@user.Email}}: {{@message}}"
                  - http:
                      url: https://api.example.com/form
                      method: PUT
                      headers: {content-type: application/x-www-form-urlencoded}
                      body: "a=1&b=2"
        """,
    )
    chat = Chat(stories, user={"Email": 'ada"@example.com'}, api=lambda request: answer({}))
    chat.say("go")
    posted, patched, put = chat.requests
    assert posted.method == "POST"
    assert posted.body is not None
    assert json.loads(posted.body) == {
        "email": 'ada"@example.com',
        "go": "key from a template",
        "count": 3,
        "price": -125.0,
        "gift": True,
        "wrap": False,
        "note": None,
        "quoted": "42",
        "list": [1, "two", {"three": 3}],
    }
    assert dict(posted.headers) == {
        "X-Note": "go X-Injected: 1",
        "Accept": "application/json",
        "Content-Type": "application/json",
    }
    assert (patched.method, patched.body) == ("PATCH", b'Note from ada"@example.com: go')
    assert dict(patched.headers) == {"Content-Type": "text/plain; charset=utf-8"}
    assert dict(put.headers) == {"content-type": "application/x-www-form-urlencoded"}
    assert [request.key for request in chat.requests] == ["webchat:0/h0", "webchat:0/h1", "webchat:0/h2"]


def test_a_failed_call_sets_http_error_and_enters_on_error_like_a_goto(tmp_path: Path) -> None:
    stories = story(tmp_path, "url: https://api.example.com/x\nsave: {session: {S: $.s}}\non_error: sorry")
    chat = Chat(stories, api=lambda request: HttpAnswer.failed("status 503", 503))
    assert chat.say("go") == ["sorry: status 503"]
    assert chat.values == {"http_error": "status 503"}
    chat.api = lambda request: answer({"s": "ok"})
    assert chat.say("go") == ["done "]  # a call that succeeds clears the error
    assert chat.values == {"S": "ok"}


def test_without_on_error_the_step_goes_on_and_nothing_is_saved(tmp_path: Path) -> None:
    stories = story(tmp_path, "url: https://api.example.com/x\nsave: {session: {S: $.s}, user: {U: $.u}}")
    chat = Chat(stories, api=lambda request: HttpAnswer.failed("timeout"), user={"U": "kept"})
    assert chat.say("go") == ["done timeout"]
    assert chat.user == {"U": "kept"}
    assert chat.turns[-1].user_changes == {}


@pytest.mark.parametrize("body", [b"<html>oops</html>", b"", b"\xff\xfe", b"[" * 100_000])
def test_an_answer_that_is_not_json_fails_only_when_save_needs_json(tmp_path: Path, body: bytes) -> None:
    needs = Chat(
        story(tmp_path, "url: https://x.example/\nsave: {session: {S: $.s}}"),
        api=lambda r: HttpAnswer(200, body),
    )
    assert needs.say("go") == ["done not JSON"]
    status_only = Chat(
        story(tmp_path / "2", "url: https://x.example/\nsave: {session: {Code: status}}"),
        api=lambda r: HttpAnswer(204, body),
    )
    assert status_only.say("go") == ["done "]
    assert status_only.values == {"Code": "204"}


def test_a_url_that_renders_without_a_host_fails_without_a_call(tmp_path: Path) -> None:
    chat = Chat(story(tmp_path, 'url: "https://{{@session.Host}}/x"\non_error: sorry'))
    assert chat.say("go") == ["sorry: bad URL"]
    assert chat.requests == []


def test_a_message_makes_at_most_ten_calls(tmp_path: Path) -> None:
    stories = load(
        tmp_path,
        """\
        stories:
          go:
            triggers: [go]
            steps:
              - id: call
                actions:
                  - http: {url: "https://api.example.com/x", on_error: call}
                  - message: never
        """,
    )
    chat = Chat(stories, api=lambda request: HttpAnswer.failed("network error"))
    assert chat.say("go") == []
    assert len(chat.requests) == MAX_CALLS
    assert chat.values == {"http_error": "too many calls"}
    assert any("64 goto/jump hops" in warning for warning in chat.turns[-1].warnings)


def test_secrets_reach_the_request_and_nothing_else(tmp_path: Path) -> None:
    stories = story(
        tmp_path,
        """\
        url: "https://api.example.com/x?key={{@secret.API_KEY}}"
        method: POST
        headers: {Authorization: "Bearer {{@secret.TOKEN}}"}
        json: {token: "{{@secret.TOKEN}}", missing: "{{@secret.UNSET || 'none'}}"}
        save: {session: {Echo: $.echo, Whole: $}}
        """,
        after=('message: "echo {{@session.Echo}} {{@session.Whole}}"',),
    )
    secrets = {"TOKEN": "t0k/en+=", "API_KEY": "k3y"}
    chat = Chat(
        stories,
        secrets=secrets,
        api=lambda request: answer({"echo": f"you sent {dict(request.headers)['Authorization']}"}),
    )
    [reply] = chat.say("go")
    (request,) = chat.requests
    assert request.url == "https://api.example.com/x?key=k3y"
    assert dict(request.headers)["Authorization"] == "Bearer t0k/en+="
    assert request.body is not None
    assert json.loads(request.body) == {"token": "t0k/en+=", "missing": "none"}
    assert request.secret_headers == frozenset({"authorization"})
    assert reply == 'echo you sent Bearer *** {"echo":"you sent Bearer ***"}'
    for shown in (repr(request), request.shown, str(chat.turns[-1]), repr(chat.values)):
        assert "t0k" not in shown and "k3y" not in shown

"""`gateway check` on http actions: every field checked, each problem at its line and column."""

from __future__ import annotations

from pathlib import Path

from tests.support.engine import load, problems
from worker.engine.calls import secrets_used
from worker.engine.links import step_links
from worker.engine.model import CallApi
from worker.engine.reachability import unreachable_warnings


def one(tmp_path: Path, text: str) -> list[str]:
    return problems(tmp_path, {"bot.yml": text})


def test_every_bad_field_is_reported_where_it_is(tmp_path: Path) -> None:
    found = one(
        tmp_path,
        """\
        stories:
          s:
            steps:
              - id: a
                actions:
                  - http:
                      url: "ftp://example.com/{{@message}}"
                      method: FETCH
                      headers: {"Bad Name": x, Idempotency-Key: k, X-Token: "{{@sesion.T}}"}
                      timeout: 31s
                      save:
                        session: {"bad name": $.a, Ok: "$.a[x]", Also: order.id}
                        users: {T: $.t}
                      on_error: nowhere
                      retries: 3
                  - http:
                      method: post
                      json: {a: 1}
                      body: text
                  - http:
                      url: "{{@session.Base}}/orders"
                      json: {a: "{{@secret.T}}"}
                  - http: {url: "https://x.example/", timeout: soon}
        """,
    )
    assert found == [
        "stories/bot.yml:7:20: http url must start with http:// or https:// (written out: values are "
        "percent-encoded)",
        "stories/bot.yml:8:23: http method must be one of GET, POST, PUT, PATCH, DELETE, not 'FETCH'",
        "stories/bot.yml:9:25: header name 'Bad Name': use letters, digits and !#$%&'*+.^_`|~-",
        "stories/bot.yml:9:40: header 'Idempotency-Key' is set by the gateway; leave it out",
        "stories/bot.yml:9:72: bad template in header X-Token: unknown variable @sesion (use @session.NAME, "
        "@user.NAME or @message)",
        "stories/bot.yml:10:24: http timeout '31s' is over the limit of 30s",
        "stories/bot.yml:12:27: name 'bad name' may only use letters, digits, '_' and '-'",
        "stories/bot.yml:12:53: bad save path: expected ['key'] or [index] (an index is 0 or more)",
        "stories/bot.yml:12:64: bad save path: a save path starts with $ (such as $.order.status), or is the "
        "word status",
        "stories/bot.yml:13:17: unknown key 'users' in http save; did you mean 'user'?",
        "stories/bot.yml:14:25: story 's' has no step 'nowhere'",
        "stories/bot.yml:15:15: unknown key 'retries' in http (expected one of: url, method, headers, json, "
        "body, timeout, save, on_error)",
        "stories/bot.yml:17:15: http needs a 'url'",
        "stories/bot.yml:19:15: http has both 'json' and 'body'; keep one",
        "stories/bot.yml:21:20: http url must start with http:// or https:// (written out: values are "
        "percent-encoded)",
        "stories/bot.yml:22:15: a GET request sends no 'json'; add method: POST (or PUT, PATCH)",
        "stories/bot.yml:23:56: bad duration 'soon': use a number with s, m, h or d, such as 30m",
    ]


def test_a_secret_anywhere_but_an_http_request_is_refused_at_its_character(tmp_path: Path) -> None:
    found = one(
        tmp_path,
        """\
        stories:
          s:
            triggers: [go]
            steps:
              - id: a
                actions:
                  - message: "Your token is {{@secret.TOKEN}}"
                  - set_session: {T: "<<@user.X || @secret.TOKEN>>"}
                  - email: {to: a@example.com, subject: "{{@secret.T}}", body: b}
                  - message: hi
                    if: "@secret.TOKEN"
                  - http:
                      url: "https://api.example.com/{{@secret.KEY}}"
                      save: {session: {S: "{{@secret.T}}"}}
        """,
    )
    only = "@secret.NAME is allowed only in the url, headers, json and body of an http action"
    assert found == [
        f"stories/bot.yml:7:39: bad template in message: {only}",
        f"stories/bot.yml:8:44: bad template in set_session.T: {only}",
        f"stories/bot.yml:9:52: bad template in email subject: {only}",
        f"stories/bot.yml:11:18: bad condition in if: {only}",
        "stories/bot.yml:13:47: bad template in http url: @secret.KEY is reserved: GATEWAY_SECRET_KEY signs "
        "the gateway's tokens",
        "stories/bot.yml:14:36: bad save path: a save path starts with $ (such as $.order.status), or is the "
        "word status",
    ]


def test_a_complete_action_loads_with_its_defaults(tmp_path: Path) -> None:
    stories = load(
        tmp_path,
        """\
        stories:
          s:
            triggers: [go]
            steps:
              - id: a
                actions:
                  - http:
                      url: https://api.example.com/orders
                  - http:
                      url: "https://shop-{{@session.Shop}}.example.com/x"
                      method: put
                      headers: {Authorization: "Bearer {{@secret.TOKEN}}"}
                      body: "{{@message}}"
                      timeout: 500ms
                      save: {user: {Tier: "$['customer']['tier']", Code: status}}
                      on_error: b
              - id: b
                actions:
                  - message: sorry
        """,
    )
    first, second = stories.stories["s"].steps["a"].actions
    assert isinstance(first, CallApi) and isinstance(second, CallApi)
    assert (first.method, first.timeout, first.host, first.on_error) == ("GET", 5.0, "api.example.com", None)
    assert (second.method, second.timeout, second.host, second.on_error) == ("PUT", 0.5, None, "b")
    assert [(name, path.steps) for name, path in second.save_user] == [
        ("Tier", ("customer", "tier")),
        ("Code", None),
    ]


def test_on_error_is_a_link_that_may_be_taken_and_never_a_loop_by_itself(tmp_path: Path) -> None:
    stories = load(
        tmp_path,
        """\
        stories:
          s:
            triggers: [go]
            steps:
              - id: a
                actions:
                  - http: {url: "https://api.example.com/", on_error: retry}
              - id: retry
                actions:
                  - http: {url: "https://api.example.com/", on_error: retry}
        """,
    )
    story = stories.stories["s"]
    [link] = step_links(stories, story, story.steps["a"])
    assert (link.step, link.label, link.conditional) == ("retry", "on_error", True)
    assert unreachable_warnings(stories) == []  # `retry` is reached; retrying itself is no endless loop


def test_the_secrets_the_stories_read_are_listed(tmp_path: Path) -> None:
    stories = load(
        tmp_path,
        """\
        stories:
          s:
            triggers: [go]
            steps:
              - id: a
                actions:
                  - http:
                      url: "https://api.example.com/?k={{@secret.URL_KEY}}"
                      method: POST
                      headers: {Authorization: "Bearer {{@secret.TOKEN}}", X-Quoted: "{{'@secret.NOT'}}"}
                      json: {list: [{"{{@secret.IN_KEY}}": "{{@user.X || @secret.DEEP}}"}]}
                  - http: {url: "https://api.example.com/", method: PUT, body: "{{@secret.BODY}}"}
        """,
    )
    assert secrets_used(stories) == {"URL_KEY", "TOKEN", "IN_KEY", "DEEP", "BODY"}

"""Settings: defaults, parsing, and one clear line naming the variable for each malformed value."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.core.durations import parse_duration
from gateway.core.errors import SettingsError
from gateway.core.settings import Settings


def settings(**env: str) -> Settings:
    return Settings.from_env(env, dotenv=None)


def test_defaults_are_the_embedded_mode() -> None:
    s = settings()
    assert s.embedded and s.amqp_url is None and s.redis_url is None and s.smtp is None
    assert (s.host, s.port, s.public_url) == ("127.0.0.1", 8080, "http://127.0.0.1:8080")
    assert s.outbox == Path("var/outbox") and s.mail_from == "gateway@localhost" and s.webchat
    assert not (s.telegram_enabled or s.slack_enabled or s.sms_enabled)


def test_public_url_follows_host_and_port() -> None:
    assert settings(GATEWAY_HOST="0.0.0.0", GATEWAY_PORT="9000").public_url == "http://0.0.0.0:9000"
    assert settings(GATEWAY_PUBLIC_URL="https://bot.example.com/").public_url == "https://bot.example.com"


def test_smtp_url_forms() -> None:
    plain = settings(GATEWAY_SMTP_URL="smtp://mail.local:2525").smtp
    assert plain and (plain.host, plain.port, plain.implicit_tls, plain.starttls) == (
        "mail.local",
        2525,
        False,
        False,
    )
    tls = settings(GATEWAY_SMTP_URL="smtps://u%40x:p%3Aw@mail.local").smtp
    assert tls and tls.implicit_tls and tls.port == 465 and (tls.username, tls.password) == ("u@x", "p:w")
    start = settings(GATEWAY_SMTP_URL="smtp://mail.local:587?starttls=true&timeout=5s").smtp
    assert start and start.starttls and start.timeout == 5.0


def test_the_broker_may_be_the_nodes_of_a_cluster() -> None:
    s = settings(GATEWAY_AMQP_URL=" amqp://u:p@a:5672/v , amqp://u:p@b:5673/v ", GATEWAY_REDIS_CLUSTER="true")
    assert s.amqp_url == "amqp://u:p@a:5672/v,amqp://u:p@b:5673/v" and s.redis_cluster


def test_channels_switch_on_with_their_settings() -> None:
    s = settings(
        TELEGRAM_BOT_TOKEN="1:x",
        SLACK_BOT_TOKEN="xoxb",
        SLACK_SIGNING_SECRET="s",
        TWILIO_ACCOUNT_SID="AC1",
        TWILIO_AUTH_TOKEN="t",
        TWILIO_FROM_NUMBER="+15550001111",
    )
    assert s.telegram_enabled and s.slack_enabled and s.sms_enabled
    assert not settings(SLACK_BOT_TOKEN="xoxb").slack_enabled


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("GATEWAY_AMQP_URL", "http://x", "scheme"),
        ("GATEWAY_AMQP_URL", "amqp://host:99999/", "not a valid URL"),
        ("GATEWAY_AMQP_URL", "amqp://a:5672/,http://b/", "scheme"),
        ("GATEWAY_AMQP_URL", "amqp://a:5672/,,amqp://b/", "empty URL"),
        ("GATEWAY_REDIS_CLUSTER", "sometimes", "not a boolean"),
        ("GATEWAY_REDIS_URL", "redis://", "no host"),
        ("GATEWAY_SMTP_URL", "smtps://h?starttls=true", "already uses TLS"),
        ("GATEWAY_PORT", "eighty", "not an integer"),
        ("GATEWAY_PORT", "70000", "out of range"),
        ("GATEWAY_STORIES", "/no/such/folder", "does not exist"),
        ("GATEWAY_WEBCHAT", "maybe", "not a boolean"),
        ("GATEWAY_PUBLIC_URL", "ftp://x", "scheme"),
        ("GATEWAY_PARTITIONS", "0", "out of range"),
        ("GATEWAY_DELIVERY_CONCURRENCY", "0", "out of range"),
        ("GATEWAY_QUEUE_TYPE", "stream", "must be one of"),
        ("GATEWAY_PROCESSED_TTL", "soon", "not a duration"),
        ("TELEGRAM_MODE", "carrier-pigeon", "must be one of"),
        ("GATEWAY_REDIS_PREFIX", "a b", "letters"),
        ("GATEWAY_ADMIN_TOKEN", "just-a-token-no-name", "NAME:TOKEN"),
        ("GATEWAY_ADMIN_TOKEN", "ops:short", "16+ characters"),
        ("GATEWAY_ADMIN_TOKEN", "ops:0123456789abcdef,ops:fedcba9876543210", "twice"),
        ("GATEWAY_ADMIN_TOKEN", "a:0123456789abcdef,b:0123456789abcdef", "shares its token"),
        ("GATEWAY_USER_RETENTION", "forever", "not a duration"),
        ("GATEWAY_BROADCAST_RATE", "fast", "not a number"),
        ("GATEWAY_BROADCAST_RATE", "0", "out of range"),
    ],
)
def test_malformed_setting_names_the_variable(name: str, value: str, why: str) -> None:
    with pytest.raises(SettingsError) as info:
        settings(**{name: value})
    assert str(info.value).startswith(f"{name}: ") and why in str(info.value)


def test_dotenv_is_read_and_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("GATEWAY_PORT=9100\nGATEWAY_MAIL_FROM=bot@example.com\n")
    s = Settings.from_env({"GATEWAY_PORT": "9200"}, dotenv=dotenv)
    assert s.port == 9200 and s.mail_from == "bot@example.com"


def test_durations() -> None:
    assert [parse_duration(t) for t in ("90", "90s", "30m", "2h", "1d", "250ms")] == [
        90,
        90,
        1800,
        7200,
        86400,
        0.25,
    ]
    with pytest.raises(ValueError):
        parse_duration("3 weeks")


def test_admin_tokens_retention_and_broadcast_pace() -> None:
    s = settings(
        GATEWAY_ADMIN_TOKEN=" ops:0123456789abcdef , ci-bot:ZYXWVUTSRQPONMLK-1",
        GATEWAY_USER_RETENTION="400d",
        GATEWAY_BROADCAST_RATE="12.5/s",
    )
    assert [(t.name, t.token) for t in s.admin_tokens] == [
        ("ops", "0123456789abcdef"),
        ("ci-bot", "ZYXWVUTSRQPONMLK-1"),
    ]
    assert "0123456789abcdef" not in repr(s), "a token never reaches a log through the settings"
    assert (s.user_retention, s.broadcast_rate, s.broadcast_lease) == (400 * 86400, 12.5, 30.0)
    off = settings()
    assert (off.admin_tokens, off.user_retention, off.broadcast_rate) == ((), None, None)


def test_http_action_settings() -> None:
    s = settings(
        GATEWAY_HTTP_ALLOW=" localhost, API.internal. ,10.1.2.3, 10.0.0.0/8 ,fd00::/8,, ",
        GATEWAY_HTTP_CONCURRENCY="7",
        GATEWAY_SECRET_ORDERS_TOKEN="t-0ken-value",
        GATEWAY_SECRET_KEY="the-signing-key",
    )
    assert s.http_allow == ("localhost", "api.internal", "10.1.2.3/32", "10.0.0.0/8", "fd00::/8")
    assert s.http_concurrency == 7
    assert s.secrets == {"ORDERS_TOKEN": "t-0ken-value"}  # GATEWAY_SECRET_KEY is the gateway's own
    assert "t-0ken-value" not in repr(s)
    assert (settings().http_allow, settings().http_concurrency, settings().secrets) == ((), 100, {})


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("GATEWAY_HTTP_ALLOW", "localhost, http://api.example.com", "not a host name or a CIDR range"),
        ("GATEWAY_HTTP_ALLOW", "10.0.0.0/33", "not a host name or a CIDR range: '10.0.0.0/33'"),
        ("GATEWAY_HTTP_ALLOW", "two words", "not a host name or a CIDR range: 'two words'"),
        ("GATEWAY_HTTP_CONCURRENCY", "0", "0 is out of range 1..10000"),
    ],
)
def test_bad_http_settings_name_the_variable(name: str, value: str, says: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name}: ") as raised:
        settings(**{name: value})
    assert says in str(raised.value)

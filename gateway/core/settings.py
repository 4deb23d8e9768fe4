"""Settings: one typed, immutable object read once at start from the environment and ``.env``.

Every malformed value raises :class:`SettingsError` naming the variable, which the CLI prints as one
line before exiting with status 2 — never a traceback.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from gateway.core.durations import parse_duration
from gateway.core.errors import SettingsError


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool
    starttls: bool
    timeout: float


@dataclass(frozen=True, slots=True)
class AdminToken:
    """One bearer token of the admin API and the name it is known by in the audit log."""

    name: str
    token: str = field(repr=False)


MIN_ADMIN_TOKEN = 16  # characters


def default_instance_id() -> str:
    """This process's name when ``GATEWAY_INSTANCE_ID`` is not set: host name and pid."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class Settings:
    amqp_url: str | None = None
    redis_url: str | None = None
    redis_cluster: bool = False  # GATEWAY_REDIS_URL is one node of a Redis Cluster
    smtp: SmtpSettings | None = None
    outbox: Path = Path("var/outbox")
    mail_from: str = "gateway@localhost"
    stories: Path = Path("config/stories")
    emails: Path | None = None  # None: the `emails` folder beside the stories folder
    host: str = "127.0.0.1"
    port: int = 8080
    webchat: bool = True
    public_url: str = "http://127.0.0.1:8080"

    telegram_bot_token: str | None = None
    telegram_webhook_secret: str | None = None
    telegram_api_url: str = "https://api.telegram.org"
    telegram_mode: str = "webhook"
    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_api_url: str = "https://slack.com/api/"
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from_number: str | None = None
    twilio_api_url: str = "https://api.twilio.com"

    # Extensions (documented in the README).
    partitions: int = 16
    queue_type: str = "classic"
    queue_prefix: str = "gw"
    redis_prefix: str = "gw"
    max_attempts: int = 5
    processed_ttl: float = 86400.0
    dedup_ttl: float = 86400.0
    worker_concurrency: int = 64
    delivery_concurrency: int = 256
    max_recipients: int = 10
    log_level: str = "INFO"
    connect_timeout: float = 30.0
    heartbeat_file: Path | None = None
    metrics_port: int | None = None  # worker and mailer: serve /healthz, /readyz and /metrics on it
    rate_limits: bool = True
    watch_stories: bool | None = None  # None: watch in `gateway run`, SIGHUP only elsewhere
    timeline: Path | None = None  # benchmarks: a folder for the stage times of messages (core/timeline.py)
    instance_id: str = field(default_factory=lambda: default_instance_id())
    # The admin API and the user's data (OPERATIONS.md), and their extensions.
    admin_tokens: tuple[AdminToken, ...] = ()  # none: the admin API is off
    user_retention: float | None = None  # seconds after a user's last message; None: kept
    broadcast_rate: float | None = None  # starts a second; None: the channel's own pace
    broadcast_lease: float = 30.0  # how long a broadcast whose runner died waits for another
    # The stories' http action: hosts (names, CIDR ranges) allowed although private, calls in flight per
    # worker, and the values of @secret.NAME (GATEWAY_SECRET_NAME; never shown, never compared).
    http_allow: tuple[str, ...] = ()
    http_concurrency: int = 100
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    # Support desks (STORIES.md, "Handing over to a person"; OPERATIONS.md, "gateway inbox").
    secret_key: str = field(default="", repr=False, compare=False)  # GATEWAY_SECRET_KEY: signs desk tokens
    inbox_address: str | None = None  # the desk's reply address; None: no email desk
    inbox_host: str = "127.0.0.1"
    inbox_port: int = 2525
    imap_url: str | None = None  # read staff replies from this mailbox instead of receiving them by SMTP
    staff: tuple[
        str, ...
    ] = ()  # addresses and "@domain"s whose replies are accepted; none: every one refused

    @property
    def emails_dir(self) -> Path:
        """Where email templates (`body_file`, `html_file`) are read from."""
        return self.emails if self.emails is not None else self.stories.parent / "emails"

    @property
    def telegram_enabled(self) -> bool:
        return bool(self.telegram_bot_token)

    @property
    def slack_enabled(self) -> bool:
        return bool(self.slack_bot_token and self.slack_signing_secret)

    @property
    def sms_enabled(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token and self.twilio_from_number)

    @property
    def embedded(self) -> bool:
        """True when neither a broker nor a store is configured (the zero-setup mode)."""
        return self.amqp_url is None and self.redis_url is None

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        dotenv: Path | None = Path(".env"),
        *,
        require_stories: bool = True,
    ) -> Settings:
        """Read the settings; the process environment wins over ``.env``.

        ``require_stories=False`` for commands that do not read ``GATEWAY_STORIES`` (a role without stories,
        or `check PATH`), so they work outside a project folder.
        """
        values: dict[str, str] = {}
        if dotenv is not None and dotenv.is_file():
            from dotenv import dotenv_values

            values.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
        values.update(os.environ if environ is None else environ)
        return _Reader(values, require_stories).settings()


SECRET_PREFIX = "GATEWAY_SECRET_"
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")


class _Reader:
    def __init__(self, env: Mapping[str, str], require_stories: bool = True) -> None:
        self.env = env
        self.require_stories = require_stories

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def fail(self, name: str, why: str) -> SettingsError:
        return SettingsError(f"{name}: {why}")

    def text(self, name: str, default: str) -> str:
        return self.raw(name) or default

    def url(self, name: str, schemes: tuple[str, ...]) -> str | None:
        value = self.raw(name)
        if value is None:
            return None
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise self.fail(name, f"not a valid URL ({exc})") from None
        if parts.scheme not in schemes:
            raise self.fail(name, f"URL scheme must be one of {', '.join(schemes)}, got {value!r}")
        if not parts.hostname:
            raise self.fail(name, f"URL has no host: {value!r}")
        return value

    def urls(self, name: str, schemes: tuple[str, ...]) -> str | None:
        """One URL, or several separated by commas (the nodes of a cluster), each checked like :meth:`url`."""
        value = self.raw(name)
        if value is None:
            return None
        nodes = [node.strip() for node in value.split(",")]
        if not all(nodes):
            raise self.fail(name, f"an empty URL in the list: {value!r}")
        for node in nodes:
            _Reader({name: node}, self.require_stories).url(name, schemes)
        return ",".join(nodes)

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise self.fail(name, f"not an integer: {value!r}") from None
        if not low <= number <= high:
            raise self.fail(name, f"{number} is out of range {low}..{high}")
        return number

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise self.fail(name, f"not a boolean: {value!r} (use true or false)")

    def duration(self, name: str, default: float) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise self.fail(name, str(exc)) from None
        if seconds <= 0:
            raise self.fail(name, "must be positive")
        return seconds

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = (self.raw(name) or default).lower()
        if value not in choices:
            raise self.fail(name, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def http_allow(self) -> tuple[str, ...]:
        """``GATEWAY_HTTP_ALLOW``: host names and CIDR ranges (or single addresses), comma-separated."""
        name = "GATEWAY_HTTP_ALLOW"
        entries = []
        for raw in (self.raw(name) or "").split(","):
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            try:
                entries.append(str(ipaddress.ip_network(entry, strict=False)))
                continue
            except ValueError:
                pass
            if "/" in entry or ":" in entry or not _HOST_NAME.fullmatch(entry):
                raise self.fail(name, f"not a host name or a CIDR range: {raw.strip()!r}")
            entries.append(entry)
        return tuple(entries)

    def secrets(self) -> dict[str, str]:
        """``GATEWAY_SECRET_<NAME>`` by NAME (``@secret.NAME``); GATEWAY_SECRET_KEY is the gateway's own."""
        found = {}
        for name, value in self.env.items():
            if name.startswith(SECRET_PREFIX) and name not in (SECRET_PREFIX, "GATEWAY_SECRET_KEY"):
                found[name[len(SECRET_PREFIX) :]] = value
        return found

    def folder(self, name: str, default: str, must_exist: bool) -> Path:
        path = Path(self.raw(name) or default)
        if must_exist and not path.is_dir():
            raise self.fail(name, f"folder does not exist: {path}")
        return path

    def admin_tokens(self) -> tuple[AdminToken, ...]:
        name = "GATEWAY_ADMIN_TOKEN"
        value = self.raw(name)
        if value is None:
            return ()
        tokens: list[AdminToken] = []
        for position, pair in enumerate(value.split(","), start=1):
            who, colon, token = pair.strip().partition(":")
            if not colon or not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", who):
                raise self.fail(name, f"pair {position} is not NAME:TOKEN (a name of letters, digits, _.@-)")
            if len(token) < MIN_ADMIN_TOKEN or not token.isprintable() or " " in token:
                raise self.fail(name, f"the token of {who!r}: {MIN_ADMIN_TOKEN}+ characters, no spaces")
            if any(t.name == who for t in tokens) or any(t.token == token for t in tokens):
                raise self.fail(name, f"{who!r} appears twice, or shares its token with another name")
            tokens.append(AdminToken(who, token))
        return tuple(tokens)

    def rate(self, name: str) -> float | None:
        value = self.raw(name)
        if value is None:
            return None
        try:
            number = float(value.removesuffix("/s"))
        except ValueError:
            raise self.fail(name, f"not a number per second: {value!r}") from None
        if not 0 < number <= 1_000_000:
            raise self.fail(name, f"{value} is out of range (more than 0, at most 1000000 a second)")
        return number

    def smtp(self) -> SmtpSettings | None:
        name = "GATEWAY_SMTP_URL"
        value = self.url(name, ("smtp", "smtps"))
        if value is None:
            return None
        parts = urlsplit(value)
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        starttls = query.get("starttls", "false").lower() in ("1", "true", "yes")
        implicit = parts.scheme == "smtps"
        if starttls and implicit:
            raise self.fail(name, "smtps:// already uses TLS; drop ?starttls=true")
        try:
            timeout = parse_duration(query.get("timeout", "30"))
        except ValueError as exc:
            raise self.fail(name, str(exc)) from None
        from urllib.parse import unquote

        return SmtpSettings(
            host=parts.hostname or "localhost",
            port=parts.port or (465 if implicit else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            implicit_tls=implicit,
            starttls=starttls,
            timeout=timeout,
        )

    def settings(self) -> Settings:
        d = DEFAULTS  # every default is written once, on the dataclass
        host = self.text("GATEWAY_HOST", d.host)
        port = self.integer("GATEWAY_PORT", d.port, 0, 65535)
        public = self.url("GATEWAY_PUBLIC_URL", ("http", "https")) or f"http://{host}:{port}"
        http = ("http", "https")
        queue_prefix = self.text("GATEWAY_QUEUE_PREFIX", d.queue_prefix)
        redis_prefix = self.text("GATEWAY_REDIS_PREFIX", d.redis_prefix)
        for name, prefix in (("GATEWAY_QUEUE_PREFIX", queue_prefix), ("GATEWAY_REDIS_PREFIX", redis_prefix)):
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", prefix):
                raise self.fail(name, f"use letters, digits, '_', '-' and '.', got {prefix!r}")
        levels = ("debug", "info", "warning", "error")
        return Settings(
            amqp_url=self.urls("GATEWAY_AMQP_URL", ("amqp", "amqps")),
            redis_cluster=self.boolean("GATEWAY_REDIS_CLUSTER", d.redis_cluster),
            redis_url=self.url("GATEWAY_REDIS_URL", ("redis", "rediss", "unix")),
            smtp=self.smtp(),
            outbox=self.folder("GATEWAY_OUTBOX", str(d.outbox), must_exist=False),
            mail_from=self.text("GATEWAY_MAIL_FROM", d.mail_from),
            stories=self.folder("GATEWAY_STORIES", str(d.stories), must_exist=self.require_stories),
            emails=Path(emails) if (emails := self.raw("GATEWAY_EMAILS")) else None,
            host=host,
            port=port,
            webchat=self.boolean("GATEWAY_WEBCHAT", d.webchat),
            public_url=public.rstrip("/"),
            telegram_bot_token=self.raw("TELEGRAM_BOT_TOKEN"),
            telegram_webhook_secret=self.raw("TELEGRAM_WEBHOOK_SECRET"),
            telegram_api_url=self.url("TELEGRAM_API_URL", http) or d.telegram_api_url,
            telegram_mode=self.choice("TELEGRAM_MODE", d.telegram_mode, ("webhook", "polling")),
            slack_bot_token=self.raw("SLACK_BOT_TOKEN"),
            slack_signing_secret=self.raw("SLACK_SIGNING_SECRET"),
            slack_api_url=self.url("SLACK_API_URL", http) or d.slack_api_url,
            twilio_account_sid=self.raw("TWILIO_ACCOUNT_SID"),
            twilio_auth_token=self.raw("TWILIO_AUTH_TOKEN"),
            twilio_from_number=self.raw("TWILIO_FROM_NUMBER"),
            twilio_api_url=self.url("TWILIO_API_URL", http) or d.twilio_api_url,
            partitions=self.integer("GATEWAY_PARTITIONS", d.partitions, 1, 1024),
            queue_type=self.choice("GATEWAY_QUEUE_TYPE", d.queue_type, ("classic", "quorum")),
            queue_prefix=queue_prefix,
            redis_prefix=redis_prefix,
            max_attempts=self.integer("GATEWAY_MAX_ATTEMPTS", d.max_attempts, 1, 100),
            processed_ttl=self.duration("GATEWAY_PROCESSED_TTL", d.processed_ttl),
            dedup_ttl=self.duration("GATEWAY_DEDUP_TTL", d.dedup_ttl),
            worker_concurrency=self.integer("GATEWAY_WORKER_CONCURRENCY", d.worker_concurrency, 1, 10000),
            delivery_concurrency=self.integer(
                "GATEWAY_DELIVERY_CONCURRENCY", d.delivery_concurrency, 1, 10000
            ),
            max_recipients=self.integer("GATEWAY_MAX_RECIPIENTS", d.max_recipients, 1, 1000),
            log_level=self.choice("GATEWAY_LOG_LEVEL", d.log_level.lower(), levels).upper(),
            instance_id=self.raw("GATEWAY_INSTANCE_ID") or default_instance_id(),
            connect_timeout=self.duration("GATEWAY_CONNECT_TIMEOUT", d.connect_timeout),
            rate_limits=self.boolean("GATEWAY_RATE_LIMITS", d.rate_limits),
            watch_stories=self.boolean("GATEWAY_WATCH_STORIES", True)
            if self.raw("GATEWAY_WATCH_STORIES") is not None
            else None,
            heartbeat_file=Path(hb) if (hb := self.raw("GATEWAY_HEARTBEAT_FILE")) else None,
            timeline=Path(folder) if (folder := self.raw("GATEWAY_TIMELINE")) else None,
            metrics_port=self.integer("GATEWAY_METRICS_PORT", 0, 0, 65535)
            if self.raw("GATEWAY_METRICS_PORT") is not None
            else None,
            admin_tokens=self.admin_tokens(),
            user_retention=self.duration("GATEWAY_USER_RETENTION", 0.0) or None,
            broadcast_rate=self.rate("GATEWAY_BROADCAST_RATE"),
            broadcast_lease=self.duration("GATEWAY_BROADCAST_LEASE", d.broadcast_lease),
            http_allow=self.http_allow(),
            http_concurrency=self.integer("GATEWAY_HTTP_CONCURRENCY", d.http_concurrency, 1, 10000),
            secrets=self.secrets(),
            secret_key=self.raw("GATEWAY_SECRET_KEY") or "",
            inbox_address=self.inbox_address(),
            inbox_host=self.text("GATEWAY_INBOX_HOST", d.inbox_host),
            inbox_port=self.integer("GATEWAY_INBOX_PORT", d.inbox_port, 0, 65535),
            imap_url=self.url("GATEWAY_IMAP_URL", ("imap", "imaps")),
            staff=self.staff(),
        )

    def inbox_address(self) -> str | None:
        address = self.raw("GATEWAY_INBOX_ADDRESS")
        if address is None:
            return None
        local, _, domain = address.strip().rpartition("@")
        if not local or not domain or "+" in local or any(c.isspace() for c in address.strip()):
            raise self.fail(
                "GATEWAY_INBOX_ADDRESS", f"use one address like desk@bot.example.com, got {address!r}"
            )
        if not self.raw("GATEWAY_SECRET_KEY"):
            raise self.fail(
                "GATEWAY_SECRET_KEY", "is required with GATEWAY_INBOX_ADDRESS (it signs reply addresses)"
            )
        return address.strip()

    def staff(self) -> tuple[str, ...]:
        """GATEWAY_STAFF: addresses and ``@domain``s, lower case."""
        raw = self.raw("GATEWAY_STAFF") or ""
        entries = tuple(part.strip().lower() for part in raw.split(",") if part.strip())
        for entry in entries:
            _, at, domain = entry.rpartition("@")
            if not at or not domain or ("." not in domain and domain != "localhost"):
                raise self.fail("GATEWAY_STAFF", f"use addresses and @domains, got {entry!r}")
        return entries


DEFAULTS = Settings()

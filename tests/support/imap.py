"""A private dovecot IMAP server for tests: its own config, port, users and mail, run as a subprocess.

``ImapServer(base_dir).start()`` runs ``dovecot -F -c <base_dir>/dovecot.conf`` (Debian's ``dovecot-imapd``,
which ``bin/services.sh`` installs) in a process group of its own, on a free port of 127.0.0.1, and returns
once the server greets and a login works. It never touches the distro's dovecot service or /etc/dovecot.
``stop()`` kills the whole group and removes the mail. Plain ``imap://`` by default; ``tls=True`` gives
``imaps://`` with a self-signed certificate made with ``openssl`` (``cert_path``, ``ssl_context()``).

Each server has one account (``user``, ``password``, ``url``) and can make more with ``add_user()``, so that a
session-wide server still gives every test an empty mailbox of its own. The ``append``/``flags``/
``unseen_count``/``messages`` helpers talk IMAP with the standard library's synchronous ``imaplib``, and never
mark anything seen.

What dovecot 2.3 needs when the tests run as root (as they do here):

* ``imap-login`` refuses to run as root ("This process must not be run as root"): the login processes run as
  ``dovenull`` and the internal ones (auth, ...) as ``dovecot``, the users the Debian package creates.
* ``imap`` refuses a userdb uid of 0 even with ``first_valid_uid = 0`` ("userdb returned 0 as uid"): the mail
  belongs to ``nobody``.
* Those unprivileged processes must reach the passwd-file and the homes, and pytest's temporary directories
  are not reachable for them (``/tmp/pytest-of-root`` is mode 0700). So everything dovecot's own users touch
  (sockets, state, passwd-files, homes) lives in ``runtime_dir``, a directory of its own made in the system's
  temporary directory (short, which also keeps the unix socket paths under their 108-byte limit); ``base_dir``
  keeps what only root reads: the config, the log and the certificate.
* The port accepts connections before ``imap-login`` is ready, and goes on accepting them when it keeps
  failing (the client then just sees EOF): readiness is the ``* OK`` greeting, and ``start()`` also logs
  in once.

Run as another user, every dovecot process is that user and nothing is chrooted.
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import imaplib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self
from urllib.parse import quote

HOST = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
_POLL = 0.02


class ImapServerError(RuntimeError):
    """The private dovecot did not start (the message ends with the tail of its log)."""


class _PortTaken(ImapServerError):
    pass


def find_dovecot() -> str | None:
    """The dovecot binary, or None when ``dovecot-imapd`` is not installed."""
    found = shutil.which("dovecot")
    if found:
        return found
    return "/usr/sbin/dovecot" if os.access("/usr/sbin/dovecot", os.X_OK) else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    members: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


@dataclass(frozen=True)
class StoredMessage:
    """A message as the mailbox holds it."""

    uid: int
    flags: frozenset[str]
    raw: bytes


class ImapAccount:
    """One user of an ``ImapServer``, with helpers that read and fill its mailboxes over IMAP."""

    def __init__(self, server: ImapServer, user: str, password: str) -> None:
        self.server = server
        self.user = user
        self.password = password

    def __repr__(self) -> str:
        return f"ImapAccount({self.user!r} on {self.server.scheme}://{HOST}:{self.server.port})"

    @property
    def url(self) -> str:
        """``imap[s]://user:password@127.0.0.1:port/INBOX``, what ``GATEWAY_IMAP_URL`` takes."""
        return self.url_for("INBOX")

    def url_for(self, mailbox: str) -> str:
        user, password = quote(self.user, safe=""), quote(self.password, safe="")
        return f"{self.server.scheme}://{user}:{password}@{HOST}:{self.server.port}/{quote(mailbox, safe='')}"

    @contextlib.contextmanager
    def session(self) -> Iterator[imaplib.IMAP4]:
        """A logged-in ``imaplib`` connection, logged out at the end."""
        conn = self.server.imaplib_connection()
        try:
            conn.login(self.user, self.password)
            yield conn
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                conn.logout()

    def append(self, raw_message: bytes, mailbox: str = "INBOX", flags: Iterable[str] = ()) -> int:
        """Put a message into ``mailbox`` (IMAP APPEND, unseen unless ``flags`` say so); returns its UID."""
        flag_list = " ".join(flags)
        with self.session() as conn:
            typ, data = conn.append(mailbox, f"({flag_list})" if flag_list else None, None, raw_message)
        answer = b" ".join(item for item in data if isinstance(item, bytes))
        found = re.search(rb"APPENDUID \d+ (\d+)", answer)
        if typ != "OK" or found is None:
            raise ImapServerError(f"APPEND to {mailbox} failed: {typ} {answer!r}")
        return int(found.group(1))

    def create_mailbox(self, mailbox: str) -> None:
        with self.session() as conn:
            typ, data = conn.create(mailbox)
        if typ != "OK":
            raise ImapServerError(f"CREATE {mailbox} failed: {data!r}")

    def uids(self, mailbox: str = "INBOX", criteria: str = "ALL") -> list[int]:
        """The UIDs that ``UID SEARCH <criteria>`` finds, e.g. ``criteria="UNSEEN"``."""
        with self.session() as conn:
            return self._search(conn, mailbox, criteria)

    def flags(self, uid: int, mailbox: str = "INBOX") -> frozenset[str]:
        """The flags of message ``uid``, e.g. ``frozenset({"\\\\Seen"})``; KeyError when there is none."""
        with self.session() as conn:
            self._examine(conn, mailbox)
            typ, data = conn.uid("FETCH", str(uid), "(FLAGS)")
        if typ != "OK" or not data or data[0] is None:
            raise KeyError(f"no message with UID {uid} in {mailbox}")
        return _flags_of(data)

    def unseen_count(self, mailbox: str = "INBOX") -> int:
        """How many messages of ``mailbox`` lack ``\\Seen`` (IMAP STATUS UNSEEN)."""
        with self.session() as conn:
            typ, data = conn.status(mailbox, "(UNSEEN)")
        found = re.search(rb"UNSEEN (\d+)", data[0] if data and isinstance(data[0], bytes) else b"")
        if typ != "OK" or found is None:
            raise ImapServerError(f"STATUS {mailbox} failed: {typ} {data!r}")
        return int(found.group(1))

    def messages(self, mailbox: str = "INBOX") -> list[StoredMessage]:
        """Every message of ``mailbox`` in UID order, read with BODY.PEEK[] (nothing becomes seen)."""
        stored: list[StoredMessage] = []
        with self.session() as conn:
            for uid in self._search(conn, mailbox, "ALL"):
                typ, data = conn.uid("FETCH", str(uid), "(FLAGS BODY.PEEK[])")
                raw = next((item[1] for item in data if isinstance(item, tuple)), None)
                if typ != "OK" or raw is None:
                    continue  # expunged meanwhile
                stored.append(StoredMessage(uid, _flags_of(data), bytes(raw)))
        return stored

    @staticmethod
    def _examine(conn: imaplib.IMAP4, mailbox: str) -> None:
        typ, data = conn.select(mailbox, readonly=True)
        if typ != "OK":
            raise ImapServerError(f"EXAMINE {mailbox} failed: {data!r}")

    def _search(self, conn: imaplib.IMAP4, mailbox: str, criteria: str) -> list[int]:
        self._examine(conn, mailbox)
        typ, data = conn.uid("SEARCH", criteria)
        if typ != "OK":
            raise ImapServerError(f"UID SEARCH {criteria} failed: {data!r}")
        found = data[0] if data and isinstance(data[0], bytes) else b""
        return sorted(int(uid) for uid in found.split())


def _flags_of(data: list[bytes | tuple[bytes, bytes] | None]) -> frozenset[str]:
    """The FLAGS item of a FETCH answer, wherever imaplib put it (before or after a literal)."""
    text = b" ".join(
        part for item in data if item is not None for part in (item[0] if isinstance(item, tuple) else item,)
    )
    found = re.search(rb"FLAGS \(([^)]*)\)", text)
    return frozenset(found.group(1).decode().split()) if found else frozenset()


class ImapServer:
    """A dovecot of the test's own on 127.0.0.1 (see the module docstring).

    ``port`` None picks a free one (and another if it is taken meanwhile); it then stays the same over
    ``restart()``. The first account is ``user``/``password`` (random password unless given).
    """

    def __init__(
        self,
        base_dir: Path,
        port: int | None = None,
        *,
        tls: bool = False,
        user: str = "desk",
        password: str | None = None,
    ) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.tls = tls
        self.port = port or 0
        self._fixed_port = port is not None
        self.runtime_dir: Path | None = None
        self.start_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stdout: IO[bytes] | None = None
        self._log_offset = 0
        self._passwords: dict[str, str] = {}
        self.account = self.add_user(user, password)

    # -- the account of the server, for short ------------------------------------------------------------
    @property
    def user(self) -> str:
        return self.account.user

    @property
    def password(self) -> str:
        return self.account.password

    @property
    def url(self) -> str:
        return self.account.url

    def append(self, raw_message: bytes, mailbox: str = "INBOX", flags: Iterable[str] = ()) -> int:
        return self.account.append(raw_message, mailbox, flags)

    def flags(self, uid: int, mailbox: str = "INBOX") -> frozenset[str]:
        return self.account.flags(uid, mailbox)

    def unseen_count(self, mailbox: str = "INBOX") -> int:
        return self.account.unseen_count(mailbox)

    def messages(self, mailbox: str = "INBOX") -> list[StoredMessage]:
        return self.account.messages(mailbox)

    # -- where it is ------------------------------------------------------------------------------------
    @property
    def scheme(self) -> str:
        return "imaps" if self.tls else "imap"

    @property
    def host(self) -> str:
        return HOST

    @property
    def config_path(self) -> Path:
        return self.base_dir / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "dovecot.log"

    @property
    def cert_path(self) -> Path:
        """The self-signed certificate (``tls=True``): a client trusts it as its CA, e.g. with
        ``SSL_CERT_FILE`` for a subprocess or ``ssl_context()`` in the test."""
        return self.base_dir / "cert.pem"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's certificate (and checks the host name)."""
        if not self.tls:
            raise ValueError("this ImapServer runs plain imap:// (tls=False)")
        return ssl.create_default_context(cafile=str(self.cert_path))

    def imaplib_connection(self, timeout: float = 10.0) -> imaplib.IMAP4:
        """A new, not yet logged-in ``imaplib`` connection to the server."""
        if self.tls:
            return imaplib.IMAP4_SSL(HOST, self.port, ssl_context=self.ssl_context(), timeout=timeout)
        return imaplib.IMAP4(HOST, self.port, timeout=timeout)

    def log_text(self) -> str:
        """What this server has logged so far (dovecot's own log file)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- users ------------------------------------------------------------------------------------------
    def add_user(self, user: str | None = None, password: str | None = None) -> ImapAccount:
        """A new account with an empty mailbox; usable at once, also while the server runs."""
        user = user or f"user-{secrets.token_hex(4)}"
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", user):
            raise ValueError(f"user name {user!r}: letters, digits and ._+- after a letter or digit")
        password = password or secrets.token_hex(12)
        if ":" in password or "\n" in password:
            raise ValueError("a password may not hold ':' or a newline (passwd-file format)")
        self._passwords[user] = password
        if self.runtime_dir is not None:
            self._write_users()
        return ImapAccount(self, user, password)

    # -- life cycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start dovecot and return once it greets and the first account can log in."""
        if self._proc is not None:
            return
        binary = find_dovecot()
        if binary is None:
            raise ImapServerError(
                "dovecot is not installed: apt-get install dovecot-imapd (bin/services.sh does)"
            )
        self.base_dir.mkdir(parents=True, exist_ok=True)
        runtime = Path(tempfile.mkdtemp(prefix="imapd-"))
        runtime.chmod(0o755)
        (runtime / "home").mkdir(mode=0o755)
        self.runtime_dir = runtime
        atexit.register(self.stop)
        try:
            if self.tls:
                self._make_certificate()
            self._write_users()
            attempts = 1 if self._fixed_port else 5
            for attempt in range(attempts):
                if not self._fixed_port:
                    self.port = _free_port()
                try:
                    self._spawn(binary)
                    return
                except _PortTaken:
                    self._terminate()
                    if attempt == attempts - 1:
                        raise
        except BaseException:
            self.stop()
            raise

    def restart(self) -> None:
        """Kill dovecot and start it again on the same port, keeping the users and their mail."""
        binary = find_dovecot()
        assert binary is not None and self.runtime_dir is not None, "restart() needs a started server"
        self._terminate()
        self._spawn(binary)

    def stop(self) -> None:
        """Kill dovecot (its whole process group) and remove its mail; the log and config stay."""
        atexit.unregister(self.stop)
        self._terminate()
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            self.runtime_dir = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- inside -----------------------------------------------------------------------------------------
    def _identities(self) -> tuple[str, str, int, int]:
        """(internal user, login user, mail uid, mail gid)."""
        if os.geteuid() != 0:
            me = pwd.getpwuid(os.geteuid()).pw_name
            return me, me, os.geteuid(), os.getegid()
        internal = "dovecot" if _user_exists("dovecot") else "nobody"
        login = "dovenull" if _user_exists("dovenull") else "nobody"
        nobody = pwd.getpwnam("nobody")
        return internal, login, nobody.pw_uid, nobody.pw_gid

    def _write_users(self) -> None:
        """One passwd-file per user (``users/<user>``): a file dovecot has not seen yet is read at once,
        where a changed shared file would be read again only a second after its last read."""
        assert self.runtime_dir is not None
        _, _, uid, gid = self._identities()
        users = self.runtime_dir / "users"
        users.mkdir(mode=0o755, exist_ok=True)
        for user, password in self._passwords.items():
            entry = users / user
            if not entry.exists():
                fresh = users / f"{user}~"
                fresh.write_text(f"{user}:{{PLAIN}}{password}::::::\n")
                fresh.chmod(0o644)
                fresh.replace(entry)
            home = self.runtime_dir / "home" / user
            if not home.exists():
                home.mkdir(mode=0o700)
                if os.geteuid() == 0:
                    os.chown(home, uid, gid)

    def _make_certificate(self) -> None:
        if self.cert_path.exists():
            return
        openssl = shutil.which("openssl")
        if openssl is None:
            raise ImapServerError("openssl is needed for an imaps:// ImapServer")
        key = self.base_dir / "key.pem"
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(self.cert_path), "-days", "30", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        key.chmod(0o600)

    def _config(self) -> str:
        assert self.runtime_dir is not None
        internal, login, uid, gid = self._identities()
        internal_group = _primary_group(internal)
        runtime = self.runtime_dir
        plain_port, tls_port = (0, self.port) if self.tls else (self.port, 0)
        ssl_lines = (
            f"ssl = yes\nssl_cert = <{self.cert_path}\nssl_key = <{self.base_dir / 'key.pem'}\n"
            if self.tls
            else "ssl = no\n"
        )
        unprivileged = ""
        if os.geteuid() != 0:  # no chroot without root
            unprivileged = "".join(
                f"service {name} {{\n  chroot =\n}}\n"
                for name in ("anvil", "imap-login", "imap-urlauth-login", "director", "ipc")
            )
        return f"""\
# A private instance written by tests/support/imap.py: nothing to do with /etc/dovecot.
protocols = imap
listen = {HOST}
base_dir = {runtime}/run
state_dir = {runtime}/state
instance_name = imapd-test-{self.port}
log_path = {self.log_path}
log_timestamp = "%Y-%m-%d %H:%M:%S "
auth_verbose = yes
default_internal_user = {internal}
default_internal_group = {internal_group}
default_login_user = {login}
first_valid_uid = {uid}
first_valid_gid = {gid}
auth_mechanisms = plain login
disable_plaintext_auth = no
mail_location = maildir:~/Maildir
# IDLE is told of new mail by inotify at once; this is only the fallback.
mailbox_idle_check_interval = 1 secs
{ssl_lines}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {runtime}/users/%u
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={runtime}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = {HOST}
    port = {plain_port}
  }}
  inet_listener imaps {{
    address = {HOST}
    port = {tls_port}
    ssl = yes
  }}
}}
{unprivileged}"""

    def _spawn(self, binary: str) -> None:
        self.config_path.write_text(self._config())
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        began = time.monotonic()
        self._stdout = (self.base_dir / "dovecot.stdout").open("ab")
        self._proc = subprocess.Popen(
            [binary, "-F", "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._stdout,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a process group of its own, killed whole by stop()
        )
        self._wait_ready(began + START_TIMEOUT)
        self.start_seconds = time.monotonic() - began

    def _wait_ready(self, deadline: float) -> None:
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                log = self._new_log()
                failure = _PortTaken if "Address already in use" in log else ImapServerError
                raise failure(f"dovecot exited with {self._proc.returncode}:\n{log}")
            if self._greets():
                break
            if time.monotonic() > deadline:
                raise ImapServerError(f"dovecot does not greet on {HOST}:{self.port}:\n{self._new_log()}")
            time.sleep(_POLL)
        try:
            with self.account.session() as conn:
                conn.noop()
        except (imaplib.IMAP4.error, OSError) as exc:
            raise ImapServerError(f"dovecot greets but login fails ({exc!r}):\n{self._new_log()}") from exc

    def _greets(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=2.0) as raw:
                if self.tls:
                    with self.ssl_context().wrap_socket(raw, server_hostname=HOST) as tls:
                        return tls.recv(256).startswith(b"* OK")
                return raw.recv(256).startswith(b"* OK")
        except (OSError, ssl.SSLError):
            return False

    def _new_log(self) -> str:
        return self.log_text()[self._log_offset :][-4000:]

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            pgid = proc.pid  # start_new_session: the master leads its own group
            # SIGTERM to them all, so that the master reaps its children; SIGKILL for any left.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=STOP_TIMEOUT)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            proc.wait()
            deadline = time.monotonic() + STOP_TIMEOUT
            while _group_members(pgid):
                if time.monotonic() > deadline:
                    raise ImapServerError(f"dovecot processes {_group_members(pgid)} outlive SIGKILL")
                time.sleep(_POLL)
        if self._stdout is not None:
            self._stdout.close()
            self._stdout = None


def _primary_group(user: str) -> str:
    return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name

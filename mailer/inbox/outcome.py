"""What became of one mail: passed on, seen before, or refused for a reason (with its SMTP answer)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Refusal(enum.StrEnum):
    """Why a mail is not passed on: the ``reason`` label of ``gateway_inbox_refused``."""

    TOO_BIG = "too_big"
    UNPARSEABLE = "unparseable"
    NOT_STAFF = "not_staff"
    BAD_TOKEN = "bad_token"
    HANDED_BACK = "handed_back"
    NO_TEXT = "no_text"
    DUPLICATE = "duplicate"  # passed on before: answered like an accepted mail, never passed on again


_SMTP = {
    Refusal.TOO_BIG: "552 5.3.4 Message over the inbox's size limit",
    Refusal.UNPARSEABLE: "550 5.6.0 Message does not parse as a reply (no usable From)",
    Refusal.NOT_STAFF: "550 5.7.1 Sender is not support staff (GATEWAY_STAFF)",
    Refusal.BAD_TOKEN: "550 5.1.1 No valid desk reply address among the recipients",
    Refusal.HANDED_BACK: "550 5.7.1 The conversation is no longer handed over",
    Refusal.NO_TEXT: "550 5.6.0 Reply has no text and no image",
    Refusal.DUPLICATE: "250 2.0.0 OK: passed on before",
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """``inbound_id`` is set when the mail was passed on now; ``refusal`` when it was not."""

    refusal: Refusal | None = None
    detail: str = ""
    inbound_id: str | None = None

    @property
    def done(self) -> bool:
        """Nothing more to do with the mail: passed on now or before (SMTP 250, IMAP ``\\Seen``)."""
        return self.refusal is None or self.refusal is Refusal.DUPLICATE

    @property
    def smtp_reply(self) -> str:
        if self.refusal is None:
            return "250 2.0.0 OK: passed on"
        return _SMTP[self.refusal]

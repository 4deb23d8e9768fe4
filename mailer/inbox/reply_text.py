"""The new text of a staff reply: quoted history and signature cut by ``mail-parser-reply``.

Chosen over ``email-reply-parser`` (unmaintained since 2020) and ``talon`` (2017, pulls in scikit-learn):
``mail-parser-reply`` is maintained, knows the "On ... wrote:" and "From: ... Sent: ..." headers of the
common clients in a dozen languages, and cuts "-- " signatures, "Best regards" closings and "Sent from my
phone" lines. Hyphen lists are kept (the library would otherwise take "- item" for a signature).
"""

from __future__ import annotations

import re

from mailparser_reply.parser import EmailMessage

# The languages whose reply headers and closings are recognised (English is always among them).
LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "pl", "sv", "da", "cs")
_HANDBACK_LINE = re.compile(r"^\s*#bot\s*$", re.MULTILINE | re.IGNORECASE)


def reply_text(text: str) -> str:
    """The part of ``text`` the sender wrote now: no quoted history, no signature, no disclaimer.

    A ``#bot`` line (the hand-back) written above the quoted history is kept even when the library takes
    it for part of a signature.
    """
    parsed = EmailMessage(text=text, languages=list(LANGUAGES), keep_hyphen_lists=True).read()
    if not parsed.replies:
        return ""
    latest = parsed.replies[0]
    if latest.headers:  # the mail begins with a quoted reply's header: nothing new was written above it
        return ""
    body = str(latest.body).strip()
    if _HANDBACK_LINE.search(latest.content) and not _HANDBACK_LINE.search(body):
        body = f"{body}\n#bot".strip()
    return body

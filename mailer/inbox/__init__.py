"""``gateway inbox``: support staff's email replies to handed-over conversations, passed on to the user.

A reply arrives by SMTP (:mod:`.smtp_server`) or from an IMAP mailbox (:mod:`.imap_reader`); either way one
mail goes through :class:`~mailer.inbox.service.Inbox`: parsed (:mod:`.parse`), checked (size, staff
sender, signed token, still handed over, seen before), cut to the new text (:mod:`.reply_text`), and
published as one ``Inbound(kind="staff")`` on the user's conversation, with confirm, before the mail is
acknowledged (SMTP 250, IMAP ``\\Seen``). OPERATIONS.md, "Staff replies by email".
"""

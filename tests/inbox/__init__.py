"""Reading staff replies from a real IMAP mailbox (a private dovecot)."""

"""Helpers that run real services of a test's own (a private dovecot IMAP server)."""

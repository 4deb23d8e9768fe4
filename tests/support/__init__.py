"""What tests share besides fixtures: fake channel APIs, fault injection, gateway processes, SMTP servers,
helpers per package, and real services of a test's own (clusters, a private dovecot IMAP server)."""

"""The mailer role: deliver the email jobs story workers publish, once each, over SMTP or to an outbox."""

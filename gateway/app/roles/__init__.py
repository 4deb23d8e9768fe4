"""The roles a gateway process runs (``serve``, ``worker``, ``mailer``), one small class each, plus the
operational parts every process may have (health and metrics over HTTP, a heartbeat file)."""

"""Tools for bot designers, apart from the worker runtime: ``check`` (positioned problems), the story map,
and conversation tests; built on the story engine, the worker, the mailer and the channels."""

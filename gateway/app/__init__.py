"""The wiring on top: the roles of a process, the command line, the HTTP face; the only code that
imports the channels, the worker, the mailer and the design tools together."""

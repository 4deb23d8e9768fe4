"""The core every part builds on, importing nothing above it: the wire schema, settings, errors,
durations, metrics, a Redis client (``redis``), and the bus and store interfaces with their
implementations."""

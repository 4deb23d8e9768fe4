"""The message bus: the contract in :mod:`~gateway.core.bus.base`, one dispatcher for its consume rules,
and two implementations side by side: ``memory`` (in-process) and ``rabbit`` (RabbitMQ through aio-pika)."""

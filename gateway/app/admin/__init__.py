"""The admin API under ``/api/`` of ``serve`` and ``run`` (OPERATIONS.md, "The admin API and the user's
data"): bearer tokens (``auth``), the routes (``api``), their OpenAPI document (``openapi``)."""

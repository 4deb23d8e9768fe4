"""The admin API's OpenAPI 3.1 document, served at ``/api/openapi.json``.

Written out by hand beside the routes; ``tests/app/test_admin_api.py`` validates it with
openapi-spec-validator, checks that it names every route, and validates real answers against it.
"""

from __future__ import annotations

from typing import Any

from gateway.app.userdata.checks import ATTRIBUTE_NAME, MAX_VALUE_CHARACTERS

Json = dict[str, Any]

_TIME = {"type": ["string", "null"], "format": "date-time"}
_TEXT_MAP = {"type": "object", "additionalProperties": {"type": "string"}}


def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Json, description: str) -> Json:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Json]:
    why = {
        400: "malformed: not JSON, not an object, an unknown field, a user id or name of the wrong form",
        401: "no valid bearer token",
        404: "an unknown channel, user path or broadcast",
        413: "the body is over 1 MiB",
        503: "the store or the broker is unavailable; try again",
    }
    return {str(status): _json(_ref("Error"), why[status]) for status in (401, *statuses, 503)}


_SCHEMAS: Json = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "Session": {
        "type": "object",
        "required": ["story", "step", "values", "buttons", "expires_at"],
        "properties": {
            "story": {"type": ["string", "null"]},
            "step": {"type": ["string", "null"], "description": "the step waiting for the next message"},
            "values": _TEXT_MAP,
            "buttons": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["title", "payload"],
                    "properties": {"title": {"type": "string"}, "payload": {"type": "string"}},
                },
            },
            "expires_at": _TIME,
        },
    },
    "User": {
        "type": "object",
        "description": "the user's attributes, what the user index knows, each conversation's session and "
        "records (pending timers, a handoff: each under its kind, as its owner encodes it)",
        "required": ["channel", "user", "attributes", "opted_out", "known", "conversations"],
        "properties": {
            "channel": {"type": "string"},
            "user": {"type": "string"},
            "attributes": _TEXT_MAP,
            "opted_out": {"type": "boolean", "description": "the user refused every message (SMS STOP)"},
            "known": {
                "type": ["object", "null"],
                "description": "the channel's user index: null when the user is not in it",
                "required": ["last_seen", "broadcast_chat"],
                "properties": {
                    "last_seen": _TIME,
                    "broadcast_chat": {"type": ["string", "null"], "description": "their direct chat"},
                },
            },
            "conversations": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["chat", "session", "records"],
                    "properties": {
                        "chat": {"type": "string"},
                        "session": {"oneOf": [_ref("Session"), {"type": "null"}]},
                        "records": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "object",
                                "required": ["value", "expires_at"],
                                "properties": {"value": {}, "expires_at": _TIME},
                            },
                        },
                    },
                },
            },
        },
    },
    "Export": {
        "description": "everything the gateway keeps about the user: the User document, plus the processed "
        "messages with the replies and emails they produced, dead letters naming the user, and web chat "
        "replies held for them in the answering process",
        "allOf": [
            _ref("User"),
            {
                "type": "object",
                "required": ["format", "exported_at", "messages", "dead_letters", "held_web_chat_replies"],
                "properties": {
                    "format": {"const": "gateway-user-export/1"},
                    "exported_at": _TIME,
                    "messages": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["id", "expires_at", "replies", "emails"],
                            "properties": {
                                "id": {"type": "string"},
                                "expires_at": _TIME,
                                "replies": {"type": "array"},
                                "emails": {"type": "array"},
                            },
                        },
                    },
                    "dead_letters": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["topic", "id", "reason", "attempts", "failed_at", "message"],
                            "properties": {
                                "topic": {"enum": ["inbound", "outbound", "email"]},
                                "id": {"type": "string"},
                                "reason": {"type": "string"},
                                "attempts": {"type": "integer"},
                                "failed_at": _TIME,
                                "message": {},
                            },
                        },
                    },
                    "held_web_chat_replies": {"type": "array"},
                },
            },
        ],
    },
    "AttributeChanges": {
        "type": "object",
        "required": ["attributes"],
        "additionalProperties": False,
        "properties": {
            "attributes": {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 1000,
                "propertyNames": {"pattern": f"^{ATTRIBUTE_NAME.pattern}$"},
                "additionalProperties": {"type": ["string", "null"], "maxLength": MAX_VALUE_CHARACTERS},
                "description": "a text sets the attribute, null deletes it",
            }
        },
        "example": {"attributes": {"Name": "Ada", "Old": None}},
    },
    "Attributes": {
        "type": "object",
        "required": ["channel", "user", "attributes"],
        "properties": {"channel": {"type": "string"}, "user": {"type": "string"}, "attributes": _TEXT_MAP},
    },
    "Erased": {
        "type": "object",
        "required": ["channel", "user", "erased"],
        "properties": {
            "channel": {"type": "string"},
            "user": {"type": "string"},
            "erased": {
                "type": "object",
                "description": "what was removed; all zero (and false) when nothing was kept",
                "required": [
                    "attributes",
                    "opted_out",
                    "sessions",
                    "records",
                    "messages",
                    "index_entry",
                    "email_jobs_cancelled",
                    "dead_letters",
                    "held_web_chat_replies",
                ],
                "properties": {
                    "attributes": {"type": "integer"},
                    "opted_out": {"type": "boolean"},
                    "sessions": {"type": "integer"},
                    "records": {"type": "object", "additionalProperties": {"type": "integer"}},
                    "messages": {"type": "integer", "description": "processed-message records"},
                    "index_entry": {"type": "boolean"},
                    "email_jobs_cancelled": {"type": "integer", "description": "queued, not sent yet"},
                    "dead_letters": {"type": "integer"},
                    "held_web_chat_replies": {"type": "integer"},
                },
            },
        },
    },
    "BroadcastRequest": {
        "type": "object",
        "required": ["story", "channel"],
        "additionalProperties": False,
        "properties": {
            "story": {"type": "string", "description": "the id of the story to start"},
            "channel": {"type": "string"},
            "where": {"type": "string", "description": "a condition over @user.* (STORIES.md); empty: all"},
            "dry_run": {"type": "boolean", "default": False, "description": "count, start nobody"},
        },
        "example": {"story": "promo", "channel": "telegram", "where": '@user.Plan == "pro"'},
    },
    "Broadcast": {
        "type": "object",
        "required": [
            "id",
            "story",
            "channel",
            "where",
            "dry_run",
            "status",
            "walked",
            "matched",
            "started",
            "failed",
            "created_at",
            "finished_at",
            "by",
        ],
        "properties": {
            "id": {"type": "string"},
            "story": {"type": "string"},
            "channel": {"type": "string"},
            "where": {"type": "string"},
            "dry_run": {"type": "boolean"},
            "status": {"enum": ["running", "done"]},
            "walked": {"type": "integer", "description": "users looked at"},
            "matched": {"type": "integer", "description": "users whose attributes matched"},
            "started": {"type": "integer", "description": "matched users the story was started for"},
            "failed": {"type": "integer", "description": "matched users with no direct chat, or opted out"},
            "created_at": {"type": "number", "description": "Unix time"},
            "finished_at": {"type": ["number", "null"]},
            "by": {"type": "string", "description": "the name of the token that asked"},
        },
    },
}

_USER_PARAMETERS = [
    {
        "name": "channel",
        "in": "path",
        "required": True,
        "schema": {"enum": ["telegram", "slack", "sms", "webchat"]},
    },
    {
        "name": "user",
        "in": "path",
        "required": True,
        "description": "the user's id as the channel gives it: Telegram from.id, Slack user id, the E.164 "
        "number for SMS, the web chat's id",
        "schema": {"type": "string"},
    },
]


def document() -> Json:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "chat-gateway admin API",
            "version": "1",
            "description": "Read, change, export and erase a user's data; broadcast a story. Every call "
            "is logged with the name of its token.",
        },
        "servers": [{"url": "/api"}],
        "security": [{"bearer": []}],
        "paths": {
            "/users/{channel}/{user}": {
                "parameters": _USER_PARAMETERS,
                "get": {
                    "summary": "The user's attributes, conversations' sessions, pending timers and handoffs",
                    "operationId": "showUser",
                    "responses": {"200": _json(_ref("User"), "the user"), **_errors(400, 404)},
                },
                "patch": {
                    "summary": "Set and delete attributes",
                    "operationId": "changeUser",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("AttributeChanges")}},
                    },
                    "responses": {
                        "200": _json(_ref("Attributes"), "the attributes afterwards"),
                        **_errors(400, 404, 413),
                    },
                },
                "delete": {
                    "summary": "Erase everything kept about the user",
                    "operationId": "eraseUser",
                    "responses": {"200": _json(_ref("Erased"), "what was erased"), **_errors(400, 404)},
                },
            },
            "/users/{channel}/{user}/export": {
                "parameters": _USER_PARAMETERS,
                "get": {
                    "summary": "Everything kept about the user, as one document",
                    "operationId": "exportUser",
                    "responses": {"200": _json(_ref("Export"), "the export"), **_errors(400, 404)},
                },
            },
            "/broadcasts": {
                "post": {
                    "summary": "Start a story for every known user of a channel matching a condition",
                    "operationId": "startBroadcast",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("BroadcastRequest")}},
                    },
                    "responses": {
                        "202": _json(_ref("Broadcast"), "accepted: a worker runs it"),
                        **_errors(400, 413),
                    },
                },
            },
            "/broadcasts/{id}": {
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "get": {
                    "summary": "A broadcast's progress",
                    "operationId": "broadcastProgress",
                    "responses": {"200": _json(_ref("Broadcast"), "its progress"), **_errors(404)},
                },
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "openapi",
                    "responses": {"200": {"description": "the OpenAPI document"}, **_errors()},
                },
            },
        },
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }

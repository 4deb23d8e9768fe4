"""A fake Twilio REST API: ``POST {url}/2010-04-01/Accounts/{sid}/Messages.json``, form-encoded.

Real wire format (https://www.twilio.com/docs/messaging/api/message-resource): HTTP Basic auth with the
account SID and auth token; parameters ``To``, ``From``, ``Body``, ``MediaUrl`` (repeatable); 201 with the
Message resource as JSON; errors as ``{"code": 21211, "message": "...", "more_info": "...", "status": 400}``.
A ``To`` that is not E.164 answers 21211, a number in :attr:`FakeTwilio.unsubscribed` answers 21610
(the recipient sent STOP), a body over 1600 characters 21617, neither body nor media 21602.

    async with FakeTwilio() as tw:
        channel = SmsChannel(tw.account_sid, tw.auth_token, tw.from_number, store, api_url=tw.url)
"""

from __future__ import annotations

import base64
import re
from email.utils import formatdate
from typing import Any

from aiohttp import web

from tests.support.fakes.base import FakeApi, drop

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "fake-auth-token-0123456789abcdef"
FROM_NUMBER = "+15005550006"
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_MESSAGES = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    21211: "The 'To' number {to} is not a valid phone number.",
    21602: "Message body is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21617: "The concatenated message body exceeds the 1600 character limit.",
}
_CODES = {401: 20003, 404: 20404, 429: 20429, 500: 20500, 503: 20500}


class FakeTwilio(FakeApi):
    def __init__(
        self, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN, from_number: str = FROM_NUMBER
    ) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.from_number = from_number
        self.unsubscribed: set[str] = set()
        self._count = 0

    @property
    def url(self) -> str:
        """The value for ``TWILIO_API_URL``."""
        return self.address

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/2010-04-01/Accounts/{sid}/Messages.json", self._create)]

    def _authenticated(self, request: web.Request) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return request.headers.get("Authorization", "") == f"Basic {expected}"

    async def _create(self, request: web.Request) -> web.StreamResponse:
        method = "Messages.create"
        form = await request.post()
        params: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
        params["MediaUrl"] = [v for v in form.getall("MediaUrl", []) if isinstance(v, str)]
        failure = self.take_failure(method)
        if failure is not None:
            if failure.status == 0:
                await self.record(method, params, request, 0)
                return drop(request)
            details = failure.details
            code = int(details.get("code") or _CODES.get(failure.status, failure.status))
            return await self._error(
                request, params, failure.status, code, details.get("message"), details.get("retry_after")
            )
        if not self._authenticated(request):
            return await self._error(request, params, 401, 20003)
        if request.match_info["sid"] != self.account_sid:
            return await self._error(request, params, 404, 20404)
        to, body = str(params.get("To", "")), str(params.get("Body", ""))
        if not _E164.match(to):
            return await self._error(request, params, 400, 21211)
        if to in self.unsubscribed:
            return await self._error(request, params, 400, 21610)
        if not body and not params["MediaUrl"]:
            return await self._error(request, params, 400, 21602)
        if len(body) > 1600:
            return await self._error(request, params, 400, 21617)
        self._count += 1
        sid = ("MM" if params["MediaUrl"] else "SM") + f"{self._count:032x}"
        now = formatdate(usegmt=True)
        await self.record(method, params, request, 201)
        return web.json_response(
            {
                "sid": sid,
                "account_sid": self.account_sid,
                "to": to,
                "from": params.get("From"),
                "body": body,
                "status": "queued",
                "num_media": str(len(params["MediaUrl"])),
                "num_segments": "1",
                "direction": "outbound-api",
                "api_version": "2010-04-01",
                "date_created": now,
                "date_updated": now,
                "date_sent": None,
                "price": None,
                "price_unit": "USD",
                "error_code": None,
                "error_message": None,
                "messaging_service_sid": None,
                "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
                "subresource_uris": {
                    "media": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}/Media.json"
                },
            },
            status=201,
        )

    async def _error(
        self,
        request: web.Request,
        params: dict[str, Any],
        status: int,
        code: int,
        message: str | None = None,
        retry_after: float | None = None,
    ) -> web.Response:
        await self.record("Messages.create", params, request, status)
        text = message or _MESSAGES.get(code, "Error").format(to=params.get("To", ""))
        body = {
            "code": code,
            "message": text,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return web.json_response(body, status=status, headers=headers)

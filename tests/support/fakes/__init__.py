"""Local fake channel APIs (Telegram Bot API, Slack Web API, Twilio REST) and signed inbound requests."""

from tests.support.fakes.base import Call, FakeApi
from tests.support.fakes.inbound import (
    SignedRequest,
    slack_block_action,
    slack_event_callback,
    slack_event_request,
    slack_interaction_request,
    slack_message_event,
    slack_request,
    telegram_callback_update,
    telegram_text_update,
    telegram_update_request,
    twilio_request,
    twilio_sms_params,
)
from tests.support.fakes.slack import FakeSlack
from tests.support.fakes.telegram import FakeTelegram
from tests.support.fakes.twilio import FakeTwilio

__all__ = [
    "Call",
    "FakeApi",
    "FakeSlack",
    "FakeTelegram",
    "FakeTwilio",
    "SignedRequest",
    "slack_block_action",
    "slack_event_callback",
    "slack_event_request",
    "slack_interaction_request",
    "slack_message_event",
    "slack_request",
    "telegram_callback_update",
    "telegram_text_update",
    "telegram_update_request",
    "twilio_request",
    "twilio_sms_params",
]

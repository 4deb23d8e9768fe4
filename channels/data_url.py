"""Images carried inside a reply as ``data:`` URLs, and what a channel may do with them.

A person's answer by email brings its image attachments along as ``Reply.image`` with a URL such as
``data:image/png;base64,iVBOR...``: there is no public URL to give a channel API. Telegram uploads the
bytes, the web chat shows the URL as it is, Slack and SMS say ``[image]`` (an upload or an MMS needs a
public URL). Whatever the channel does, the URL is checked first: one that is not base64, not an image
or over :data:`MAX_IMAGE_BYTES` is a permanent refusal, with the reason, never a retry.
"""

from __future__ import annotations

import binascii
import mimetypes
import re
from base64 import b64decode
from dataclasses import dataclass

from channels.base import Refused

MAX_IMAGE_BYTES = 5 * 1024 * 1024  # 5 MiB of image, decoded
IMAGE_PLACEHOLDER = "[image]"  # what a channel that cannot show an inline image says instead
_MAX_ENCODED = (MAX_IMAGE_BYTES + 2) // 3 * 4  # base64 characters of the largest image
_WHITESPACE = re.compile(rb"[ \t\r\n]+")


@dataclass(frozen=True, slots=True)
class InlineImage:
    """The decoded image of a ``data:`` URL."""

    mime: str
    data: bytes

    @property
    def filename(self) -> str:
        """A file name for an upload, with the extension of its type (``image.png``)."""
        extension = mimetypes.guess_extension(self.mime, strict=False) or ""
        return "image" + extension


def is_data_url(url: str) -> bool:
    return url[:5].lower() == "data:"


def decode_image(url: str) -> InlineImage:
    """The image a ``data:image/...;base64,...`` URL holds; :class:`Refused`, saying why, for any other."""
    if not is_data_url(url):
        raise Refused("not a data: URL")
    header, comma, payload = url[5:].partition(",")
    if not comma:
        raise Refused("data: URL without a ',' before its data")
    mime, *parameters = (part.strip() for part in header.split(";"))
    mime = mime.lower()
    if not mime.startswith("image/") or len(mime) == len("image/"):
        raise Refused(f"data: URL of {mime or 'no type'!r}, not an image")
    if not parameters or parameters[-1].lower() != "base64":
        raise Refused("data: URL not in base64")
    encoded = _WHITESPACE.sub(b"", payload.encode("ascii", "replace"))
    if len(encoded) > _MAX_ENCODED:
        raise Refused(f"image over {MAX_IMAGE_BYTES // (1024 * 1024)} MiB")
    try:
        data = b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise Refused("data: URL whose base64 does not decode") from None
    if not data:
        raise Refused("data: URL of an empty image")
    if len(data) > MAX_IMAGE_BYTES:
        raise Refused(f"image over {MAX_IMAGE_BYTES // (1024 * 1024)} MiB")
    return InlineImage(mime, data)

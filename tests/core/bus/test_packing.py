"""Several envelopes in one broker message (gateway/core/bus/packing.py): what goes in comes out, or an
error."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.bus.base import Envelope
from gateway.core.bus.packing import MAX_BYTES, MAX_ENVELOPES, MalformedPack, chunks, pack, unpack

texts = st.text(max_size=20)
envelopes = st.builds(
    Envelope,
    body=st.binary(max_size=200),
    message_id=texts,
    key=texts,
    headers=st.dictionaries(texts, texts, max_size=3),
)


@given(st.lists(envelopes, min_size=1, max_size=20))
def test_what_is_packed_unpacks_the_same_in_the_same_order(packed: list[Envelope]) -> None:
    assert unpack(pack(packed), len(packed)) == packed


def test_bodies_may_hold_newlines_and_any_byte() -> None:
    sent = [Envelope(b"a\nb\n", "1", "k"), Envelope(b"", "2", "k"), Envelope(bytes(range(256)), "3", "k")]
    assert unpack(pack(sent), 3) == sent


@pytest.mark.parametrize(
    ("body", "count", "error"),
    [
        (b"no index line", 1, "no index line"),
        (b"{not json\n", 1, "index is not JSON"),
        (b'{"a": 1}\n', 1, "index lists no envelopes, not 1"),
        (b'[["a","k",{},1]]\nx', 2, "index lists 1 envelopes, not 2"),
        (b'[["a","k",{},5]]\nabc', 1, "body of 'a' runs past the end"),
        (b'[["a","k",{},1]]\nabc', 1, "2 bytes after the last body"),
        (b'[["a","k",{"h":1},1]]\nx', 1, "bad index entry"),
        (b'[["a","k",{},-1]]\n', 1, "bad index entry"),
        (b'[["a",{},1]]\nx', 1, "bad index entry"),
    ],
)
def test_a_body_that_does_not_unpack_says_why(body: bytes, count: int, error: str) -> None:
    with pytest.raises(MalformedPack, match=error):
        unpack(body, count)


def test_chunks_keep_order_and_respect_both_limits() -> None:
    small = [Envelope(b"x", str(n), "k") for n in range(MAX_ENVELOPES * 2 + 1)]
    runs = chunks(small)
    assert [len(run) for run in runs] == [MAX_ENVELOPES, MAX_ENVELOPES, 1]
    assert [e for run in runs for e in run] == small

    big = [Envelope(b"y" * (MAX_BYTES // 2), str(n), "k") for n in range(5)]
    assert [len(run) for run in chunks(big)] == [2, 2, 1]
    huge = [Envelope(b"z" * (MAX_BYTES + 1), "alone", "k")]
    assert chunks(huge) == [huge]  # never split or refused: it simply travels alone

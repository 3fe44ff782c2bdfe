"""The test server's event-stream encoder produces frames botocore's own parser accepts."""

from __future__ import annotations

import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer

from tests.bedrock_server import encode_message, event_message


def _decode(data: bytes) -> list[object]:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return list(buffer)


def test_encoded_messages_round_trip_through_botocore() -> None:
    """Headers of every encoded type and the payload come back from botocore's decoder intact."""
    headers = {":event-type": "chunk", "flag": True, "off": False, "count": 7, "raw": b"\x00\x01"}
    frames = encode_message(headers, b'{"a": 1}') + event_message("messageStop", {"stopReason":
                                                                                 "end_turn"})
    first, second = _decode(frames)
    assert first.headers == headers  # type: ignore[attr-defined]
    assert first.payload == b'{"a": 1}'  # type: ignore[attr-defined]
    assert second.headers[":event-type"] == "messageStop"  # type: ignore[attr-defined]
    assert second.payload == b'{"stopReason": "end_turn"}'  # type: ignore[attr-defined]


@pytest.mark.parametrize("position", [6, -2])
def test_a_corrupted_frame_fails_its_crc(position: int) -> None:
    """Flipping a bit in the prelude or the payload is caught by botocore's CRC32 checks."""
    frame = bytearray(event_message("chunk", {"bytes": "aGk="}))
    frame[position] ^= 0x01
    with pytest.raises(ChecksumMismatch):
        _decode(bytes(frame))

"""Stratum V2 frames (sv2-spec 3.2): a six-byte header, then the payload.

=================  ====  ==============================================================
field              type  meaning
=================  ====  ==============================================================
extension_type     U16   0 for core messages; bit 15 (``channel_msg``) set when the
                         payload starts with the U32 ``channel_id`` it is addressed to
msg_type           U8    which message (:mod:`stratum.v2.messages`)
msg_length         U24   payload length in bytes, not counting this header
=================  ====  ==============================================================

On an encrypted connection the header and the payload are sealed separately
(:mod:`stratum.v2.noise`); ``msg_length`` still counts plaintext bytes.
:class:`PlainFrameBuffer` splits an unencrypted byte stream into frames, for
local links where the spec lets the handshake be skipped and for reading
decrypted captures.
"""

from __future__ import annotations

from dataclasses import dataclass

HEADER_SIZE = 6
CHANNEL_MSG_BIT = 0x8000
MAX_MSG_LENGTH = 0xFFFFFF


class FrameError(ValueError):
    """A header that cannot be acted on (too short, or longer than this side accepts)."""


@dataclass(frozen=True)
class Header:
    extension_type: int  # the full U16, channel_msg bit included
    msg_type: int
    msg_length: int

    @property
    def channel_msg(self) -> bool:
        return bool(self.extension_type & CHANNEL_MSG_BIT)

    @property
    def extension(self) -> int:
        """The extension id with the channel_msg bit masked off (0 for core messages)."""
        return self.extension_type & ~CHANNEL_MSG_BIT

    def encode(self) -> bytes:
        if not 0 <= self.extension_type <= 0xFFFF or not 0 <= self.msg_type <= 0xFF:
            raise ValueError(f"header field out of range: {self}")
        if not 0 <= self.msg_length <= MAX_MSG_LENGTH:
            raise ValueError(f"payload of {self.msg_length} bytes does not fit a U24 msg_length")
        return (
            self.extension_type.to_bytes(2, "little")
            + self.msg_type.to_bytes(1, "little")
            + self.msg_length.to_bytes(3, "little")
        )

    @classmethod
    def decode(cls, data: bytes) -> Header:
        if len(data) != HEADER_SIZE:
            raise FrameError(f"a frame header is {HEADER_SIZE} bytes, got {len(data)}")
        return cls(
            extension_type=int.from_bytes(data[0:2], "little"),
            msg_type=data[2],
            msg_length=int.from_bytes(data[3:6], "little"),
        )


def frame(msg_type: int, payload: bytes, *, channel_msg: bool = False, extension: int = 0) -> bytes:
    """The whole plaintext frame: header, then payload."""
    extension_type = extension | (CHANNEL_MSG_BIT if channel_msg else 0)
    return Header(extension_type, msg_type, len(payload)).encode() + payload


class PlainFrameBuffer:
    """Splits an unencrypted stream into ``(header, payload)`` pairs as bytes arrive.

    ``max_payload`` bounds what one frame may claim, so a peer cannot make us
    buffer 16 MiB by writing one header; a bigger claim raises :class:`FrameError`.
    """

    def __init__(self, max_payload: int = MAX_MSG_LENGTH) -> None:
        self.max_payload = max_payload
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[tuple[Header, bytes]]:
        """Frames completed by ``data``; a :class:`FrameError` carries the ones before it as ``frames_before``."""
        self._buffer += data
        frames: list[tuple[Header, bytes]] = []
        while len(self._buffer) >= HEADER_SIZE:
            header = Header.decode(bytes(self._buffer[:HEADER_SIZE]))
            if header.msg_length > self.max_payload:
                error = FrameError(
                    f"frame claims {header.msg_length} payload bytes, at most {self.max_payload} accepted"
                )
                error.frames_before = frames
                raise error
            end = HEADER_SIZE + header.msg_length
            if len(self._buffer) < end:
                break
            frames.append((header, bytes(self._buffer[HEADER_SIZE:end])))
            del self._buffer[:end]
        return frames

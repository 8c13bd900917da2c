"""Stratum V2 common and mining-protocol messages (sv2-spec 3.6, 5.3 and 8).

Each message is a dataclass whose fields are the spec's table, in order and
with the spec's names; ``encode`` writes the payload and ``decode`` reads it
back, one line per field. The class attributes say what goes in the frame
header (``MSG_TYPE``, ``CHANNEL_MSG``) and who may send it (``SENDER``), so
the session core can refuse a message arriving from the wrong side.

Targets are Python ints; hashes (``prev_hash``, ``merkle_root``, merkle path
entries) are 32 bytes in internal order, as in the block header. Where the
reference implementation and the spec tables could be read two ways we
follow the bytes ESP-Miner and the reference Rust crates put on the wire
(``tests/data/sv2/esp-miner-client-session.json`` holds one such session).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar

from stratum.v2 import codec
from stratum.v2.codec import DecodeError, Reader
from stratum.v2.framing import Header, frame

CLIENT = "client"
SERVER = "server"
EITHER = "either"

# SetupConnection.protocol
PROTOCOL_MINING = 0
PROTOCOL_JOB_DECLARATION = 1
PROTOCOL_TEMPLATE_DISTRIBUTION = 2

PROTOCOL_VERSION = 2

# SetupConnection.flags for the mining protocol (sv2-spec 5.3.1)
REQUIRES_STANDARD_JOBS = 1 << 0
REQUIRES_WORK_SELECTION = 1 << 1
REQUIRES_VERSION_ROLLING = 1 << 2
# SetupConnection.Success.flags for the mining protocol
REQUIRES_FIXED_VERSION = 1 << 0
REQUIRES_EXTENDED_CHANNELS = 1 << 1

# error codes (sv2-spec 3.5: free-form, printable ASCII); all but the version mismatch are the reference crates' own
ERR_UNSUPPORTED_FEATURE_FLAGS = "unsupported-feature-flags"
ERR_UNSUPPORTED_PROTOCOL = "unsupported-protocol"
ERR_PROTOCOL_VERSION_MISMATCH = "protocol-version-mismatch"
ERR_UNKNOWN_USER = "unknown-user"
ERR_MAX_TARGET_OUT_OF_RANGE = "max-target-out-of-range"
ERR_UNSUPPORTED_EXTRANONCE_SIZE = "unsupported-min-extranonce-size"
ERR_INVALID_CHANNEL_ID = "invalid-channel-id"
ERR_INVALID_SHARE = "invalid-share"
ERR_STALE_SHARE = "stale-share"
ERR_INVALID_JOB_ID = "invalid-job-id"
ERR_DIFFICULTY_TOO_LOW = "difficulty-too-low"
ERR_DUPLICATE_SHARE = "duplicate-share"
ERR_BAD_EXTRANONCE_SIZE = "bad-extranonce-size"


class Event:
    """Base of everything a session's ``receive_data`` returns; every decoded message is one."""


class Message(Event):
    MSG_TYPE: ClassVar[int]
    NAME: ClassVar[str]  # the spec's name, e.g. "SetupConnection.Success"
    CHANNEL_MSG: ClassVar[bool]
    SENDER: ClassVar[str]

    def encode(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def decode(cls, r: Reader) -> Message:
        raise NotImplementedError

    def to_frame(self) -> bytes:
        """Header and payload, in the clear (encryption is the session's business)."""
        return frame(self.MSG_TYPE, self.encode(), channel_msg=self.CHANNEL_MSG)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]


#: msg_type -> message class, for core (extension_type 0) messages
MESSAGES: dict[int, type[Message]] = {}

#: core message types this implementation knows but does not take (job declaration on the mining protocol)
UNSUPPORTED = {0x22: "SetCustomMiningJob", 0x23: "SetCustomMiningJob.Success", 0x24: "SetCustomMiningJob.Error"}


def _message(msg_type: int, name: str, *, channel_msg: bool, sender: str):
    def register(cls: type[Message]) -> type[Message]:
        cls.MSG_TYPE, cls.NAME, cls.CHANNEL_MSG, cls.SENDER = msg_type, name, channel_msg, sender
        MESSAGES[msg_type] = cls
        return cls

    return register


class UnknownMessageType(DecodeError):
    """A core msg_type that names no message we can decode."""


def decode_message(header: Header, payload: bytes) -> Message:
    """The message a core frame carries; raises :class:`DecodeError` (or its subclass) if it cannot be read."""
    cls = MESSAGES.get(header.msg_type)
    if cls is None:
        known = UNSUPPORTED.get(header.msg_type)
        what = f"{known} (not supported)" if known else "unknown"
        raise UnknownMessageType(f"message type 0x{header.msg_type:02x}: {what}")
    r = Reader(payload)
    try:
        message = cls.decode(r)
        r.finish()
    except DecodeError as exc:
        raise DecodeError(f"{cls.NAME}: {exc}") from exc
    return message


# --- common messages (sv2-spec 3.6) ----------------------------------------------------------------------------------


@_message(0x00, "SetupConnection", channel_msg=False, sender=CLIENT)
@dataclass
class SetupConnection(Message):
    protocol: int
    min_version: int
    max_version: int
    flags: int
    endpoint_host: str
    endpoint_port: int
    vendor: str
    hardware_version: str
    firmware: str
    device_id: str

    def encode(self) -> bytes:
        return (
            codec.u8(self.protocol)
            + codec.u16(self.min_version)
            + codec.u16(self.max_version)
            + codec.u32(self.flags)
            + codec.str0_255(self.endpoint_host)
            + codec.u16(self.endpoint_port)
            + codec.str0_255(self.vendor)
            + codec.str0_255(self.hardware_version)
            + codec.str0_255(self.firmware)
            + codec.str0_255(self.device_id)
        )

    @classmethod
    def decode(cls, r: Reader) -> SetupConnection:
        return cls(
            r.u8(),
            r.u16(),
            r.u16(),
            r.u32(),
            r.str0_255(),
            r.u16(),
            r.str0_255(),
            r.str0_255(),
            r.str0_255(),
            r.str0_255(),
        )


@_message(0x01, "SetupConnection.Success", channel_msg=False, sender=SERVER)
@dataclass
class SetupConnectionSuccess(Message):
    used_version: int
    flags: int

    def encode(self) -> bytes:
        return codec.u16(self.used_version) + codec.u32(self.flags)

    @classmethod
    def decode(cls, r: Reader) -> SetupConnectionSuccess:
        return cls(r.u16(), r.u32())


@_message(0x02, "SetupConnection.Error", channel_msg=False, sender=SERVER)
@dataclass
class SetupConnectionError(Message):
    flags: int
    error_code: str

    def encode(self) -> bytes:
        return codec.u32(self.flags) + codec.str0_255(self.error_code)

    @classmethod
    def decode(cls, r: Reader) -> SetupConnectionError:
        return cls(r.u32(), r.str0_255())


@_message(0x03, "ChannelEndpointChanged", channel_msg=True, sender=SERVER)
@dataclass
class ChannelEndpointChanged(Message):
    channel_id: int

    def encode(self) -> bytes:
        return codec.u32(self.channel_id)

    @classmethod
    def decode(cls, r: Reader) -> ChannelEndpointChanged:
        return cls(r.u32())


@_message(0x04, "Reconnect", channel_msg=False, sender=SERVER)
@dataclass
class Reconnect(Message):
    new_host: str  # empty: the present host
    new_port: int  # 0: the present port

    def encode(self) -> bytes:
        return codec.str0_255(self.new_host) + codec.u16(self.new_port)

    @classmethod
    def decode(cls, r: Reader) -> Reconnect:
        return cls(r.str0_255(), r.u16())


# --- mining protocol: channels (sv2-spec 5.3.2 - 5.3.10) -------------------------------------------------------------


@_message(0x10, "OpenStandardMiningChannel", channel_msg=False, sender=CLIENT)
@dataclass
class OpenStandardMiningChannel(Message):
    request_id: int
    user_identity: str
    nominal_hash_rate: float  # h/s
    max_target: int

    def encode(self) -> bytes:
        return (
            codec.u32(self.request_id)
            + codec.str0_255(self.user_identity)
            + codec.f32(self.nominal_hash_rate)
            + codec.u256_int(self.max_target)
        )

    @classmethod
    def decode(cls, r: Reader) -> OpenStandardMiningChannel:
        return cls(r.u32(), r.str0_255(), r.f32(), r.u256_int())


@_message(0x11, "OpenStandardMiningChannel.Success", channel_msg=False, sender=SERVER)
@dataclass
class OpenStandardMiningChannelSuccess(Message):
    request_id: int
    channel_id: int
    target: int
    extranonce_prefix: bytes
    group_channel_id: int

    def encode(self) -> bytes:
        return (
            codec.u32(self.request_id)
            + codec.u32(self.channel_id)
            + codec.u256_int(self.target)
            + codec.b0_32(self.extranonce_prefix)
            + codec.u32(self.group_channel_id)
        )

    @classmethod
    def decode(cls, r: Reader) -> OpenStandardMiningChannelSuccess:
        return cls(r.u32(), r.u32(), r.u256_int(), r.b0_32(), r.u32())


@_message(0x12, "OpenMiningChannel.Error", channel_msg=False, sender=SERVER)
@dataclass
class OpenMiningChannelError(Message):
    request_id: int
    error_code: str

    def encode(self) -> bytes:
        return codec.u32(self.request_id) + codec.str0_255(self.error_code)

    @classmethod
    def decode(cls, r: Reader) -> OpenMiningChannelError:
        return cls(r.u32(), r.str0_255())


@_message(0x13, "OpenExtendedMiningChannel", channel_msg=False, sender=CLIENT)
@dataclass
class OpenExtendedMiningChannel(Message):
    request_id: int
    user_identity: str
    nominal_hash_rate: float
    max_target: int
    min_extranonce_size: int

    def encode(self) -> bytes:
        return (
            codec.u32(self.request_id)
            + codec.str0_255(self.user_identity)
            + codec.f32(self.nominal_hash_rate)
            + codec.u256_int(self.max_target)
            + codec.u16(self.min_extranonce_size)
        )

    @classmethod
    def decode(cls, r: Reader) -> OpenExtendedMiningChannel:
        return cls(r.u32(), r.str0_255(), r.f32(), r.u256_int(), r.u16())


@_message(0x14, "OpenExtendedMiningChannel.Success", channel_msg=False, sender=SERVER)
@dataclass
class OpenExtendedMiningChannelSuccess(Message):
    request_id: int
    channel_id: int
    target: int
    extranonce_size: int
    extranonce_prefix: bytes
    group_channel_id: int

    def encode(self) -> bytes:
        return (
            codec.u32(self.request_id)
            + codec.u32(self.channel_id)
            + codec.u256_int(self.target)
            + codec.u16(self.extranonce_size)
            + codec.b0_32(self.extranonce_prefix)
            + codec.u32(self.group_channel_id)
        )

    @classmethod
    def decode(cls, r: Reader) -> OpenExtendedMiningChannelSuccess:
        return cls(r.u32(), r.u32(), r.u256_int(), r.u16(), r.b0_32(), r.u32())


@_message(0x16, "UpdateChannel", channel_msg=True, sender=CLIENT)
@dataclass
class UpdateChannel(Message):
    channel_id: int
    nominal_hash_rate: float
    maximum_target: int

    def encode(self) -> bytes:
        return codec.u32(self.channel_id) + codec.f32(self.nominal_hash_rate) + codec.u256_int(self.maximum_target)

    @classmethod
    def decode(cls, r: Reader) -> UpdateChannel:
        return cls(r.u32(), r.f32(), r.u256_int())


@_message(0x17, "UpdateChannel.Error", channel_msg=True, sender=SERVER)
@dataclass
class UpdateChannelError(Message):
    channel_id: int
    error_code: str

    def encode(self) -> bytes:
        return codec.u32(self.channel_id) + codec.str0_255(self.error_code)

    @classmethod
    def decode(cls, r: Reader) -> UpdateChannelError:
        return cls(r.u32(), r.str0_255())


@_message(0x18, "CloseChannel", channel_msg=True, sender=EITHER)
@dataclass
class CloseChannel(Message):
    channel_id: int
    reason_code: str

    def encode(self) -> bytes:
        return codec.u32(self.channel_id) + codec.str0_255(self.reason_code)

    @classmethod
    def decode(cls, r: Reader) -> CloseChannel:
        return cls(r.u32(), r.str0_255())


@_message(0x19, "SetExtranoncePrefix", channel_msg=True, sender=SERVER)
@dataclass
class SetExtranoncePrefix(Message):
    channel_id: int
    extranonce_prefix: bytes

    def encode(self) -> bytes:
        return codec.u32(self.channel_id) + codec.b0_32(self.extranonce_prefix)

    @classmethod
    def decode(cls, r: Reader) -> SetExtranoncePrefix:
        return cls(r.u32(), r.b0_32())


# --- mining protocol: shares (sv2-spec 5.3.11 - 5.3.14) --------------------------------------------------------------


@_message(0x1A, "SubmitSharesStandard", channel_msg=True, sender=CLIENT)
@dataclass
class SubmitSharesStandard(Message):
    channel_id: int
    sequence_number: int
    job_id: int
    nonce: int
    ntime: int
    version: int  # the full nVersion field

    def encode(self) -> bytes:
        return (
            codec.u32(self.channel_id)
            + codec.u32(self.sequence_number)
            + codec.u32(self.job_id)
            + codec.u32(self.nonce)
            + codec.u32(self.ntime)
            + codec.u32(self.version)
        )

    @classmethod
    def decode(cls, r: Reader) -> SubmitSharesStandard:
        return cls(r.u32(), r.u32(), r.u32(), r.u32(), r.u32(), r.u32())


@_message(0x1B, "SubmitSharesExtended", channel_msg=True, sender=CLIENT)
@dataclass
class SubmitSharesExtended(Message):
    channel_id: int
    sequence_number: int
    job_id: int
    nonce: int
    ntime: int
    version: int
    extranonce: bytes  # exactly the channel's extranonce_size bytes

    def encode(self) -> bytes:
        return (
            codec.u32(self.channel_id)
            + codec.u32(self.sequence_number)
            + codec.u32(self.job_id)
            + codec.u32(self.nonce)
            + codec.u32(self.ntime)
            + codec.u32(self.version)
            + codec.b0_32(self.extranonce)
        )

    @classmethod
    def decode(cls, r: Reader) -> SubmitSharesExtended:
        return cls(r.u32(), r.u32(), r.u32(), r.u32(), r.u32(), r.u32(), r.b0_32())


@_message(0x1C, "SubmitShares.Success", channel_msg=True, sender=SERVER)
@dataclass
class SubmitSharesSuccess(Message):
    channel_id: int
    last_sequence_number: int
    new_submits_accepted_count: int
    new_shares_sum: int  # sum of the accepted shares' difficulties (U64)

    def encode(self) -> bytes:
        return (
            codec.u32(self.channel_id)
            + codec.u32(self.last_sequence_number)
            + codec.u32(self.new_submits_accepted_count)
            + codec.u64(self.new_shares_sum)
        )

    @classmethod
    def decode(cls, r: Reader) -> SubmitSharesSuccess:
        return cls(r.u32(), r.u32(), r.u32(), r.u64())


@_message(0x1D, "SubmitShares.Error", channel_msg=True, sender=SERVER)
@dataclass
class SubmitSharesError(Message):
    channel_id: int
    sequence_number: int
    error_code: str

    def encode(self) -> bytes:
        return codec.u32(self.channel_id) + codec.u32(self.sequence_number) + codec.str0_255(self.error_code)

    @classmethod
    def decode(cls, r: Reader) -> SubmitSharesError:
        return cls(r.u32(), r.u32(), r.str0_255())


# --- mining protocol: jobs (sv2-spec 5.3.15 - 5.3.17, 5.3.21, 5.3.22) ------------------------------------------------


@_message(0x15, "NewMiningJob", channel_msg=True, sender=SERVER)
@dataclass
class NewMiningJob(Message):
    channel_id: int
    job_id: int
    min_ntime: int | None  # None: a future job, activated by a SetNewPrevHash naming it
    version: int
    merkle_root: bytes  # 32 bytes, internal order

    def encode(self) -> bytes:
        return (
            codec.u32(self.channel_id)
            + codec.u32(self.job_id)
            + codec.option_u32(self.min_ntime)
            + codec.u32(self.version)
            + codec.u256_bytes(self.merkle_root)
        )

    @classmethod
    def decode(cls, r: Reader) -> NewMiningJob:
        return cls(r.u32(), r.u32(), r.option_u32(), r.u32(), r.u256_bytes())

    @property
    def is_future(self) -> bool:
        return self.min_ntime is None


@_message(0x1F, "NewExtendedMiningJob", channel_msg=True, sender=SERVER)
@dataclass
class NewExtendedMiningJob(Message):
    channel_id: int
    job_id: int
    min_ntime: int | None
    version: int
    version_rolling_allowed: bool
    merkle_path: list[bytes]  # 32-byte hashes, deepest first, internal order
    coinbase_tx_prefix: bytes  # without BIP 141 fields (so the coinbase hashes to its txid)
    coinbase_tx_suffix: bytes

    def encode(self) -> bytes:
        return (
            codec.u32(self.channel_id)
            + codec.u32(self.job_id)
            + codec.option_u32(self.min_ntime)
            + codec.u32(self.version)
            + codec.boolean(self.version_rolling_allowed)
            + codec.seq0_255_u256(self.merkle_path)
            + codec.b0_64k(self.coinbase_tx_prefix)
            + codec.b0_64k(self.coinbase_tx_suffix)
        )

    @classmethod
    def decode(cls, r: Reader) -> NewExtendedMiningJob:
        return cls(r.u32(), r.u32(), r.option_u32(), r.u32(), r.boolean(), r.seq0_255_u256(), r.b0_64k(), r.b0_64k())

    @property
    def is_future(self) -> bool:
        return self.min_ntime is None


@_message(0x20, "SetNewPrevHash", channel_msg=True, sender=SERVER)
@dataclass
class SetNewPrevHash(Message):
    channel_id: int
    job_id: int
    prev_hash: bytes  # 32 bytes, internal order (as in the header)
    min_ntime: int
    nbits: int

    def encode(self) -> bytes:
        return (
            codec.u32(self.channel_id)
            + codec.u32(self.job_id)
            + codec.u256_bytes(self.prev_hash)
            + codec.u32(self.min_ntime)
            + codec.u32(self.nbits)
        )

    @classmethod
    def decode(cls, r: Reader) -> SetNewPrevHash:
        return cls(r.u32(), r.u32(), r.u256_bytes(), r.u32(), r.u32())


@_message(0x21, "SetTarget", channel_msg=True, sender=SERVER)
@dataclass
class SetTarget(Message):
    channel_id: int
    maximum_target: int

    def encode(self) -> bytes:
        return codec.u32(self.channel_id) + codec.u256_int(self.maximum_target)

    @classmethod
    def decode(cls, r: Reader) -> SetTarget:
        return cls(r.u32(), r.u256_int())


@_message(0x25, "SetGroupChannel", channel_msg=False, sender=SERVER)
@dataclass
class SetGroupChannel(Message):
    group_channel_id: int
    channel_ids: list[int] = field(default_factory=list)

    def encode(self) -> bytes:
        return codec.u32(self.group_channel_id) + codec.seq0_64k_u32(self.channel_ids)

    @classmethod
    def decode(cls, r: Reader) -> SetGroupChannel:
        return cls(r.u32(), r.seq0_64k_u32())

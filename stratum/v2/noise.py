"""The Stratum V2 Noise NX handshake and transport encryption (sv2-spec 4).

Protocol name ``Noise_NX_Secp256k1+EllSwift_ChaChaPoly_SHA256``: the client
(initiator) sends an ephemeral key; the pool (responder) answers with its own
ephemeral key, its static key and a *certificate* for that static key signed
by the pool's long-lived *authority* key, which the miner was given out of
band (in the URL, base58check: :func:`decode_authority_key`). Two messages::

    act 1  -> e                                64 bytes: ElligatorSwift ephemeral key
    act 2  <- e, ee, s, es, SIGNATURE_NOISE_MESSAGE
                                              234 bytes: 64 e | 64+16 sealed s | 74+16 sealed certificate

after which each side holds two :class:`CipherState` keys, one per direction
(:class:`Transport`). Every frame is then sent as its sealed six-byte header
(22 bytes) followed by its payload sealed in chunks of at most 65,519
plaintext bytes (65,535 with the MAC), each chunk with its own nonce.

Primitives: ElligatorSwift keys and BIP 324's x-only ECDH from
:mod:`stratum.v2.ellswift`; BIP 340 Schnorr through coincurve;
ChaCha20-Poly1305 (IETF, nonce = four zero bytes then the counter as a
little-endian u64) from ``cryptography``; SHA-256, HMAC and the Noise HKDF
from the standard library.

Failures raise :class:`NoiseError` subclasses with a message fit to show a
user: :class:`DecryptError` for a MAC that does not verify (a tampered or
misframed stream: the connection cannot continue), :class:`CertificateError`
for a certificate that is expired, not yet valid, of an unknown version, or
not signed by the expected authority.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from coincurve import PrivateKey, PublicKeyXOnly
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from stratum.v2 import ellswift
from stratum.v2.framing import HEADER_SIZE, MAX_MSG_LENGTH, FrameError, Header

PROTOCOL_NAME = b"Noise_NX_Secp256k1+EllSwift_ChaChaPoly_SHA256"
MAC_SIZE = 16
MAX_CIPHERTEXT = 65535
MAX_CHUNK = MAX_CIPHERTEXT - MAC_SIZE  # 65,519 plaintext bytes per sealed payload chunk
ENCRYPTED_HEADER_SIZE = HEADER_SIZE + MAC_SIZE  # 22
KEY_SIZE = ellswift.ENCODING_SIZE  # 64
CERTIFICATE_SIZE = 74
ACT1_SIZE = KEY_SIZE
ACT2_SIZE = KEY_SIZE + (KEY_SIZE + MAC_SIZE) + (CERTIFICATE_SIZE + MAC_SIZE)  # 234
CERTIFICATE_VERSION = 0
#: seconds a certificate's window is stretched each way for clock drift (the reference crate allows the same 10)
CLOCK_LEEWAY = 10
AUTHORITY_KEY_PREFIX = b"\x01\x00"  # U16 little-endian version 1


class NoiseError(Exception):
    """The handshake or the encrypted stream cannot go on."""


class DecryptError(NoiseError):
    """A MAC did not verify: the bytes were altered, or the stream is out of step."""


class CertificateError(NoiseError):
    """The pool's certificate is not acceptable."""


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hmac_hash(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def hkdf2(chaining_key: bytes, input_key_material: bytes) -> tuple[bytes, bytes]:
    """Noise's HKDF with two outputs (RFC 5869 with an empty ``info``), as sv2-spec 4.4.2 spells it out."""
    temp_key = hmac_hash(chaining_key, input_key_material)
    output1 = hmac_hash(temp_key, b"\x01")
    output2 = hmac_hash(temp_key, output1 + b"\x02")
    return output1, output2


class CipherState:
    """A key ``k`` and nonce counter ``n``; without a key it passes data through, as Noise says."""

    def __init__(self, key: bytes | None = None) -> None:
        self._aead: ChaCha20Poly1305 | None = None
        self.key: bytes | None = None  # kept so ``explain`` can show the derived keys
        self.n = 0
        if key is not None:
            self.initialize_key(key)

    @property
    def has_key(self) -> bool:
        return self._aead is not None

    def initialize_key(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)
        self.key = bytes(key)
        self.n = 0

    def _nonce(self) -> bytes:
        if self.n >= (1 << 64) - 1:  # Noise reserves 2^64-1
            raise NoiseError("nonce counter exhausted; the session must be re-established")
        return b"\x00\x00\x00\x00" + self.n.to_bytes(8, "little")

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        if self._aead is None:
            return plaintext
        ciphertext = self._aead.encrypt(self._nonce(), plaintext, ad or None)
        self.n += 1
        return ciphertext

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        """Opens one sealed message; on a bad MAC raises :class:`DecryptError` and leaves ``n`` as it was."""
        if self._aead is None:
            return ciphertext
        if len(ciphertext) < MAC_SIZE:
            raise DecryptError(f"sealed message of {len(ciphertext)} bytes is shorter than its MAC")
        try:
            plaintext = self._aead.decrypt(self._nonce(), ciphertext, ad or None)
        except InvalidTag:
            raise DecryptError(f"MAC check failed (message {self.n} of this direction)") from None
        self.n += 1
        return plaintext


class _SymmetricState:
    """``h``, ``ck`` and the handshake cipher, with Noise's MixHash / MixKey / EncryptAndHash / DecryptAndHash."""

    def __init__(self) -> None:
        self.h = _sha256(PROTOCOL_NAME)  # the name is longer than 32 bytes, so it is hashed
        self.ck = self.h
        self.h = _sha256(self.h)  # the empty prologue
        self.cipher = CipherState()

    def mix_hash(self, data: bytes) -> None:
        self.h = _sha256(self.h + data)

    def mix_key(self, input_key_material: bytes) -> None:
        self.ck, temp_k = hkdf2(self.ck, input_key_material)
        self.cipher.initialize_key(temp_k)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self.cipher.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        """(initiator-to-responder, responder-to-initiator) transport keys."""
        temp_k1, temp_k2 = hkdf2(self.ck, b"")
        return CipherState(temp_k1), CipherState(temp_k2)


# --- keys ------------------------------------------------------------------------------------------------------------

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _b58encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = ""
    while number:
        number, digit = divmod(number, 58)
        out = _B58[digit] + out
    return "1" * (len(data) - len(data.lstrip(b"\x00"))) + out


def _b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        digit = _B58.find(char)
        if digit < 0:
            raise ValueError(f"{char!r} is not a base58 character")
        number = number * 58 + digit
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return b"\x00" * (len(text) - len(text.lstrip("1"))) + body


def encode_authority_key(public_key: bytes) -> str:
    """The form pools publish (sv2-spec 4.7): base58check of ``[1, 0] || x-only key``."""
    if len(public_key) != 32:
        raise ValueError("an authority key is a 32-byte x-only public key")
    payload = AUTHORITY_KEY_PREFIX + public_key
    return _b58encode(payload + _sha256(_sha256(payload))[:4])


def decode_authority_key(text: str) -> bytes:
    """The 32-byte x-only key in a published authority key; ValueError saying what is wrong with it."""
    raw = _b58decode(text.strip())
    if len(raw) != 2 + 32 + 4:
        raise ValueError(f"authority key decodes to {len(raw)} bytes, expected 38")
    payload, checksum = raw[:-4], raw[-4:]
    if _sha256(_sha256(payload))[:4] != checksum:
        raise ValueError("authority key checksum does not match (mistyped?)")
    if payload[:2] != AUTHORITY_KEY_PREFIX:
        raise ValueError(f"authority key version {int.from_bytes(payload[:2], 'little')} is not 1")
    key = payload[2:]
    try:
        PublicKeyXOnly(key)
    except ValueError:
        raise ValueError("authority key is not a point on secp256k1") from None
    return key


def generate_secret_key() -> bytes:
    """A fresh secp256k1 secret key (uniform below the group order)."""
    return PrivateKey().secret


def x_only_public_key(secret_key: bytes) -> bytes:
    """The BIP 340 x-only public key of a secret key (what certificates and authority keys carry)."""
    return PrivateKey(secret_key).public_key.format()[1:]


def schnorr_sign(secret_key: bytes, digest: bytes, aux_rand: bytes | None = None) -> bytes:
    """A BIP 340 signature over a 32-byte digest; ``aux_rand`` (32 bytes) defaults to fresh randomness."""
    return PrivateKey(secret_key).sign_schnorr(digest, aux_rand if aux_rand is not None else b"")


def schnorr_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """BIP 340 verification; a key that is not on the curve, or a signature not 64 bytes, simply fails."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    try:
        key = PublicKeyXOnly(public_key)
    except ValueError:
        return False
    return key.verify(signature, message)


# --- certificate -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    """SIGNATURE_NOISE_MESSAGE: what the pool's authority signs about its static key (sv2-spec 4.5.2, 4.5.3)."""

    version: int
    valid_from: int  # unix time
    not_valid_after: int  # unix time
    signature: bytes  # BIP 340, 64 bytes

    def encode(self) -> bytes:
        return (
            self.version.to_bytes(2, "little")
            + self.valid_from.to_bytes(4, "little")
            + self.not_valid_after.to_bytes(4, "little")
            + self.signature
        )

    @classmethod
    def decode(cls, data: bytes) -> Certificate:
        if len(data) != CERTIFICATE_SIZE:
            raise CertificateError(f"certificate is {len(data)} bytes, expected {CERTIFICATE_SIZE}")
        return cls(
            version=int.from_bytes(data[0:2], "little"),
            valid_from=int.from_bytes(data[2:6], "little"),
            not_valid_after=int.from_bytes(data[6:10], "little"),
            signature=bytes(data[10:74]),
        )

    @staticmethod
    def signed_hash(version: int, valid_from: int, not_valid_after: int, server_key: bytes) -> bytes:
        """``m = SHA-256(version || valid_from || not_valid_after || server_public_key)``, the key x-only."""
        return _sha256(
            version.to_bytes(2, "little")
            + valid_from.to_bytes(4, "little")
            + not_valid_after.to_bytes(4, "little")
            + server_key
        )

    @classmethod
    def issue(
        cls,
        authority_secret: bytes,
        server_key: bytes,
        valid_from: int,
        not_valid_after: int,
        *,
        version: int = CERTIFICATE_VERSION,
        aux_rand: bytes | None = None,
    ) -> Certificate:
        """Sign ``server_key`` (x-only) for the window ``[valid_from, not_valid_after]``."""
        digest = cls.signed_hash(version, valid_from, not_valid_after, server_key)
        return cls(version, valid_from, not_valid_after, schnorr_sign(authority_secret, digest, aux_rand))

    def check(self, server_key: bytes, authority_key: bytes, now: float, leeway: int = CLOCK_LEEWAY) -> None:
        """Raise :class:`CertificateError` unless this certifies ``server_key`` under ``authority_key`` at ``now``."""
        if self.version != CERTIFICATE_VERSION:
            raise CertificateError(f"pool certificate has version {self.version}; only {CERTIFICATE_VERSION} is known")
        now = int(now)
        if now + leeway < self.valid_from:
            raise CertificateError(f"pool certificate is not valid until {self.valid_from} (clock says {now})")
        if now - leeway > self.not_valid_after:
            raise CertificateError(f"pool certificate expired at {self.not_valid_after} (clock says {now})")
        digest = self.signed_hash(self.version, self.valid_from, self.not_valid_after, server_key)
        if not schnorr_verify(authority_key, digest, self.signature):
            raise CertificateError("pool certificate is not signed by the expected authority key")


# --- handshake -------------------------------------------------------------------------------------------------------


class Initiator:
    """The client side of the handshake. ``act1()``, send it, then ``act2(reply, now)`` gives the transport.

    ``ephemeral_secret`` and ``aux_rand`` default to fresh randomness; passing
    them reproduces a recorded act 1 exactly. ``ephemeral_encoding`` instead
    takes a recorded act 1 as it is (for reading a capture whose aux
    randomness was not kept).
    """

    def __init__(
        self,
        authority_key: bytes,
        *,
        ephemeral_secret: bytes | None = None,
        aux_rand: bytes | None = None,
        ephemeral_encoding: bytes | None = None,
    ) -> None:
        if len(authority_key) != 32:
            raise ValueError("authority key must be 32 bytes, x-only")
        self.authority_key = bytes(authority_key)
        self._e = ephemeral_secret if ephemeral_secret is not None else generate_secret_key()
        self._aux = aux_rand
        if ephemeral_encoding is not None and ellswift.decode(ephemeral_encoding) != x_only_public_key(self._e):
            raise ValueError("ephemeral_encoding is not an encoding of ephemeral_secret's public key")
        self._given_encoding = ephemeral_encoding
        self._state = _SymmetricState()
        self._e_pub: bytes | None = None
        self.server_static_key: bytes | None = None  # 64-byte ElligatorSwift encoding
        self.server_key: bytes | None = None  # its x-only form, the one the certificate signs
        self.certificate: Certificate | None = None
        self.handshake_hash: bytes | None = None  # h after act 2 (the session's transcript hash)

    def act1(self) -> bytes:
        if self._e_pub is not None:
            raise NoiseError("act 1 was already produced")
        self._e_pub = self._given_encoding or ellswift.create(self._e, self._aux)
        self._state.mix_hash(self._e_pub)
        self._state.encrypt_and_hash(b"")  # no key yet: only MixHash of the empty payload
        return self._e_pub

    def act2(self, message: bytes, now: float) -> Transport:
        if self._e_pub is None:
            raise NoiseError("act 2 arrived before act 1 was sent")
        if len(message) != ACT2_SIZE:
            raise NoiseError(f"handshake reply is {len(message)} bytes, expected {ACT2_SIZE}")
        state = self._state
        re = message[:KEY_SIZE]
        state.mix_hash(re)
        state.mix_key(ellswift.xdh(self._e_pub, re, self._e, initiator=True))  # ee
        try:
            rs = state.decrypt_and_hash(message[KEY_SIZE : 2 * KEY_SIZE + MAC_SIZE])  # s
        except DecryptError:
            raise DecryptError("handshake: the pool's static key does not decrypt (MAC check failed)") from None
        state.mix_key(ellswift.xdh(self._e_pub, rs, self._e, initiator=True))  # es
        try:
            sealed = state.decrypt_and_hash(message[2 * KEY_SIZE + MAC_SIZE :])
        except DecryptError:
            raise DecryptError("handshake: the pool's certificate does not decrypt (MAC check failed)") from None
        certificate = Certificate.decode(sealed)
        server_key = ellswift.decode(rs)
        certificate.check(server_key, self.authority_key, now)
        self.server_static_key, self.server_key, self.certificate = rs, server_key, certificate
        self.handshake_hash = state.h
        send, receive = state.split()
        self._e = b""
        return Transport(send=send, receive=receive)


class Responder:
    """The pool side. One per connection: ``act2(act1)`` gives the reply to send and the transport.

    ``static_secret`` is the pool's static key, ``certificate`` the authority's
    signature over its x-only public key (:meth:`Certificate.issue`).
    """

    def __init__(
        self,
        static_secret: bytes,
        certificate: Certificate,
        *,
        static_encoding: bytes | None = None,
        ephemeral_secret: bytes | None = None,
        aux_rand: bytes | None = None,
    ) -> None:
        self._s = static_secret
        self._s_pub = static_encoding if static_encoding is not None else ellswift.create(static_secret)
        self.certificate = certificate
        self._e = ephemeral_secret if ephemeral_secret is not None else generate_secret_key()
        self._aux = aux_rand
        self._done = False

    def act2(self, act1: bytes) -> tuple[bytes, Transport]:
        if self._done:
            raise NoiseError("this responder already answered a handshake")
        if len(act1) != ACT1_SIZE:
            raise NoiseError(f"handshake opening is {len(act1)} bytes, expected {ACT1_SIZE}")
        self._done = True
        state = _SymmetricState()
        re = bytes(act1)
        state.mix_hash(re)
        state.decrypt_and_hash(b"")  # no key yet: only MixHash of the empty payload
        e_pub = ellswift.create(self._e, self._aux)
        state.mix_hash(e_pub)
        state.mix_key(ellswift.xdh(re, e_pub, self._e, initiator=False))  # ee
        sealed_static = state.encrypt_and_hash(self._s_pub)  # s
        state.mix_key(ellswift.xdh(re, self._s_pub, self._s, initiator=False))  # es
        sealed_certificate = state.encrypt_and_hash(self.certificate.encode())
        receive, send = state.split()
        self._e = b""
        return e_pub + sealed_static + sealed_certificate, Transport(send=send, receive=receive)


# --- transport -------------------------------------------------------------------------------------------------------


def ciphertext_length(payload_length: int) -> int:
    """Bytes a sealed payload of ``payload_length`` plaintext bytes takes (sv2-spec 4.6 ``pt_len_to_ct_len``)."""
    full, rest = divmod(payload_length, MAX_CHUNK)
    return full * MAX_CIPHERTEXT + (rest + MAC_SIZE if rest else 0)


class Transport:
    """One side's pair of transport keys: seals outgoing frames and opens incoming ones as bytes arrive.

    ``max_payload`` bounds what an incoming header may claim, checked as soon
    as the header is authentic, so a peer cannot make us buffer 16 MiB.
    """

    def __init__(self, send: CipherState, receive: CipherState, max_payload: int = MAX_MSG_LENGTH) -> None:
        self.send = send
        self.receive = receive
        self.max_payload = max_payload
        self._buffer = bytearray()
        self._header: Header | None = None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def encrypt_frame(self, frame: bytes) -> bytes:
        """A plaintext frame (six-byte header, then payload) as it goes on the wire."""
        header, payload = frame[:HEADER_SIZE], frame[HEADER_SIZE:]
        if len(header) != HEADER_SIZE or Header.decode(header).msg_length != len(payload):
            raise ValueError("frame's msg_length does not match its payload")
        out = [self.send.encrypt_with_ad(b"", header)]
        for start in range(0, len(payload), MAX_CHUNK):
            out.append(self.send.encrypt_with_ad(b"", payload[start : start + MAX_CHUNK]))
        return b"".join(out)

    def feed(self, data: bytes) -> list[tuple[Header, bytes]]:
        """Frames completed by ``data``.

        Raises :class:`DecryptError` or :class:`FrameError`, both final; the
        frames that opened before the bad one ride on the exception as
        ``frames_before``, so a caller can act on what was genuine.
        """
        self._buffer += data
        frames: list[tuple[Header, bytes]] = []
        try:
            self._open_frames(frames)
        except (NoiseError, FrameError) as exc:
            exc.frames_before = frames
            raise
        return frames

    def _open_frames(self, frames: list[tuple[Header, bytes]]) -> None:
        while True:
            if self._header is None:
                if len(self._buffer) < ENCRYPTED_HEADER_SIZE:
                    break
                header = Header.decode(self.receive.decrypt_with_ad(b"", bytes(self._buffer[:ENCRYPTED_HEADER_SIZE])))
                del self._buffer[:ENCRYPTED_HEADER_SIZE]
                if header.msg_length > self.max_payload:
                    raise FrameError(
                        f"frame claims {header.msg_length} payload bytes, at most {self.max_payload} accepted"
                    )
                self._header = header
            needed = ciphertext_length(self._header.msg_length)
            if len(self._buffer) < needed:
                break
            sealed = bytes(self._buffer[:needed])
            del self._buffer[:needed]
            payload = b"".join(
                self.receive.decrypt_with_ad(b"", sealed[start : start + MAX_CIPHERTEXT])
                for start in range(0, needed, MAX_CIPHERTEXT)
            )
            frames.append((self._header, payload))
            self._header = None

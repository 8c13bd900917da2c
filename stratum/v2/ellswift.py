"""ElligatorSwift keys and BIP 324's x-only ECDH, from libsecp256k1 through coincurve's low-level binding.

coincurve has no Python API for libsecp256k1's ellswift module, but its cffi
binding (``coincurve._libsecp256k1``) exports the C functions, so this is the
one place that calls them. That binding is not a public interface, which is
why ``pyproject.toml`` pins coincurve's version exactly; the BIP 324 vectors
in ``tests/test_sv2_ellswift.py`` say whether a different version still works.

An ElligatorSwift encoding is 64 bytes ``u || t`` that decode to a curve
point's x coordinate and look uniformly random on the wire, which is why the
Noise handshake can send public keys in the clear (sv2-spec 4.3.1.1). Every
64-byte string decodes to some valid x, so :func:`decode` cannot fail.
"""

from __future__ import annotations

import os

from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT

ENCODING_SIZE = 64
_CTX = GLOBAL_CONTEXT.ctx
_EC_COMPRESSED = 258  # SECP256K1_EC_COMPRESSED


class EllSwiftError(ValueError):
    """A secret key out of range (zero, or not below the group order), or malformed input sizes."""


def _check(name: str, value: bytes, size: int) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) != size:
        raise EllSwiftError(f"{name} must be {size} bytes")
    return bytes(value)


def create(secret_key: bytes, aux_rand: bytes | None = None) -> bytes:
    """The 64-byte ElligatorSwift encoding of ``secret_key``'s public key (``secp256k1_ellswift_create``).

    ``aux_rand`` (32 bytes) picks which of the many encodings comes out; fresh
    randomness by default. Passing it lets a recorded handshake be replayed.
    """
    secret_key = _check("secret key", secret_key, 32)
    aux = os.urandom(32) if aux_rand is None else _check("aux_rand", aux_rand, 32)
    out = ffi.new("unsigned char[64]")
    if not lib.secp256k1_ellswift_create(_CTX, out, secret_key, aux):
        raise EllSwiftError("secret key is zero or not below the group order")
    return bytes(out)


def encode(public_key: bytes, rnd32: bytes | None = None) -> bytes:
    """An ElligatorSwift encoding of a public key given in SEC form (33 or 65 bytes)."""
    pubkey = ffi.new("secp256k1_pubkey *")
    if not lib.secp256k1_ec_pubkey_parse(_CTX, pubkey, bytes(public_key), len(public_key)):
        raise EllSwiftError("not a valid public key")
    rnd = os.urandom(32) if rnd32 is None else _check("rnd32", rnd32, 32)
    out = ffi.new("unsigned char[64]")
    if not lib.secp256k1_ellswift_encode(_CTX, out, pubkey, rnd):
        raise EllSwiftError("ellswift_encode failed")
    return bytes(out)


def decode_compressed(encoding: bytes) -> bytes:
    """The public key an encoding stands for, as 33-byte compressed SEC (its y parity is arbitrary)."""
    encoding = _check("ElligatorSwift encoding", encoding, ENCODING_SIZE)
    pubkey = ffi.new("secp256k1_pubkey *")
    if not lib.secp256k1_ellswift_decode(_CTX, pubkey, encoding):
        raise EllSwiftError("ellswift_decode failed")
    out = ffi.new("unsigned char[33]")
    size = ffi.new("size_t *", 33)
    lib.secp256k1_ec_pubkey_serialize(_CTX, out, size, pubkey, _EC_COMPRESSED)
    return bytes(out)


def decode(encoding: bytes) -> bytes:
    """The 32-byte x coordinate an encoding stands for (the BIP 340 x-only key a certificate signs)."""
    return decode_compressed(encoding)[1:]


def xdh(ellswift_a: bytes, ellswift_b: bytes, secret_key: bytes, *, initiator: bool) -> bytes:
    """BIP 324's shared secret: ``SHA256_tagged("bip324_ellswift_xonly_ecdh", ell_a || ell_b || x)``.

    ``ellswift_a`` is always the initiator's encoding and ``ellswift_b`` the
    responder's, whichever side calls; ``secret_key`` belongs to the side named
    by ``initiator``. Both sides get the same 32 bytes.
    """
    ellswift_a = _check("initiator encoding", ellswift_a, ENCODING_SIZE)
    ellswift_b = _check("responder encoding", ellswift_b, ENCODING_SIZE)
    secret_key = _check("secret key", secret_key, 32)
    out = ffi.new("unsigned char[32]")
    party = 0 if initiator else 1
    hash_function = lib.secp256k1_ellswift_xdh_hash_function_bip324
    if not lib.secp256k1_ellswift_xdh(_CTX, out, ellswift_a, ellswift_b, secret_key, party, hash_function, ffi.NULL):
        raise EllSwiftError("secret key is zero or not below the group order")
    return bytes(out)

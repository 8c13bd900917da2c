"""Payout addresses -> output scripts (base58check, bech32 and bech32m).

The miner only needs the scriptPubKey a coinbase pays to, but a wrong
address means coins paid to nobody, so every checksum and length rule is
enforced and anything doubtful is refused with a one-line ValueError.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
BECH32_CONST = 1
BECH32M_CONST = 0x2BC830A3

# version byte -> (kind, networks)
BASE58_PREFIXES: dict[int, tuple[str, str]] = {
    0x00: ("p2pkh", "mainnet"),
    0x05: ("p2sh", "mainnet"),
    0x6F: ("p2pkh", "testnet/signet/regtest"),
    0xC4: ("p2sh", "testnet/signet/regtest"),
}
BECH32_HRPS: dict[str, str] = {"bc": "mainnet", "tb": "testnet/signet", "bcrt": "regtest"}


@dataclass(frozen=True)
class DecodedAddress:
    kind: str  # p2pkh, p2sh, p2wpkh, p2wsh, p2tr, or witness_vN
    network: str
    script: bytes


# --- base58check ---------------------------------------------------------------


def b58decode(text: str) -> bytes:
    value = 0
    for ch in text:
        digit = B58_ALPHABET.find(ch)
        if digit < 0:
            raise ValueError(f"invalid base58 character {ch!r}")
        value = value * 58 + digit
    body = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    leading = len(text) - len(text.lstrip("1"))
    return b"\x00" * leading + body


def b58encode(data: bytes) -> str:
    value = int.from_bytes(data, "big")
    out = ""
    while value:
        value, digit = divmod(value, 58)
        out = B58_ALPHABET[digit] + out
    leading = len(data) - len(data.lstrip(b"\x00"))
    return "1" * leading + out


def _checksum(payload: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]


def b58check_encode(version: int, payload: bytes) -> str:
    data = bytes([version]) + payload
    return b58encode(data + _checksum(data))


def b58check_decode(text: str) -> tuple[int, bytes]:
    raw = b58decode(text)
    if len(raw) < 5:
        raise ValueError("base58 address too short")
    data, check = raw[:-4], raw[-4:]
    if _checksum(data) != check:
        raise ValueError("base58 checksum mismatch")
    return data[0], data[1:]


# --- bech32 / bech32m (BIP 173, BIP 350) ------------------------------------------


def _polymod(values: list[int]) -> int:
    generator = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            chk ^= generator[i] if (top >> i) & 1 else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convertbits(data: list[int] | bytes, frombits: int, tobits: int, pad: bool) -> list[int]:
    acc = bits = 0
    out: list[int] = []
    maxv = (1 << tobits) - 1
    for value in data:
        if value < 0 or value >> frombits:
            raise ValueError("invalid data value")
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (tobits - bits)) & maxv)
    elif bits >= frombits or (acc << (tobits - bits)) & maxv:
        raise ValueError("invalid padding in bech32 data")
    return out


def bech32_decode(text: str) -> tuple[str, list[int], int]:
    """(hrp, data without checksum, checksum constant) of a bech32/bech32m string."""
    if any(ord(c) < 33 or ord(c) > 126 for c in text):
        raise ValueError("bech32 address has invalid characters")
    if text.lower() != text and text.upper() != text:
        raise ValueError("bech32 address mixes upper and lower case")
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1 or pos + 7 > len(text) or len(text) > 90:
        raise ValueError("bech32 address has a bad separator position or length")
    hrp = text[:pos]
    try:
        data = [BECH32_CHARSET.index(c) for c in text[pos + 1 :]]
    except ValueError:
        raise ValueError("bech32 address has a character outside the bech32 alphabet") from None
    const = _polymod(_hrp_expand(hrp) + data)
    if const not in (BECH32_CONST, BECH32M_CONST):
        raise ValueError("bech32 checksum mismatch")
    return hrp, data[:-6], const


def bech32_encode(hrp: str, data: list[int], const: int) -> str:
    values = _hrp_expand(hrp) + data
    polymod = _polymod(values + [0] * 6) ^ const
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(BECH32_CHARSET[d] for d in data + checksum)


def segwit_encode(hrp: str, witness_version: int, program: bytes) -> str:
    const = BECH32_CONST if witness_version == 0 else BECH32M_CONST
    return bech32_encode(hrp, [witness_version] + _convertbits(program, 8, 5, True), const)


def segwit_decode(text: str) -> tuple[str, int, bytes]:
    hrp, data, const = bech32_decode(text)
    if not data:
        raise ValueError("bech32 address has no witness version")
    version = data[0]
    if version > 16:
        raise ValueError(f"witness version {version} does not exist")
    program = bytes(_convertbits(data[1:], 5, 8, False))
    if not 2 <= len(program) <= 40:
        raise ValueError(f"witness program of {len(program)} bytes (must be 2..40)")
    if version == 0 and len(program) not in (20, 32):
        raise ValueError("a version 0 witness program is 20 or 32 bytes")
    if version == 0 and const != BECH32_CONST:
        raise ValueError("a version 0 witness address must use bech32, not bech32m")
    if version != 0 and const != BECH32M_CONST:
        raise ValueError(f"a version {version} witness address must use bech32m (BIP 350), not bech32")
    return hrp, version, program


# --- scripts ----------------------------------------------------------------------


def p2pkh_script(pubkey_hash: bytes) -> bytes:
    return b"\x76\xa9\x14" + pubkey_hash + b"\x88\xac"


def p2sh_script(script_hash: bytes) -> bytes:
    return b"\xa9\x14" + script_hash + b"\x87"


def witness_script(version: int, program: bytes) -> bytes:
    op = 0x00 if version == 0 else 0x50 + version
    return bytes([op, len(program)]) + program


def decode_address(address: str) -> DecodedAddress:
    """Identify the address, its network and its output script; ValueError otherwise."""
    text = address.strip()
    if not text:
        raise ValueError("empty address")
    lowered = text.lower()
    hrp = lowered[: lowered.rfind("1")] if "1" in lowered else ""
    if hrp in BECH32_HRPS:
        try:
            hrp, version, program = segwit_decode(text)
        except ValueError as exc:
            raise ValueError(f"invalid address {text!r}: {exc}") from None
        if version == 0:
            kind = "p2wpkh" if len(program) == 20 else "p2wsh"
        elif version == 1 and len(program) == 32:
            kind = "p2tr"
        else:
            kind = f"witness_v{version}"
        return DecodedAddress(kind, BECH32_HRPS[hrp], witness_script(version, program))
    try:
        version, payload = b58check_decode(text)
    except ValueError as exc:
        raise ValueError(
            f"unrecognised address {text!r}: not bech32 (bc1/tb1/bcrt1) and not base58check ({exc})"
        ) from None
    if version not in BASE58_PREFIXES:
        raise ValueError(f"unrecognised address {text!r}: unknown base58 version byte 0x{version:02x}")
    if len(payload) != 20:
        raise ValueError(f"invalid address {text!r}: base58 payload is {len(payload)} bytes, expected 20")
    kind, network = BASE58_PREFIXES[version]
    script = p2pkh_script(payload) if kind == "p2pkh" else p2sh_script(payload)
    return DecodedAddress(kind, network, script)


def address_to_script(address: str) -> bytes:
    """The scriptPubKey an address pays to (P2PKH, P2SH, P2WPKH, P2WSH, P2TR)."""
    return decode_address(address).script

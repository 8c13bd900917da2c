"""SHA-256 as FIPS 180-4 writes it: the teaching copy and the test oracle.

Slow on purpose: every step is a named line you can follow by hand. The fast
kernels compute exactly this, just many nonces at once.
"""

from __future__ import annotations

from collections.abc import Callable

MASK32 = 0xFFFFFFFF

# FIPS 180-4 section 4.2.2: the first 32 bits of the fractional parts of the
# cube roots of the first 64 primes.
K = (
    0x428A2F98, 0x71374491, 0xB5C0FBCF, 0xE9B5DBA5, 0x3956C25B, 0x59F111F1, 0x923F82A4, 0xAB1C5ED5,
    0xD807AA98, 0x12835B01, 0x243185BE, 0x550C7DC3, 0x72BE5D74, 0x80DEB1FE, 0x9BDC06A7, 0xC19BF174,
    0xE49B69C1, 0xEFBE4786, 0x0FC19DC6, 0x240CA1CC, 0x2DE92C6F, 0x4A7484AA, 0x5CB0A9DC, 0x76F988DA,
    0x983E5152, 0xA831C66D, 0xB00327C8, 0xBF597FC7, 0xC6E00BF3, 0xD5A79147, 0x06CA6351, 0x14292967,
    0x27B70A85, 0x2E1B2138, 0x4D2C6DFC, 0x53380D13, 0x650A7354, 0x766A0ABB, 0x81C2C92E, 0x92722C85,
    0xA2BFE8A1, 0xA81A664B, 0xC24B8B70, 0xC76C51A3, 0xD192E819, 0xD6990624, 0xF40E3585, 0x106AA070,
    0x19A4C116, 0x1E376C08, 0x2748774C, 0x34B0BCB5, 0x391C0CB3, 0x4ED8AA4A, 0x5B9CCA4F, 0x682E6FF3,
    0x748F82EE, 0x78A5636F, 0x84C87814, 0x8CC70208, 0x90BEFFFA, 0xA4506CEB, 0xBEF9A3F7, 0xC67178F2,
)  # fmt: skip

# Section 5.3.3: the first 32 bits of the fractional parts of the square
# roots of the first 8 primes.
H0 = (0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19)


# Section 3.2 and 4.1.2: the operations, on 32-bit words.
def rotr(x: int, n: int) -> int:
    """Rotate right: the bits that fall off the low end come back on top."""
    return ((x >> n) | (x << (32 - n))) & MASK32


def ch(x: int, y: int, z: int) -> int:
    """'Choose': where x has a 1 take y's bit, else z's."""
    return (x & y) ^ (~x & z)


def maj(x: int, y: int, z: int) -> int:
    """'Majority': each bit is whatever at least two of x, y, z say."""
    return (x & y) ^ (x & z) ^ (y & z)


def big_sigma0(x: int) -> int:
    return rotr(x, 2) ^ rotr(x, 13) ^ rotr(x, 22)


def big_sigma1(x: int) -> int:
    return rotr(x, 6) ^ rotr(x, 11) ^ rotr(x, 25)


def small_sigma0(x: int) -> int:
    return rotr(x, 7) ^ rotr(x, 18) ^ (x >> 3)


def small_sigma1(x: int) -> int:
    return rotr(x, 17) ^ rotr(x, 19) ^ (x >> 10)


def pad(message: bytes) -> bytes:
    """Section 5.1.1: append a 1 bit, zeros, then the bit length (64-bit big-endian)."""
    bit_length = len(message) * 8
    padded = message + b"\x80"
    padded += b"\x00" * ((56 - len(padded)) % 64)
    return padded + bit_length.to_bytes(8, "big")


def block_words(block: bytes) -> list[int]:
    """Section 5.2.1: a 64-byte block read as sixteen big-endian 32-bit words."""
    return [int.from_bytes(block[4 * t : 4 * t + 4], "big") for t in range(16)]


def message_schedule(block: bytes) -> list[int]:
    """Section 6.2.2 step 1: expand 16 words to the 64 the rounds consume."""
    w = block_words(block)
    for t in range(16, 64):
        w.append((small_sigma1(w[t - 2]) + w[t - 7] + small_sigma0(w[t - 15]) + w[t - 16]) & MASK32)
    return w


Trace = Callable[[int, int, tuple[int, ...]], None]


def compress(state: tuple[int, ...], block: bytes, trace: Trace | None = None) -> tuple[int, ...]:
    """Section 6.2.2: fold one 64-byte block into the eight-word state.

    ``trace(t, w_t, (a, ..., h))`` is called after each round t, so a class
    can follow one hash by hand.
    """
    w = message_schedule(block)
    a, b, c, d, e, f, g, h = state
    for t in range(64):
        t1 = (h + big_sigma1(e) + ch(e, f, g) + K[t] + w[t]) & MASK32
        t2 = (big_sigma0(a) + maj(a, b, c)) & MASK32
        h, g, f = g, f, e
        e = (d + t1) & MASK32
        d, c, b = c, b, a
        a = (t1 + t2) & MASK32
        if trace is not None:
            trace(t, w[t], (a, b, c, d, e, f, g, h))
    # Step 4: add the compressed chunk to the running state (Davies-Meyer).
    return tuple((s + v) & MASK32 for s, v in zip(state, (a, b, c, d, e, f, g, h), strict=True))


def state_to_bytes(state: tuple[int, ...]) -> bytes:
    """The digest: the eight state words, each written big-endian."""
    return b"".join(word.to_bytes(4, "big") for word in state)


def sha256(message: bytes, trace: Trace | None = None) -> bytes:
    state = H0
    padded = pad(message)
    for offset in range(0, len(padded), 64):
        state = compress(state, padded[offset : offset + 64], trace)
    return state_to_bytes(state)


def sha256d(message: bytes) -> bytes:
    """Bitcoin hashes twice, so that the result resists length extension."""
    return sha256(sha256(message))


def midstate(first_64_bytes: bytes) -> tuple[int, ...]:
    """The state after the first block of a header: the nonce is in the
    second block, so this is computed once per work unit, not per nonce."""
    if len(first_64_bytes) != 64:
        raise ValueError("midstate needs exactly 64 bytes")
    return compress(H0, first_64_bytes)

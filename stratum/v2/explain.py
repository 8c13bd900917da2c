"""Walk a recorded Stratum V2 session step by step: the handshake acts, the derived keys, every frame.

A capture is JSON in the shape of ``tests/data/sv2/esp-miner-client-session.json``:

- ``wire``: ``[direction, hex]`` in order, ``c2s`` or ``s2c``; act 1, act 2, then encrypted frames;
- the client's ephemeral secret, as ``client_ephemeral_secret`` (hex) or as the second of
  ``c_client_random_draws`` (ESP-Miner's order: context seed, ephemeral secret, ElligatorSwift aux);
- the pool's authority key, as ``authority_key`` (base58check) or ``authority_priv`` (hex, test keys);
- ``captured_at``: the Unix time the certificate is checked at.

With the client's ephemeral secret every key of the session can be re-derived, so each frame is shown
decrypted: its sealed size, its six-byte header and its fields. A standard channel's job is then put
together into the same 80-byte header V1 would hash. :func:`walk` returns the lines; printing them
is the caller's business (``miner explain sv2 CAPTURE``).
"""

from __future__ import annotations

from typing import Any

from stratum.v2 import ellswift, jobs
from stratum.v2 import messages as m
from stratum.v2.codec import DecodeError
from stratum.v2.framing import Header
from stratum.v2.noise import (
    ACT1_SIZE,
    ACT2_SIZE,
    MAC_SIZE,
    CipherState,
    Initiator,
    NoiseError,
    Transport,
    decode_authority_key,
    x_only_public_key,
)


class CaptureError(ValueError):
    """The capture lacks what a walk needs, or its bytes do not check out."""


def _secret(capture: dict) -> bytes:
    if "client_ephemeral_secret" in capture:
        return bytes.fromhex(capture["client_ephemeral_secret"])
    draws = capture.get("c_client_random_draws") or []
    if len(draws) >= 2:
        return bytes.fromhex(draws[1])
    raise CaptureError("the capture has no client_ephemeral_secret (nor c_client_random_draws), so it cannot be read")


def _authority(capture: dict) -> bytes:
    if "authority_key" in capture:
        return decode_authority_key(capture["authority_key"])
    if "authority_priv" in capture:
        return x_only_public_key(bytes.fromhex(capture["authority_priv"]))
    raise CaptureError("the capture names no authority_key, so the pool's certificate cannot be checked")


def _aux(capture: dict) -> bytes | None:
    draws = capture.get("c_client_random_draws") or []
    return bytes.fromhex(draws[2]) if len(draws) >= 3 else None


def _fields(message: m.Message) -> list[str]:
    out = []
    for name, value in message.as_dict().items():
        if isinstance(value, bytes):
            shown = value.hex() if value else "(empty)"
        elif isinstance(value, list):
            shown = "[" + ", ".join(v.hex() if isinstance(v, bytes) else str(v) for v in value) + "]"
        elif isinstance(value, int) and name in ("target", "max_target", "maximum_target"):
            shown = f"0x{value:064x}"
        elif isinstance(value, int) and name in ("version", "nbits", "flags"):
            shown = f"0x{value:08x}"
        else:
            shown = repr(value)
        out.append(f"      {name} = {shown}")
    return out


def walk(capture: dict[str, Any]) -> list[str]:
    """The session, explained line by line. Raises :class:`CaptureError` on a capture it cannot read."""
    wire = [(direction, bytes.fromhex(data)) for direction, data in capture.get("wire", [])]
    if len(wire) < 2 or wire[0][0] != "c2s" or wire[1][0] != "s2c":
        raise CaptureError("the capture's wire must start with act 1 (c2s) and act 2 (s2c)")
    act1, act2 = wire[0][1], wire[1][1]
    if (len(act1), len(act2)) != (ACT1_SIZE, ACT2_SIZE):
        raise CaptureError(f"acts are {len(act1)} and {len(act2)} bytes, expected {ACT1_SIZE} and {ACT2_SIZE}")
    now = capture.get("captured_at")
    if now is None:
        raise CaptureError("the capture has no captured_at, so the certificate's window cannot be checked")
    secret, authority = _secret(capture), _authority(capture)
    lines = ["Noise_NX_Secp256k1+EllSwift_ChaChaPoly_SHA256 handshake", ""]

    try:
        initiator = Initiator(authority, ephemeral_secret=secret, ephemeral_encoding=act1)
    except ValueError:
        raise CaptureError("act 1 is not the client's ephemeral key: the secret in the capture is not its") from None
    initiator.act1()
    aux = _aux(capture)
    if aux is None:
        recomputed = "matches the client's secret (its aux randomness is not in the capture)"
    elif ellswift.create(secret, aux) == act1:
        recomputed = "recomputed from the client's secret and aux randomness: identical"
    else:
        recomputed = "encodes the client's key, but not with the aux randomness in the capture"
    lines += [
        "act 1  client -> pool  64 bytes: the client's ephemeral key, ElligatorSwift-encoded (u || t)",
        f"      u = {act1[:32].hex()}",
        f"      t = {act1[32:].hex()}",
        f"      decodes to x = {ellswift.decode(act1).hex()}",
        f"      {recomputed}",
    ]
    try:
        transport = initiator.act2(act2, now)
    except NoiseError as exc:
        raise CaptureError(f"act 2 does not check out: {exc}") from None
    cert = initiator.certificate
    lines += [
        "",
        "act 2  pool -> client  234 bytes: e, ee, s, es, certificate",
        f"      pool ephemeral key (plain, 64)      {act2[:64].hex()[:32]}...",
        "      ee: MixKey(ECDH(client e, pool e))",
        f"      pool static key (sealed, 64+{MAC_SIZE})     decrypts to x = {initiator.server_key.hex()}",
        "      es: MixKey(ECDH(client e, pool s))",
        f"      certificate (sealed, 74+{MAC_SIZE})        version {cert.version}, "
        f"valid {cert.valid_from} .. {cert.not_valid_after}",
        f"      signature {cert.signature.hex()[:32]}... verifies under authority key {authority.hex()}",
        f"      at captured_at = {now}: inside the window",
        "",
        "transport keys: HKDF(ck, empty) -> (client-to-pool, pool-to-client)",
        f"      client -> pool  k = {transport.send.key.hex()}",
        f"      pool -> client  k = {transport.receive.key.hex()}",
        f"      handshake hash h = {initiator.handshake_hash.hex()}",
        "      each frame: header sealed alone (6+16 = 22 bytes), then the payload in chunks of <= 65,519 bytes,",
        "      every seal with the next nonce (4 zero bytes, then the counter as a little-endian u64)",
    ]

    readers = {
        "c2s": Transport(send=CipherState(), receive=CipherState(transport.send.key)),
        "s2c": Transport(send=CipherState(), receive=CipherState(transport.receive.key)),
    }
    state: dict[str, Any] = {}
    for index, (direction, data) in enumerate(wire[2:], start=2):
        arrow = "client -> pool" if direction == "c2s" else "pool -> client"
        reader = readers.get(direction)
        if reader is None:
            raise CaptureError(f"wire entry {index} has direction {direction!r}")
        try:
            frames = reader.feed(data)
        except NoiseError as exc:
            raise CaptureError(f"wire entry {index}: {exc}") from None
        for header, payload in frames:
            lines += ["", f"frame  {arrow}  {len(data)} bytes on the wire"] + _describe(header, payload, state)
    return lines


def _describe(header: Header, payload: bytes, state: dict) -> list[str]:
    lines = [
        f"      header: extension_type 0x{header.extension_type:04x} (channel_msg {int(header.channel_msg)}), "
        f"msg_type 0x{header.msg_type:02x}, msg_length {header.msg_length}",
    ]
    try:
        message = m.decode_message(header, payload)
    except DecodeError as exc:
        return [*lines, f"      does not decode: {exc}"]
    lines.append(f"      {message.NAME}")
    lines += _fields(message)
    if isinstance(message, m.SetNewPrevHash):
        state["prev"] = message
    elif isinstance(message, m.NewMiningJob):
        state.setdefault("jobs", {})[message.job_id] = message
    elif isinstance(message, m.SubmitSharesStandard):
        job = state.get("jobs", {}).get(message.job_id)
        if job is not None:
            lines += _header_lines(job, message, state.get("prev"))
    return lines


def _header_lines(job: m.NewMiningJob, share: m.SubmitSharesStandard, prev: m.SetNewPrevHash | None) -> list[str]:
    lines = ["      the 80-byte header this share stands for (the same layout V1 hashes):"]
    lines.append(f"        version     {share.version.to_bytes(4, 'little').hex()}   (share's, little-endian)")
    if prev is None:
        lines.append("        prev_hash   (from SetNewPrevHash, none in this capture)")
    else:
        lines.append(f"        prev_hash   {prev.prev_hash.hex()}")
    lines += [
        f"        merkle_root {job.merkle_root.hex()}   (NewMiningJob {job.job_id}, internal order)",
        f"        ntime       {share.ntime.to_bytes(4, 'little').hex()}   ({share.ntime})",
    ]
    if prev is not None:
        header = jobs.header_le(share.version, prev.prev_hash, job.merkle_root, share.ntime, prev.nbits, share.nonce)
        lines += [
            f"        nbits       {prev.nbits.to_bytes(4, 'little').hex()}",
            f"        nonce       {share.nonce.to_bytes(4, 'little').hex()}",
            f"        = {header.hex()}",
            f"        hash (display order) {jobs.sha256d(header)[::-1].hex()}",
        ]
    else:
        lines += [
            "        nbits       (from SetNewPrevHash, none in this capture)",
            f"        nonce       {share.nonce.to_bytes(4, 'little').hex()}   ({share.nonce})",
        ]
    return lines

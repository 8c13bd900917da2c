"""Stratum V2: binary frames, the mining-protocol messages, and the Noise NX session that carries them.

``codec`` (field types), ``framing`` (the six-byte header), ``messages`` (one
dataclass per message), ``ellswift`` (the libsecp256k1 ElligatorSwift calls),
``noise`` (handshake, certificate, transport encryption), ``protocol`` (the
sans-I/O session for both roles), ``jobs`` (a job to its 80-byte header) and
``explain`` (a recorded session walked step by step) do no I/O, like
``stratum/protocol.py`` for V1. ``server`` (asyncio) and ``client`` (a
thread) put them on sockets.

Unlike the V1 side this needs two libraries: ``coincurve`` (libsecp256k1) for
ElligatorSwift, the x-only ECDH and BIP 340, and ``cryptography`` for
ChaCha20-Poly1305. Nothing outside ``stratum.v2`` imports it, so V1 alone
still runs on the standard library.
"""

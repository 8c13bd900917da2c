"""The ElligatorSwift wrapper against BIP 324's published vectors (copies under tests/data/sv2/bip324)."""

import csv
import json
from pathlib import Path

import pytest
from coincurve import PrivateKey, PublicKey

from stratum.v2 import ellswift

DATA = Path(__file__).resolve().parent / "data" / "sv2"


def _rows(name: str) -> list[dict]:
    with open(DATA / "bip324" / name, newline="") as f:
        return list(csv.DictReader(f))


DECODE = _rows("ellswift_decode_test_vectors.csv")
INVERSE = _rows("xswiftec_inv_test_vectors.csv")
ECDH = _rows("packet_encoding_ecdh_columns.csv")


def test_the_vector_files_are_all_there():
    assert (len(DECODE), len(INVERSE), len(ECDH)) == (76, 32, 7)


@pytest.mark.parametrize("row", DECODE, ids=lambda r: r["comment"][:40])
def test_bip324_ellswift_decode_vectors(row):
    assert ellswift.decode(bytes.fromhex(row["ellswift"])).hex() == row["x"]


def test_bip324_xswiftec_inverse_vectors_decode_back_to_their_x():
    """Each listed t is a preimage: u || t must decode to x (the forward map the inverse was checked against)."""
    checked = 0
    for row in INVERSE:
        for case in range(8):
            t = row[f"case{case}_t"]
            if t:
                assert ellswift.decode(bytes.fromhex(row["u"] + t)).hex() == row["x"], (row["comment"], case)
                checked += 1
    assert checked == 98


@pytest.mark.parametrize("row", ECDH, ids=lambda r: r["in_idx"])
def test_bip324_packet_encoding_ellswift_ecdh_vectors(row):
    priv = bytes.fromhex(row["in_priv_ours"])
    ours, theirs = bytes.fromhex(row["in_ellswift_ours"]), bytes.fromhex(row["in_ellswift_theirs"])
    initiating = row["in_initiating"] == "1"
    assert ellswift.decode(ours).hex() == row["mid_x_ours"]
    assert PrivateKey(priv).public_key.format()[1:].hex() == row["mid_x_ours"]
    assert ellswift.decode(theirs).hex() == row["mid_x_theirs"]
    unhashed = PublicKey(ellswift.decode_compressed(theirs)).multiply(priv).format()[1:]
    assert unhashed.hex() == row["mid_x_shared"]
    a, b = (ours, theirs) if initiating else (theirs, ours)
    assert ellswift.xdh(a, b, priv, initiator=initiating).hex() == row["mid_shared_secret"]


def test_both_sides_of_an_exchange_agree_and_roles_matter():
    sk_a, sk_b = bytes(31) + b"\x01", bytes(31) + b"\x02"
    ell_a, ell_b = ellswift.create(sk_a), ellswift.create(sk_b)
    shared = ellswift.xdh(ell_a, ell_b, sk_a, initiator=True)
    assert ellswift.xdh(ell_a, ell_b, sk_b, initiator=False) == shared
    assert ellswift.xdh(ell_b, ell_a, sk_a, initiator=False) != shared


def test_create_replays_esp_miners_act_1_from_its_random_draws():
    session = json.loads((DATA / "esp-miner-client-session.json").read_text())
    _seed, secret, aux = (bytes.fromhex(d) for d in session["c_client_random_draws"])
    assert ellswift.create(secret, aux).hex() == session["wire"][0][1]


def test_create_and_encode_give_encodings_of_the_right_key_and_differ_with_the_randomness():
    secret = bytes.fromhex("8aa75b95a5921bab289fd436f63e6f669cd2e101210302c163ef1c38d73c6952")
    public = PrivateKey(secret).public_key
    one, two = ellswift.create(secret, b"\x01" * 32), ellswift.create(secret, b"\x02" * 32)
    assert one != two
    assert ellswift.decode(one) == ellswift.decode(two) == public.format()[1:]
    assert ellswift.decode(ellswift.encode(public.format(), b"\x03" * 32)) == public.format()[1:]
    assert ellswift.decode(ellswift.encode(public.format(compressed=False))) == public.format()[1:]


def test_bad_secret_keys_and_sizes_raise_a_value_error():
    order = bytes.fromhex("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141")
    with pytest.raises(ellswift.EllSwiftError):
        ellswift.create(bytes(32))
    with pytest.raises(ellswift.EllSwiftError):
        ellswift.create(order)
    with pytest.raises(ellswift.EllSwiftError):
        ellswift.xdh(bytes(64), bytes(64), order, initiator=True)
    with pytest.raises(ellswift.EllSwiftError):
        ellswift.decode(bytes(63))
    with pytest.raises(ellswift.EllSwiftError):
        ellswift.encode(b"\x02" + bytes(32))
    assert issubclass(ellswift.EllSwiftError, ValueError)

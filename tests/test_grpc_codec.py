"""The Exchange wire codec: chunking, protobuf compatibility, zero-copy receive and malformed input."""
from __future__ import annotations

import numpy as np
import pytest

from cipherome.mpc.grpc_transport import (
    Assembler,
    MalformedMessage,
    _Bad,
    data_header,
    decode_chunk,
    encode_chunk,
    message_chunks,
)
from cipherome.proto import cipherome_pb2 as pb

ARRAYS = [
    np.arange(10, dtype=np.uint64),
    np.array(7, dtype=np.int64),  # 0-d
    np.zeros((0, 3), dtype=np.float64),  # empty
    np.array([True, False, True]),
    np.random.default_rng(0).integers(0, 2**63, (33, 17), dtype=np.uint64),
    np.frombuffer(b"sixteen byte seed", dtype=np.uint8)[:16],
    np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4),
]


def roundtrip(arr, chunk_bytes):
    asm, got = Assembler(1 << 30), None
    chunks = list(message_chunks("tag/1", arr, chunk_bytes))
    for raw in chunks:
        hdr, data = decode_chunk(bytes(raw))
        out = asm.feed(hdr, data)
        if out is not None:
            got = out
    return chunks, got


@pytest.mark.parametrize("chunk_bytes", [7, 64, 1 << 20])
@pytest.mark.parametrize("i", range(len(ARRAYS)))
def test_roundtrip_keeps_dtype_shape_values(i, chunk_bytes):
    arr = ARRAYS[i]
    chunks, (tag, got) = roundtrip(arr, chunk_bytes)
    assert tag == "tag/1" and got.dtype == arr.dtype and got.shape == arr.shape
    np.testing.assert_array_equal(got, arr)
    assert not got.flags.writeable
    assert len(chunks) == max(1, -(-arr.nbytes // chunk_bytes))


def test_single_chunk_is_zero_copy_and_aligned():
    arr = np.arange(1000, dtype=np.uint64)
    raw = next(message_chunks("t", arr))
    hdr, data = decode_chunk(raw)
    _, got = Assembler(1 << 30).feed(hdr, data)
    assert got.ctypes.data % 8 == 0
    assert got.base is not None  # a view of the received bytes, not a copy


def test_wire_is_plain_protobuf():
    arr = np.arange(100, dtype=np.uint64)
    raw = next(message_chunks("t", arr))
    msg = pb.Chunk.FromString(raw)
    assert msg.data == arr.tobytes() and list(msg.shape) == [100] and msg.dtype == "<u8"
    # and bytes from a standard protobuf encoder decode too (data not last, no padding)
    std = pb.Chunk(kind=pb.Chunk.DATA, tag="t", dtype="<u8", shape=[100], nbytes=800, index=0, total=1,
                   data=arr.tobytes()).SerializeToString()
    hdr, data = decode_chunk(std)
    _, got = Assembler(1 << 30).feed(hdr, data)
    np.testing.assert_array_equal(got, arr)


def test_garbage_is_reported_not_raised():
    assert isinstance(decode_chunk(b"\xff\xff\xff\xff\x0f"), _Bad)
    assert isinstance(decode_chunk(b"\x7a\x10abc"), _Bad)  # truncated data field


def _hdr(**kw):
    base = dict(kind=pb.Chunk.DATA, tag="t", dtype="<u8", shape=[2], nbytes=16, index=0, total=1)
    base.update(kw)
    return pb.Chunk(**base)


@pytest.mark.parametrize("hdr,data,match", [
    (_hdr(dtype="|O"), bytes(16), "not allowed"),
    (_hdr(dtype=">u8"), bytes(16), "not allowed"),
    (_hdr(shape=[3]), bytes(16), "does not match"),
    (_hdr(shape=[-2], nbytes=0), b"", "invalid shape"),
    (_hdr(), bytes(24), "longer than"),
    (_hdr(), bytes(8), "has 8 of 16 bytes"),
    (_hdr(index=1, total=2), bytes(8), "without its first chunk"),
    (_hdr(total=0), bytes(16), "invalid chunk count"),
    (_hdr(tag=""), bytes(16), "empty tag"),
])
def test_malformed_chunks(hdr, data, match):
    with pytest.raises(MalformedMessage, match=match):
        Assembler(1 << 30).feed(hdr, memoryview(data))


def test_limit_checked_before_allocation():
    with pytest.raises(MalformedMessage, match="exceeds the limit"):
        Assembler(1 << 20).feed(_hdr(shape=[1 << 40], nbytes=8 << 40, total=1 << 20), memoryview(bytes(8)))


def test_out_of_order_and_interleaved():
    arr = np.arange(16, dtype=np.uint64)
    chunks = [decode_chunk(c) for c in message_chunks("a", arr, 32)]
    asm = Assembler(1 << 30)
    asm.feed(*chunks[0])
    with pytest.raises(MalformedMessage, match="out of order"):
        asm.feed(*chunks[2])
    asm = Assembler(1 << 30)
    asm.feed(*chunks[0])
    other = decode_chunk(next(message_chunks("b", arr, 32)))
    with pytest.raises(MalformedMessage, match="interrupted"):
        asm.feed(*other)


def test_control_chunks_have_no_payload():
    raw = encode_chunk(pb.Chunk(kind=pb.Chunk.ABORT, reason="x"))
    hdr, data = decode_chunk(raw)
    assert hdr.kind == pb.Chunk.ABORT and hdr.reason == "x" and len(data) == 0


def test_job_results_codec_keeps_arrays_and_string_lists():
    """Numeric arrays come back with dtype and shape; string arrays as lists (marked, not visited per string)."""
    from cipherome.mpc import results as rc

    doc = {"p": np.array([0.5, np.nan, 1e-300]), "n": np.arange(6, dtype=np.int32).reshape(2, 3),
           "ids": np.array(["rs1", "1:5:A:C", ""], dtype=object), "mixed": np.array(["a", 1], dtype=object),
           "x": [np.float32(1.5), {"k": np.array(["A", "B"])}]}
    raw = rc.encode(doc)
    assert b'"__strings__": ["rs1", "1:5:A:C", ""]' in raw
    back = rc.decode(raw)
    np.testing.assert_array_equal(back["p"], doc["p"])
    assert back["n"].dtype == np.int32 and back["n"].shape == (2, 3)
    assert back["ids"] == ["rs1", "1:5:A:C", ""] and back["mixed"] == ["a", 1]
    assert back["x"] == [1.5, {"k": ["A", "B"]}]


_HEADERS = [
    dict(kind=pb.Chunk.DATA, tag="t", dtype="<u8", shape=[100], nbytes=800, index=0, total=1),
    dict(kind=pb.Chunk.DATA, tag="assoc/open/3.relay", index=7, total=9),
    dict(kind=pb.Chunk.DATA, tag="é/ü", dtype="|u1", shape=[0, 3, 1 << 40], nbytes=0, index=0, total=1),
    dict(kind=pb.Chunk.DATA, tag="neg", dtype="<i8", shape=[-2, 5], nbytes=(1 << 64) - 1, index=(1 << 32) - 1,
         total=(1 << 32) - 1),
    dict(kind=pb.Chunk.HELLO, job_id="j" * 40, sender="p1", study="s", tag="digest"),
    dict(kind=pb.Chunk.ABORT, reason="x" * 300, tag='{"p0": "d"}'),
    dict(kind=pb.Chunk.DONE),
    dict(kind=7),  # an unknown kind survives decoding (the handler refuses it)
    dict(kind=-1),  # an enum is an int32: ten bytes on the wire, read back negative
]


@pytest.mark.parametrize("fields", _HEADERS)
def test_hand_codec_is_protobuf_byte_for_byte(fields):
    """``data_header`` writes what protobuf writes, and ``decode_chunk`` reads every field as protobuf
    reads it, from our frames and from a standard encoder's (data not last, no padding)."""
    msg = pb.Chunk(**fields)
    names = ("kind", "job_id", "sender", "study", "tag", "dtype", "shape", "nbytes", "index", "total", "reason")
    if fields.get("kind", 0) == pb.Chunk.DATA:
        keys = {k: fields[k] for k in ("tag", "index", "total", "dtype", "shape", "nbytes") if k in fields}
        assert data_header(**keys) == msg.SerializeToString()
    payload = bytes(range(37))
    for raw in (encode_chunk(msg, payload), pb.Chunk(**fields, data=payload).SerializeToString()):
        hdr, data = decode_chunk(raw)
        assert bytes(data) == payload
        parsed = pb.Chunk.FromString(raw)
        for name in names:
            want = getattr(parsed, name)
            assert getattr(hdr, name) == (tuple(want) if name == "shape" else want), name


def test_hand_decoder_reads_unpacked_repeats_and_unknown_fields():
    """protobuf accepts ``shape`` unpacked too, lets a later scalar replace an earlier one and skips unknown
    fields of every wire type; so does ``decode_chunk``."""
    raw = (b"\x38\x03" b"\x38\x04"  # shape 3, 4 unpacked (field 7, varint)
           b"\x48\x01" b"\x48\x02"  # index 1, then 2
           b"\xa0\x01\x05" b"\xa9\x01" + bytes(8) + b"\xb2\x01\x02ab" + b"\xbd\x01" + bytes(4)  # fields 20-23
           + b"\x2a\x01t")  # tag "t"
    hdr, data = decode_chunk(raw)
    parsed = pb.Chunk.FromString(raw)
    assert hdr.shape == tuple(parsed.shape) == (3, 4) and hdr.index == parsed.index == 2 and hdr.tag == "t"
    assert len(data) == 0


@pytest.mark.parametrize("raw", [
    b"\x2a\x02\xff\xfe",  # a tag that is not UTF-8
    b"\x3a\x03\x80\x80\x80",  # a packed shape whose last varint is cut
    b"\x2a\x05ab",  # a string longer than the message
    b"\x0b",  # wire type 3 (groups)
])
def test_hand_decoder_refuses_what_protobuf_refuses(raw):
    with pytest.raises(Exception):
        pb.Chunk.FromString(raw)
    assert isinstance(decode_chunk(raw), _Bad)


def test_the_data_path_builds_no_protobuf_message(monkeypatch):
    """Encoding a multi-chunk message and decoding its chunks never constructs or parses a ``pb.Chunk``."""
    calls = []

    class Spy:
        DATA, HELLO, DONE, ABORT = pb.Chunk.DATA, pb.Chunk.HELLO, pb.Chunk.DONE, pb.Chunk.ABORT

        def __init__(self, *a, **k):
            calls.append("new")

        @staticmethod
        def FromString(raw):
            calls.append("parse")

    import cipherome.mpc.grpc_transport as gt

    monkeypatch.setattr(gt.pb, "Chunk", Spy)
    arr = np.arange(1000, dtype=np.uint64)
    asm, got = Assembler(1 << 30), None
    for raw in message_chunks("m", arr, 1024):
        got = asm.feed(*decode_chunk(raw)) or got
    assert calls == [] and got[0] == "m"
    np.testing.assert_array_equal(got[1], arr)

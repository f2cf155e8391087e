"""Coverage-guided fuzzing (atheris, if installed) of the wire decoder and message assembler a daemon runs
on every Exchange chunk: ``decode_chunk`` and ``Assembler.feed``.

Not collected by pytest (the daemon-level fuzzing with hypothesis is tests/test_fuzz_daemon.py). Run:
    pip install atheris && python tests/fuzz_wire_atheris.py -runs=200000
The input is cut into chunks by one-byte lengths; each chunk is decoded and fed to one assembler. Any
exception other than ``MalformedMessage`` (and an undecodable chunk reported as such) is a finding.
"""
import sys

import atheris

with atheris.instrument_imports():
    from cipherome.mpc.grpc_transport import Assembler, MalformedMessage, decode_chunk
    from cipherome.proto import cipherome_pb2 as pb

RUNS = [0]


def one_input(data: bytes) -> None:
    RUNS[0] += 1
    asm = Assembler(1 << 20)
    pos = 0
    while pos < len(data):
        n = data[pos]
        raw = data[pos + 1:pos + 1 + n]
        pos += 1 + n
        got = decode_chunk(raw)
        if not isinstance(got, tuple):
            continue  # undecodable: the handler answers INVALID_ARGUMENT
        hdr, payload = got
        if hdr.kind != pb.Chunk.DATA:
            continue
        try:
            asm.feed(hdr, payload)
        except MalformedMessage:
            return


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    try:
        atheris.Fuzz()
    finally:
        print(f"inputs tried: {RUNS[0]}", file=sys.stderr)

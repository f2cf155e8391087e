"""The emulated WAN relay (``mpc.wan``) against its floor, on real daemons and on a plain socket.

A relay is trusted for the GWAS benchmarks only if a plain exchange through it
costs what the link says: a ping-pong one RTT, a bulk message RTT + bytes /
bandwidth (the strict floor), and never less.
"""
import socket
import threading
import time

import pytest

from cipherome.mpc.launcher import LocalCluster
from cipherome.mpc.wan import WanRelay, WanSpec, parse_wan


def test_parse_wan():
    assert parse_wan("50ms,1gbit") == WanSpec(0.05, 1e9 / 8)
    assert parse_wan("20ms, 100mbit") == WanSpec(0.02, 100e6 / 8)
    assert parse_wan("5ms") == WanSpec(0.005, float("inf"))
    assert parse_wan(None) is None and parse_wan("loopback") is None
    for bad in ("50", "fast", "50ms,1gb", "50ms,0mbit", "1ms,2mbit,3"):
        with pytest.raises(ValueError, match="WAN"):
            parse_wan(bad)
    spec = parse_wan("50ms,100mbit")
    assert spec.floor(10, 12.5e6) == pytest.approx(10 * 0.05 + 1.0)
    assert spec.strict_floor(10, 12.5e6) == pytest.approx(10 * 0.025 + 1.0)


def _echo_server():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve():
        conn, _ = srv.accept()
        with conn:
            while True:
                data = conn.recv(1 << 16)
                if not data:
                    return
                if data.endswith(b"!"):  # end of a message: answer with one byte
                    conn.sendall(b".")

    threading.Thread(target=serve, daemon=True).start()
    return srv


def test_relay_socket_floor():
    """Through the relay alone: 1-byte ping-pongs cost one RTT, 2 MB costs RTT + 2 MB / bandwidth."""
    spec = parse_wan("30ms,100mbit")
    srv = _echo_server()
    relay = WanRelay(spec)
    try:
        port = relay.add(srv.getsockname()[1])
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"!")
            s.recv(1)  # connection set up
            t0 = time.perf_counter()
            for _ in range(5):
                s.sendall(b"!")
                assert s.recv(1) == b"."
            rtt = (time.perf_counter() - t0) / 5
            payload = b"x" * (2 << 20) + b"!"
            t0 = time.perf_counter()
            s.sendall(payload)
            assert s.recv(1) == b"."
            bulk = time.perf_counter() - t0
    finally:
        relay.close()
        srv.close()
    # never faster than the link; the upper bounds leave room for a loaded 2-core machine
    # (unloaded: within 5 %; docs/wan.md has the figures)
    assert spec.rtt <= rtt < spec.rtt * 2 + 0.03
    floor = spec.strict_floor(2, len(payload))
    assert floor <= bulk < floor * 2 + 0.05


def test_relay_daemons_floor():
    """Real TLS daemons behind relays: bench.rtt and a 4 MB bench.exchange against the link's floor."""
    spec = parse_wan("30ms,200mbit")
    with LocalCluster(2, log_level="WARNING", wan=spec) as cluster:
        assert all(a != f"127.0.0.1:{cluster.ports[n]}" for n, a in cluster.addresses.items())
        rtt = cluster.run("bench.rtt", {"size": 5}).results[0]
        size = 4 << 20
        cluster.run("bench.exchange", {"size": size})  # warm: gRPC's BDP probe has grown the window
        ex = cluster.run("bench.exchange", {"size": size}).results[0]
    assert ex["ok"]
    assert spec.rtt <= rtt["seconds"] < spec.rtt * 2 + 0.03
    floor = spec.strict_floor(2, size)
    assert floor <= ex["seconds"] < floor * 2 + 0.05


def test_bench_cli_wan_flag():
    """``cipherome bench --wan``: a clear error for a bad link or a transport without daemons."""
    from click.testing import CliRunner

    from cipherome.cli.bench import bench

    runner = CliRunner()
    bad = runner.invoke(bench, ["--transport", "grpc", "--wan", "fast", "--op", "rtt"])
    assert bad.exit_code != 0 and "RTT[,BANDWIDTH]" in bad.output and "Traceback" not in bad.output
    inproc = runner.invoke(bench, ["--transport", "inproc", "--wan", "50ms,1gbit", "--op", "mul"])
    assert inproc.exit_code != 0 and "needs --transport grpc" in inproc.output


def test_relay_back_pressure_order_and_end_of_stream():
    """A receiver that does not read stops the sender (the relay holds a bounded amount);
    once it reads, every byte arrives in order and the sender's close arrives as end of stream."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    relay = WanRelay(parse_wan("10ms,1gbit"))
    try:
        port = relay.add(srv.getsockname()[1])
        snd = socket.create_connection(("127.0.0.1", port))
        rcv, _ = srv.accept()
        snd.setblocking(False)
        pattern = bytes(range(256)) * 4096  # 1 MiB
        sent = 0
        stalled_since = None
        while sent < (256 << 20):
            try:
                sent += snd.send(memoryview(pattern)[sent % len(pattern):])
                stalled_since = None
            except BlockingIOError:
                stalled_since = stalled_since or time.perf_counter()
                if time.perf_counter() - stalled_since > 1.0:
                    break
                time.sleep(0.01)
        # held by the relay (bandwidth-delay product + 4 MiB queue) plus the kernel's socket buffers
        assert sent < (64 << 20)
        snd.setblocking(True)
        got = bytearray()
        done = threading.Event()

        def finish_sending():
            snd.sendall(b"end")
            snd.shutdown(socket.SHUT_WR)
            done.set()

        threading.Thread(target=finish_sending, daemon=True).start()
        while True:
            data = rcv.recv(1 << 20)
            if not data:
                break
            got += data
        assert done.wait(5)
        want = (pattern * (sent // len(pattern) + 1))[:sent] + b"end"
        assert len(got) == len(want) and got == want
        rcv.close()
        snd.close()
        deadline = time.perf_counter() + 5
        while relay._conns and time.perf_counter() < deadline:  # both ends closed: the relay lets go too
            time.sleep(0.05)
        assert not relay._conns
    finally:
        relay.close()
        srv.close()


def test_relay_target_down_closes_the_client():
    """A relay whose daemon is not listening closes the client's connection (no hang)."""
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port_down = free.getsockname()[1]
    free.close()
    relay = WanRelay(parse_wan("10ms"))
    try:
        with socket.create_connection(("127.0.0.1", relay.add(port_down))) as s:
            s.settimeout(5)
            assert s.recv(1) == b""
    finally:
        relay.close()

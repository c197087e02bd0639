"""multiprocessing.Pipe, 256 MiB from a child to the parent.

usage: python3 pipe_bench.py duplex|simplex [MiB]

duplex: multiprocessing.Pipe(duplex=True), a Unix socketpair; simplex:
multiprocessing.Pipe(duplex=False), a pipe (os.pipe()).

The child builds the payload and says it is ready, then waits for the
parent's go signal; the parent times from that signal until recv_bytes()
returns. Prints the seconds, then exits 0 if the bytes arrived intact
(checked after the clock stops).
"""
import hashlib
import multiprocessing as mp
import sys
import time


def child(conn, go, n):
    data = bytes(bytearray(range(251)) * (n // 251 + 1))[:n]
    digest = hashlib.sha256(data).digest()
    conn.send_bytes(b"ready")
    go.recv_bytes()
    conn.send_bytes(data)
    conn.send_bytes(digest)


def main():
    if len(sys.argv) not in (2, 3) or sys.argv[1] not in ("duplex", "simplex"):
        print("usage: python3 pipe_bench.py duplex|simplex [MiB]", file=sys.stderr)
        sys.exit(2)
    duplex = sys.argv[1] == "duplex"
    n = int(sys.argv[2] if len(sys.argv) > 2 else 256) << 20
    mp.set_start_method("fork")
    recv_end, send_end = mp.Pipe(duplex=duplex)
    go_recv, go_send = mp.Pipe(duplex=False)
    p = mp.Process(target=child, args=(send_end, go_recv, n))
    p.start()
    assert recv_end.recv_bytes() == b"ready"  # the payload is built
    t0 = time.perf_counter()
    go_send.send_bytes(b"go")
    data = recv_end.recv_bytes()
    elapsed = time.perf_counter() - t0
    digest = recv_end.recv_bytes()
    p.join()
    print("%.4f" % elapsed)
    sys.exit(0 if len(data) == n and hashlib.sha256(data).digest() == digest else 1)


if __name__ == "__main__":
    main()

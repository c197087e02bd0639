"""asyncio over a Unix socket: one 256 MiB message from a client process to
a server process.

usage: python3 asyncio_bench.py [MiB]

The server (this process) listens on a Unix socket in a temporary
directory and starts the client (this script again, `--client PATH MiB`:
another process, which inherits LD_PRELOAD), which builds the payload and
its SHA-256, connects and waits for the server's go byte. Then the client
writes an 8-byte length and the payload (asyncio's StreamWriter, a
nonblocking socket written from the event loop), then the digest; the
server readexactly()s the length and the payload (StreamReader, reads
from the event loop on a nonblocking socket). The server times from its go
byte until readexactly() returned the whole payload, and checks the bytes
after the clock. Prints the seconds, then exits 0 if the bytes arrived
intact and the client exited 0. A run that hangs dies after 120 s.
"""
import asyncio
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

DEADLINE = 120


def payload(n):
    return bytes(bytearray(range(251)) * (n // 251 + 1))[:n]


async def client(path, n):
    data = payload(n)
    digest = hashlib.sha256(data).digest()
    reader, writer = await asyncio.open_unix_connection(path)
    if await reader.readexactly(1) != b"g":
        sys.exit("no go byte")
    writer.write(len(data).to_bytes(8, "big"))
    writer.write(data)
    writer.write(digest)
    del data
    await writer.drain()
    if await reader.read(1) != b"":  # the server closes when it has it all
        sys.exit("bytes from the server")
    writer.close()
    await writer.wait_closed()


async def server(n):
    loop = asyncio.get_running_loop()
    received = loop.create_future()

    async def handle(reader, writer):
        try:
            t0 = time.perf_counter()
            writer.write(b"g")
            await writer.drain()
            size = int.from_bytes(await reader.readexactly(8), "big")
            data = await reader.readexactly(size)
            elapsed = time.perf_counter() - t0
            digest = await reader.readexactly(32)
            writer.close()
            await writer.wait_closed()
            received.set_result((elapsed, size, data, digest))
        except Exception as e:  # the run fails with it
            received.set_exception(e)

    tmp = tempfile.mkdtemp(prefix="asyncio-bench-")
    try:
        path = os.path.join(tmp, "s.sock")
        srv = await asyncio.start_unix_server(handle, path)
        child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--client", path, str(n)])
        exited = loop.run_in_executor(None, child.wait)
        async with srv:
            await asyncio.wait([received, exited], return_when=asyncio.FIRST_COMPLETED)
            if not received.done():
                sys.exit(f"the client exited with {exited.result()} before the transfer ended")
            elapsed, size, data, digest = received.result()
        rc = await exited
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if rc != 0:
        sys.exit(f"the client exited with {rc}")
    if size != n or len(data) != n or hashlib.sha256(data).digest() != digest or data != payload(n):
        sys.exit(f"the payload arrived different ({len(data)} bytes of {n})")
    print("%.4f" % elapsed)


def main():
    signal.alarm(DEADLINE)
    if len(sys.argv) == 4 and sys.argv[1] == "--client":
        asyncio.run(client(sys.argv[2], int(sys.argv[3])))
    elif len(sys.argv) in (1, 2):
        asyncio.run(server(int(sys.argv[1] if len(sys.argv) > 1 else 256) << 20))
    else:
        print("usage: python3 asyncio_bench.py [MiB]", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

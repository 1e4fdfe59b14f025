"""A dependency-free web app for the benchmarks: asyncio, HTTP/1.1 keep-alive, one fixed body.

Answers every request with "tiny <MARK>" (MARK from the file MARK, else "v0"), so a benchmark can
tell releases apart, and costs as little CPU per request as a Python server can.
"""
import asyncio
import os

MARK = "v0"
if os.path.exists("MARK"):
    with open("MARK") as fh:
        MARK = fh.read().strip()
BODY = f"tiny {MARK}".encode()
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
    + str(len(BODY)).encode()
    + b"\r\n\r\n"
    + BODY
)


async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            writer.write(RESPONSE)
            if b"\r\nconnection: close" in head.lower():
                break
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main():
    port = int(os.environ["PORT"])
    server = await asyncio.start_server(handle, "0.0.0.0", port)
    print(f"tiny {MARK} listening on {os.environ['PORT']}", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())

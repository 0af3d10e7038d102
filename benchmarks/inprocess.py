"""Running the server inside a benchmark process, on a loopback port, in its own thread."""
from __future__ import annotations

import asyncio
import threading

from server.app import AsrServer, ServerOptions
from server.decoder_pool import DecoderPool


def start_server(models, decoder_threads: int = 2) -> str:
    """Serve ``models`` (either profile) on a free loopback port; return its ``ws://`` URL.

    The server lives until the process ends (benchmarks exit when done).
    """
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder = {}

    def serve() -> None:
        asyncio.set_event_loop(loop)
        server = AsrServer(models, DecoderPool(decoder_threads), ServerOptions(host="127.0.0.1", port=0))
        loop.run_until_complete(server.start())
        holder["port"] = server.port
        started.set()
        loop.run_forever()

    threading.Thread(target=serve, daemon=True).start()
    if not started.wait(60):
        raise RuntimeError("the server did not start")
    return f"ws://127.0.0.1:{holder['port']}"

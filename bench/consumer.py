"""Event-lag consumer, a process of its own: `python -m bench.consumer URL EXCHANGE QUEUE`.

Binds a durable queue to the exchange with `user.new`, consumes without acks and, for
each message, records the arrival time against the event's CloudEvents `time` (which
the service stamps just before the commit that precedes the 201, so the lag it gives
is slightly longer than the lag from the 201 itself). Messages are grouped by the
run prefix that starts each e-mail's local part (`PREFIX-...@example.com`).

Commands on stdin, one JSON answer per line on stdout:
  `stats PREFIX`  -> {"distinct": n, "messages": m}
  `report PREFIX` -> the same plus lag percentiles (ms) and a digest of the event ids
  `quit`          -> delete the queue and the exchange, and exit
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

import aiormq
import orjson


@dataclass
class Window:
    ids: set[str] = field(default_factory=set)
    messages: int = 0
    lags: list[float] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


async def main(url: str, exchange: str, queue: str) -> None:
    windows: dict[str, Window] = defaultdict(Window)
    bad = 0

    async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
        nonlocal bad
        arrived = time.time()
        try:
            event = orjson.loads(message.body)
            prefix = event["data"]["email"].split("-", 1)[0]
            sent = datetime.fromisoformat(event["time"]).timestamp()
        except Exception:
            bad += 1
            return
        window = windows[prefix]
        window.messages += 1
        if event["id"] not in window.ids:
            window.ids.add(event["id"])
            window.lags.append((arrived - sent) * 1000)

    connection = await aiormq.connect(url)
    channel = await connection.channel()
    await channel.exchange_declare(exchange, exchange_type="topic", durable=True)
    await channel.queue_declare(queue, durable=True)
    await channel.queue_bind(queue, exchange, routing_key="user.new")
    await channel.basic_consume(queue, on_message, no_ack=True)
    print(orjson.dumps({"ready": True}).decode(), flush=True)

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().strip()
        if not line or line == "quit":
            break
        command, _, prefix = line.partition(" ")
        window = windows[prefix]
        answer: dict[str, object] = {
            "prefix": prefix,
            "distinct": len(window.ids),
            "messages": window.messages,
            "bad": bad,
        }
        if command == "report":
            answer["lag_ms"] = {
                "p50": percentile(window.lags, 50),
                "p99": percentile(window.lags, 99),
                "max": max(window.lags, default=float("nan")),
            }
            answer["ids_sha256"] = hashlib.sha256(
                "\n".join(sorted(window.ids)).encode()
            ).hexdigest()
        print(orjson.dumps(answer).decode(), flush=True)
    await channel.queue_delete(queue)
    await channel.exchange_delete(exchange)  # unique to this benchmark run
    await connection.close()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(*sys.argv[1:4]))

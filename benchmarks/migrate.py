"""Time `apply --migrate` of 100,000 persistent 1 KiB messages (classic -> quorum) on each path, next to a
dynamic shovel created by hand through the management API moving the same messages between two queues.

Run: .venv/bin/python benchmarks/migrate.py [COUNT]   (uses the shared broker on 127.0.0.1, a throwaway vhost)
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import pika

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.test_migrate import CLASSIC, QUORUM

API = "http://127.0.0.1:15672/api"
AUTH = ("guest", "guest")
BODY = b"x" * 1024


def publish(url: str, exchange: str, key: str, count: int) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.tx_select()          # a commit every 1000 messages: as safe as confirms, and fast from Python
    for i in range(count):
        channel.basic_publish(exchange, key, BODY, pika.BasicProperties(delivery_mode=2, headers={"i": i}))
        if i % 1000 == 999:
            channel.tx_commit()
    channel.tx_commit()
    connection.close()


def ready(url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


def vhost() -> tuple[str, str]:
    name = f"mqspec-bench-migrate-{uuid.uuid4().hex[:8]}"
    httpx.put(f"{API}/vhosts/{name}", auth=AUTH).raise_for_status()
    httpx.put(f"{API}/permissions/{name}/guest", auth=AUTH, json={"configure": ".*", "write": ".*", "read": ".*"})
    return name, f"amqp://guest:guest@127.0.0.1:5672/{name}"


def mqspec_migrate(via: str, count: int, folder: Path) -> float:
    name, url = vhost()
    try:
        (folder / "c.yaml").write_text(CLASSIC)
        (folder / "q.yaml").write_text(QUORUM)
        cli = [sys.executable, "-m", "mqspec.cli", "--url", url, "apply", "--topology-only"]
        subprocess.run([*cli, str(folder / "c.yaml")], check=True, capture_output=True)
        publish(url, "orders", "order.new", count)
        started = time.monotonic()
        done = subprocess.run([*cli, str(folder / "q.yaml"), "--migrate", "--migrate-via", via], capture_output=True, text=True)
        seconds = time.monotonic() - started
        assert done.returncode == 0, done.stdout + done.stderr
        assert ready(url, "orders.q") == count
        print(next(line for line in done.stdout.splitlines() if line.startswith("migrated")))
        return seconds
    finally:
        httpx.delete(f"{API}/vhosts/{name}", auth=AUTH)


def hand_shovel(count: int) -> float:
    """One shovel, classic queue to quorum queue, until the source is empty."""
    name, url = vhost()
    try:
        httpx.put(f"{API}/queues/{name}/src", auth=AUTH, json={"durable": True}).raise_for_status()
        httpx.put(f"{API}/queues/{name}/dst", auth=AUTH, json={"durable": True, "arguments": {"x-queue-type": "quorum"}})
        publish(url, "", "src", count)
        started = time.monotonic()
        uri = f"amqp:///{name}"
        httpx.put(f"{API}/parameters/shovel/{name}/bench", auth=AUTH, json={"value": {
            "src-protocol": "amqp091", "src-uri": uri, "src-queue": "src", "dest-protocol": "amqp091",
            "dest-uri": uri, "dest-queue": "dst", "src-delete-after": "queue-length", "ack-mode": "on-confirm"}}).raise_for_status()
        while httpx.get(f"{API}/parameters/shovel/{name}/bench", auth=AUTH).status_code != 404:
            time.sleep(0.05)
        seconds = time.monotonic() - started
        assert ready(url, "dst") == count
        return seconds
    finally:
        httpx.delete(f"{API}/vhosts/{name}", auth=AUTH)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as folder:
        rows = [("hand-run shovel, one way (src -> dst)", hand_shovel(count)),
                ("mqspec apply --migrate via shovel (out and back)", mqspec_migrate("shovel", count, Path(folder))),
                ("mqspec apply --migrate via relay (out and back)", mqspec_migrate("relay", count, Path(folder)))]
    for label, seconds in rows:
        print(f"{label:<52} {seconds:6.1f} s  {count / seconds:8.0f} msg/s")


if __name__ == "__main__":
    main()

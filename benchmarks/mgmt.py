"""Tiny RabbitMQ management HTTP API helper shared by the benchmark runners."""

from __future__ import annotations

import os
import platform
import secrets
from typing import Any
from urllib.parse import quote

import httpx
import pika

DEFAULT_MGMT = "http://127.0.0.1:15672"
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672"


def q(name: str) -> str:
    """Percent-encode one path segment (vhost, queue) for the HTTP API."""
    return quote(name, safe="")


class Management:
    def __init__(self, base: str = DEFAULT_MGMT, user: str = "guest",
                 password: str = "guest") -> None:
        self.user = user
        self.http = httpx.Client(base_url=base, auth=(user, password),
                                 timeout=120.0)

    def get(self, path: str) -> Any:
        resp = self.http.get(path)
        resp.raise_for_status()
        return resp.json()

    def put(self, path: str, body: dict[str, Any]) -> None:
        self.http.put(path, json=body).raise_for_status()

    def post(self, path: str, body: dict[str, Any]) -> None:
        self.http.post(path, json=body).raise_for_status()

    def delete(self, path: str) -> None:
        resp = self.http.delete(path)
        if resp.status_code != 404:
            resp.raise_for_status()

    def create_vhost(self, prefix: str, exact: bool = False) -> str:
        """Create a fresh vhost (``prefix-<random>``, or exactly ``prefix``)
        that the configured user may fully use."""
        name = prefix if exact else f"{prefix}-{secrets.token_hex(3)}"
        self.put(f"/api/vhosts/{q(name)}", {})
        self.put(f"/api/permissions/{q(name)}/{q(self.user)}",
                 {"configure": ".*", "write": ".*", "read": ".*"})
        return name

    def delete_vhost(self, name: str) -> None:
        self.delete(f"/api/vhosts/{q(name)}")

    def create_queue(self, vhost: str, queue: str) -> None:
        self.put(f"/api/queues/{q(vhost)}/{q(queue)}",
                 {"durable": False, "auto_delete": False})

    def delete_queue(self, vhost: str, queue: str) -> None:
        self.delete(f"/api/queues/{q(vhost)}/{q(queue)}")


def amqp_url(base: str, vhost: str) -> str:
    return f"{base.rstrip('/')}/{q(vhost)}"


def machine(mgmt: Management) -> dict[str, Any]:
    """Describe the machine and broker the numbers were taken on."""
    overview = mgmt.get("/api/overview")
    return {
        "nproc": os.cpu_count(),
        "rabbitmq": overview.get("rabbitmq_version")
        or overview.get("product_version"),
        "erlang": overview.get("erlang_version"),
        "python": platform.python_version(),
        "pika": pika.__version__,
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def connect(base: str, user: str, password: str) -> tuple[Management, dict[str, Any]]:
    """Management client plus machine description; exit cleanly if unreachable."""
    mgmt = Management(base, user, password)
    try:
        return mgmt, machine(mgmt)
    except httpx.HTTPError as exc:
        raise SystemExit(f"RabbitMQ management API at {base} unavailable: {exc}") from None


def describe(info: dict[str, Any]) -> str:
    return (f"Machine: {info['nproc']} CPUs, RabbitMQ {info['rabbitmq']} "
            f"(Erlang {info['erlang']}), Python {info['python']}, "
            f"pika {info['pika']}, load average at start "
            f"{info['loadavg_1m']}.")

"""The pure core: model, loading, validation, planning, routing, accounting and expectations.

Nothing here imports pika, httpx, sockets, subprocess or threads; `make lint` checks it.
"""

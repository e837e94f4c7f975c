"""Values past what the broker carries are refused at their own place, with exit 2 and no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import mqspec

RANGE_HINT = "(hint: check the unit, or write a smaller value)"


def _validate(tmp_path: Path, text: str) -> tuple[int, str]:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    result = mqspec("validate", str(path))
    return result.exit_code, result.output.replace(str(path), "s.yaml")


@pytest.mark.parametrize(("value", "shown"), [
    ("1.0e+308", "1.0e+308"),
    ('"' + "9" * 400 + 's"', "9" * 59 + "…"),
    ("876001h", "876001h"),
])
def test_a_duration_too_long_to_mean_anything_is_refused_at_its_line(tmp_path: Path, value: str, shown: str) -> None:
    code, output = _validate(tmp_path, f"version: 1\nname: t\ntopology:\n  queues:\n    - name: q\n      message_ttl: {value}\n")
    assert (code, output) == (2, f"s.yaml:6:7: $.topology.queues[0].message_ttl: {shown} is a duration longer than 100 years "
                                 f"{RANGE_HINT}\n")


def test_a_heartbeat_past_sixteen_bits_is_refused_at_its_line(tmp_path: Path) -> None:
    code, output = _validate(tmp_path, "version: 1\nname: t\nbroker:\n  heartbeat: 65536\n")
    assert (code, output) == (2, "s.yaml:4:3: $.broker.heartbeat: 65536 is a duration longer than 65535 seconds "
                                 f"(AMQP carries the heartbeat in 16 bits) {RANGE_HINT}\n")


def test_the_largest_heartbeat_is_valid(tmp_path: Path) -> None:
    code, output = _validate(tmp_path, "version: 1\nname: t\nbroker:\n  heartbeat: 65535\n")
    assert (code, output) == (0, "s.yaml: valid\n")


def test_a_message_size_above_the_brokers_limit_is_refused_at_its_line(tmp_path: Path) -> None:
    code, output = _validate(tmp_path, "version: 1\nname: t\ntopology:\n  queues: [{name: q, max_length: 1}]\nworkload:\n"
                                       "  producers:\n    - {name: p, queue: q, messages: 1, size: 100GB}\n"
                                       "  consumers:\n    - {name: c, queue: q}\n")
    assert (code, output) == (2, "s.yaml:7:40: $.workload.producers[0].size: 100GB is a size larger than 128 MiB, the largest "
                                 f"message RabbitMQ 3.x accepts (max_message_size) {RANGE_HINT}\n")


def test_a_rate_past_a_billion_per_second_is_refused(tmp_path: Path) -> None:
    code, output = _validate(tmp_path, "version: 1\nname: t\ntopology:\n  queues: [{name: q, max_length: 1}]\nworkload:\n"
                                       "  producers:\n    - {name: p, queue: q, messages: 1, rate: 1.0e+300}\n")
    assert (code, output) == (2, "s.yaml:7:40: $.workload.producers[0].rate: 1.0e+300 is a rate faster than 1,000,000,000/s "
                                 f"{RANGE_HINT}\n")

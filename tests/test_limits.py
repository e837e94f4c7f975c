"""Values past what the broker carries are refused at their own place, with exit 2 and no traceback."""

from __future__ import annotations

import os
import time
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


def test_one_long_string_aliased_a_hundred_times_is_refused_by_its_expanded_size(tmp_path: Path) -> None:
    big = "x" * (7 * 2**20)
    code, output = _validate(tmp_path, f'version: 1\nname: t\nx-big: &big "{big}"\nx-list: [' + ", ".join(["*big"] * 100) + "]\n")
    assert (code, output) == (2, "s.yaml:4:58: $: document expands to more than 64 MiB of text (alias bomb?) "
                                 "(hint: use fewer aliases of long values, or a smaller file)\n")


def test_a_huge_value_is_quoted_shortened_in_messages(tmp_path: Path) -> None:
    name = "n" * 2**20
    code, output = _validate(tmp_path, f"version: 1\nname: t\ntopology:\n  bindings:\n    - {{exchange: {name}, queue: q}}\n")
    assert code == 2
    assert output.splitlines()[0] == (f"s.yaml:5:8: $.topology.bindings[0].exchange: binding source exchange '{'n' * 59}…' is not "
                                      "declared (hint: declare it under topology.exchanges, or mark it `external: true` there "
                                      "if it exists already)")
    assert len(output) < 2000


def test_past_twenty_problems_of_one_shape_one_line_counts_the_rest(tmp_path: Path) -> None:
    bindings = "".join(f"    - {{exchange: e, queue: missing{i}}}\n" for i in range(30))
    code, output = _validate(tmp_path, f"version: 1\nname: t\ntopology:\n  exchanges: [{{name: e}}]\n  bindings:\n{bindings}")
    lines = output.splitlines()
    assert (code, len(lines)) == (2, 21)
    assert lines[19].startswith("s.yaml:25:21: $.topology.bindings[19].queue: binding destination queue 'missing19' is not declared")
    assert lines[20] == "... and 10 more like this: binding destination queue '…' is not declared"


@pytest.mark.parametrize(("device", "kind"), [("/dev/zero", "a device"), ("/dev/urandom", "a device"), ("/dev/null", "a device")])
def test_a_device_is_refused_before_a_byte_is_read(device: str, kind: str) -> None:
    result = mqspec("validate", device)
    assert (result.exit_code, result.output) == (2, f"{device}:0:0: $: not a regular file ({kind}) "
                                                    "(hint: give the path of a scenario file)\n")


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    result = mqspec("validate", str(fifo))
    assert (result.exit_code, result.output) == (2, f"{fifo}:0:0: $: not a regular file (a FIFO) "
                                                    "(hint: give the path of a scenario file)\n")


def _seconds(tmp_path: Path, text: str) -> tuple[float, int]:
    path = tmp_path / "big.yaml"
    path.write_text(text)
    start = time.perf_counter()
    result = mqspec("validate", str(path))
    return time.perf_counter() - start, result.exit_code


def test_two_thousand_misspelt_references_to_two_thousand_queues_take_seconds_not_a_minute(tmp_path: Path) -> None:
    queues = "".join(f"    - {{name: orders.{i}, max_length: 10}}\n" for i in range(2000))
    bindings = "".join(f"    - {{exchange: e, queue: ordres.{i}}}\n" for i in range(2000))
    seconds, code = _seconds(tmp_path, f"version: 1\nname: t\ntopology:\n  exchanges: [{{name: e}}]\n  queues:\n{queues}"
                                       f"  bindings:\n{bindings}")
    assert code == 2
    assert seconds < 15  # 67 s when every misspelling was compared with every name


def test_twenty_thousand_duplicate_keys_take_seconds_not_minutes(tmp_path: Path) -> None:
    keys = "".join(f"  k{i % 2}: {i}\n" for i in range(20000))
    seconds, code = _seconds(tmp_path, f"version: 1\nname: t\nx-dup:\n{keys}")
    assert code == 2
    assert seconds < 15

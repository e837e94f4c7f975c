"""With --url the live definitions are read while the file is parsed; an early answer never goes stale."""

from __future__ import annotations

from pathlib import Path

from mqspec.broker.management import Management, Prefetched, q
from mqspec.core.model import BrokerSettings
from tests.conftest import mqspec


def test_an_early_read_is_taken_once_by_the_matching_get(url: str, vhost: str) -> None:
    settings = BrokerSettings(urls=(url,))
    prefetched = Prefetched()
    prefetched.start(settings, f"/definitions/{q(vhost)}", f"the definitions of vhost '{vhost}'")
    with Management(settings, prefetched=prefetched) as client:
        definitions = client.get(f"/definitions/{q(vhost)}", "definitions")
    assert definitions["queues"] == [] and prefetched.pending() == 0


def test_an_unused_early_read_is_not_served_to_a_later_command(url: str, vhost: str, management: Management,
                                                                tmp_path: Path) -> None:
    invalid = tmp_path / "invalid.yaml"
    invalid.write_text("version: 1\nname: x\ntopology:\n  queues:\n    - {name: orders, durabel: true}\n")
    assert mqspec("--url", url, "plan", str(invalid)).exit_code == 2  # read early, never used
    management.put(f"/queues/{q(vhost)}/orders", "queue 'orders'", {"durable": True})
    valid = tmp_path / "valid.yaml"
    valid.write_text(f"version: 1\nname: x\nbroker: {{url: '{url}'}}\ntopology:\n  queues:\n    - {{name: orders}}\n")
    result = mqspec("plan", "--detailed-exitcode", str(valid))
    assert result.exit_code == 0, result.output  # the queue made in between is seen: nothing stale was served

"""A plain application user (no management tag) applies over AMQP; what its permissions forbid is named."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from mqspec.broker.management import Management, q
from tests.conftest import mqspec

FILE = """\
version: 1
name: app
topology:
  exchanges: [{name: app.events, type: topic}]
  queues: [{name: app.q}, {name: other.q}]
  bindings: [{exchange: app.events, queue: app.q, keys: ["#"]}]
"""


@pytest.fixture
def app_user(management: Management, vhost: str) -> Iterator[str]:
    """A user without tags, who may configure only entities named app.* in the test's vhost."""
    name = f"app-{uuid.uuid4().hex[:8]}"
    management.put(f"/users/{q(name)}", f"user '{name}'", {"password": "app-secret", "tags": ""})
    management.set_permissions(name, vhost, configure="^app\\.", write=".*", read=".*")
    yield name
    management.delete(f"/users/{q(name)}", f"user '{name}'")


def test_a_user_without_the_management_tag_applies_over_amqp_and_refused_declares_are_named(
        tmp_path: Path, vhost: str, management: Management, app_user: str) -> None:
    path = tmp_path / "app.yaml"
    path.write_text(FILE)
    url = f"amqp://{app_user}:app-secret@127.0.0.1:5672/{quote(vhost, safe='')}"
    result = mqspec("--url", url, "apply", str(path), "--topology-only")
    assert result.stdout.splitlines()[0] == (f"note: user '{app_user}' may not use the management API (it has no "
                                             "management tag); declaring exchanges, queues and bindings over AMQP instead")
    assert result.exit_code == 3, result.output
    assert (f"error: access refused: user '{app_user}' may not declare queue 'other.q' in vhost '{vhost}' "
            f"(ACCESS_REFUSED - access to queue 'other.q' in vhost '{vhost}' refused for user '{app_user}')") \
        in result.stderr.splitlines()
    assert "app-secret" not in result.output
    assert management.get(f"/queues/{q(vhost)}/app.q", "queue", missing_ok=True) is not None
    assert management.get(f"/queues/{q(vhost)}/other.q", "queue", missing_ok=True) is None
    bindings = management.get(f"/bindings/{q(vhost)}/e/app.events/q/app.q", "bindings")
    assert [b["routing_key"] for b in bindings] == ["#"]

"""restart_broker aims `rabbitmqctl` at the node behind the broker URL, and runs nothing when it cannot tell which.

A stand-in `rabbitmqctl` records its arguments instead of stopping anything, so these tests never
restart a broker; the real restart runs in test_scenarios.py (09-durability) on a private node.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mqspec.broker.management import Management
from mqspec.core.model import BrokerSettings
from mqspec.errors import OperationFailed
from mqspec.workload.faults import restart_broker
from tests import nodes
from tests.conftest import vhost_url


def _recording_rabbitmqctl(folder: Path) -> tuple[str, Path]:
    log = folder / "calls"
    script = folder / "rabbitmqctl"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\n')
    script.chmod(0o755)
    return str(script), log


def test_rabbitmqctl_without_a_node_is_aimed_at_the_node_behind_the_url(private_node: nodes.Node, tmp_path: Path) -> None:
    ctl, log = _recording_rabbitmqctl(tmp_path)
    settings = BrokerSettings(urls=(nodes.vhost_url(private_node, "/"),), management_url=private_node.management_url,
                              restart_command=((ctl, "stop_app"), (ctl, "start_app")))
    restart_broker(settings)
    assert log.read_text().splitlines() == [f"-n {private_node.name} stop_app", f"-n {private_node.name} start_app"]


def test_a_command_that_names_its_node_runs_as_written(private_node: nodes.Node, tmp_path: Path) -> None:
    ctl, log = _recording_rabbitmqctl(tmp_path)
    settings = BrokerSettings(urls=(nodes.vhost_url(private_node, "/"),), management_url=private_node.management_url,
                              restart_command=((ctl, "--node", "rabbit@elsewhere", "stop_app"),))
    restart_broker(settings)
    assert log.read_text().splitlines() == ["--node rabbit@elsewhere stop_app"]


def test_refuses_when_the_management_api_belongs_to_another_broker(private_node: nodes.Node, management: Management,
                                                                    tmp_path: Path) -> None:
    ctl, log = _recording_rabbitmqctl(tmp_path)
    shared = vhost_url("/").replace("amqp://guest:guest@", "http://").rsplit(":", 1)[0] + ":15672"
    settings = BrokerSettings(urls=(nodes.vhost_url(private_node, "/"),), management_url=shared,
                              restart_command=((ctl, "stop_app"), (ctl, "start_app")))
    with pytest.raises(OperationFailed) as caught:
        restart_broker(settings)
    port = private_node.amqp_port
    assert caught.value.message == (
        f"restart_broker: cannot tell which RabbitMQ node serves 127.0.0.1:{port}: the management API at "
        f"http://127.0.0.1:15672 ({management.overview()['node']}) lists no AMQP listener on port {port}; name the node in "
        "broker.restart_command, e.g. [rabbitmqctl, -n, rabbit@HOST, stop_app], or point --management-url at the "
        "management API of that broker")
    assert not log.exists()


def test_refuses_when_no_management_api_answers(tmp_path: Path) -> None:
    ctl, log = _recording_rabbitmqctl(tmp_path)
    port = nodes.free_port_base(1)
    settings = BrokerSettings(urls=(f"amqp://guest:guest@127.0.0.1:{port}/%2F",),
                              management_url=f"http://127.0.0.1:{port + 10000}", restart_command=((ctl, "stop_app"),))
    with pytest.raises(OperationFailed) as caught:
        restart_broker(settings)
    assert caught.value.message.startswith(f"restart_broker: cannot tell which RabbitMQ node serves 127.0.0.1:{port}: ")
    assert caught.value.message.endswith("; name the node in broker.restart_command, e.g. [rabbitmqctl, -n, rabbit@HOST, "
                                         "stop_app], or point --management-url at the management API of that broker")
    assert not log.exists()


def test_on_the_shared_broker_the_restart_names_the_node_behind_5672(management: Management, tmp_path: Path) -> None:
    # what `mqspec apply scenarios/09-durability.yaml` would run against the broker on 5672 (recorded, not run)
    ctl, log = _recording_rabbitmqctl(tmp_path)
    restart_broker(BrokerSettings(urls=(vhost_url("/"),), restart_command=((ctl, "stop_app"), (ctl, "start_app"))))
    node = management.overview()["node"]
    assert log.read_text().splitlines() == [f"-n {node} stop_app", f"-n {node} start_app"]

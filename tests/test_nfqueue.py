"""The netlink messages of the delay fault's packet queue (mqspec/core/nfqueue.py), byte for byte.

The expected bytes are written out by hand from the kernel's layouts (linux/netlink.h,
netfilter/nfnetlink.h, netfilter/nfnetlink_queue.h) on a little-endian machine, queue 7171
(0x1c03). The codec is exercised against the real kernel by the delay test in
tests/test_cluster_faults.py.
"""

from __future__ import annotations

import sys

import pytest

from mqspec.core import nfqueue

pytestmark = pytest.mark.skipif(sys.byteorder != "little", reason="the expected bytes are written for little-endian")


def test_bind_asks_for_an_ack_and_names_the_queue_in_network_byte_order() -> None:
    assert nfqueue.bind(7171, seq=1).hex(" ") == (
        "1c 00 00 00 02 03 05 00 01 00 00 00 00 00 00 00"   # length 28, NFQNL_MSG_CONFIG of subsystem 3, REQUEST|ACK, seq 1
        " 00 00 1c 03"                                       # nfgenmsg: AF_UNSPEC, version 0, queue 7171 (big-endian)
        " 08 00 01 00 01 00 00 00")                          # NFQA_CFG_CMD: BIND, pad, pf 0


def test_configure_asks_for_metadata_only_a_queue_length_and_fail_open() -> None:
    assert nfqueue.configure(7171, maxlen=65536, seq=2).hex(" ") == (
        "38 00 00 00 02 03 05 00 02 00 00 00 00 00 00 00 00 00 1c 03"   # length 56, seq 2
        " 09 00 02 00 00 00 00 00 01 00 00 00"   # NFQA_CFG_PARAMS: copy range 0, NFQNL_COPY_META, padded to 12
        " 08 00 03 00 00 01 00 00"               # NFQA_CFG_QUEUE_MAXLEN 65536
        " 08 00 04 00 00 00 00 01"               # NFQA_CFG_MASK: FAIL_OPEN
        " 08 00 05 00 00 00 00 01")              # NFQA_CFG_FLAGS: FAIL_OPEN


def test_a_batch_verdict_accepts_every_packet_up_to_an_id() -> None:
    assert nfqueue.verdict(7171, 42, nfqueue.NF_ACCEPT, batch=True).hex(" ") == (
        "20 00 00 00 03 03 01 00 00 00 00 00 00 00 00 00 00 00 1c 03"   # NFQNL_MSG_VERDICT_BATCH, REQUEST only
        " 0c 00 02 00 00 00 00 01 00 00 00 2a")                         # NFQA_VERDICT_HDR: NF_ACCEPT, id 42
    assert nfqueue.verdict(7171, 42)[4:6] == bytes([1, 3])              # one packet: NFQNL_MSG_VERDICT


KERNEL_PACKET = bytes.fromhex(
    "28000000 0003 0000 00000000 00000000"   # length 40, NFQNL_MSG_PACKET, no flags
    "02 00 1c03"                             # AF_INET, queue 7171
    "0b00 0100 0000002a 0800 01 00"          # NFQA_PACKET_HDR (11 bytes, padded): id 42, IPv4, hook 1 (LOCAL_IN)
    "0800 0500 00000003")                    # NFQA_IFINDEX_INDEV 3


def test_a_queued_packet_the_kernel_sends_gives_its_id_queue_and_hook() -> None:
    [msg] = nfqueue.messages(KERNEL_PACKET)
    assert nfqueue.packet(msg) == nfqueue.Packet(queue=7171, id=42, hook=1)
    assert nfqueue.error_code(msg) is None


def test_several_messages_in_one_datagram_are_all_read_and_a_truncated_tail_is_left_out() -> None:
    found = nfqueue.messages(KERNEL_PACKET + KERNEL_PACKET + KERNEL_PACKET[:30])
    assert [nfqueue.packet(m) for m in found] == [nfqueue.Packet(7171, 42, 1)] * 2


def test_an_error_message_gives_the_negative_errno_and_an_ack_gives_zero() -> None:
    request = nfqueue.bind(7171, seq=1)
    refused = nfqueue.message(nfqueue.NLMSG_ERROR, 0, 1, (-1).to_bytes(4, "little", signed=True) + request[:16])
    acked = nfqueue.message(nfqueue.NLMSG_ERROR, 0, 1, bytes(4) + request[:16])
    assert [nfqueue.error_code(m) for m in nfqueue.messages(refused + acked)] == [-1, 0]   # -EPERM: another holds it
    assert nfqueue.packet(nfqueue.messages(refused)[0]) is None


def test_packets_are_due_in_arrival_order_once_held_the_delay() -> None:
    held = [(0.0, 1), (0.125, 2), (0.5, 3)]
    assert nfqueue.due(held, now=0.125, delay=0.25) == 0
    assert nfqueue.due(held, now=0.375, delay=0.25) == 2
    assert nfqueue.due(held, now=1.0, delay=0.25) == 3
    assert nfqueue.due([], now=1.0, delay=0.25) == 0

"""The netlink messages of the kernel's packet queue (nfnetlink_queue), packed and unpacked: no sockets.

The delay fault without netem (mqspec/workload/packet_delay.py) binds one queue, asks for each
packet's metadata only, and gives every packet back (NF_ACCEPT) once it has been held long enough.
Layouts are the kernel's (include/uapi/linux/netlink.h, netfilter/nfnetlink.h, nfnetlink_queue.h):
netlink headers in the host's byte order, nfnetlink payloads (queue number, packet id, verdict) in
network byte order, attributes padded to 4 bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

NETLINK_NETFILTER = 12
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLA_TYPE_MASK = 0x3FFF   # without NLA_F_NESTED and NLA_F_NET_BYTEORDER

NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQNL_MSG_VERDICT_BATCH = 3

NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NFQA_CFG_F_FAIL_OPEN = 0x1   # a full queue (or a full socket) lets packets through instead of dropping them

NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NF_ACCEPT = 1

_NLMSGHDR = struct.Struct("=IHHII")    # length, type, flags, sequence, port id
_NFGENMSG = struct.Struct("!BBH")      # family, version, queue number
_NLATTR = struct.Struct("=HH")         # length, type
_ERROR = struct.Struct("=i")           # nlmsgerr.error: 0 (an ack) or -errno
_PACKET_HDR = struct.Struct("!IHB")    # packet id, hardware protocol, hook
_VERDICT_HDR = struct.Struct("!II")    # verdict, packet id
_CFG_CMD = struct.Struct("!BxH")       # command, pad, protocol family
_CFG_PARAMS = struct.Struct("!IB")     # copy range, copy mode


@dataclass(frozen=True)
class Message:
    """One netlink message as read: its type, sequence number and payload after the netlink header."""

    type: int
    flags: int
    seq: int
    payload: bytes


@dataclass(frozen=True)
class Packet:
    """A queued packet's metadata: the id its verdict names, and the hook it was taken at."""

    queue: int
    id: int
    hook: int


def _align(length: int) -> int:
    return (length + 3) & ~3


def attribute(kind: int, value: bytes) -> bytes:
    length = _NLATTR.size + len(value)
    return _NLATTR.pack(length, kind) + value + b"\0" * (_align(length) - length)


def message(kind: int, flags: int, seq: int, payload: bytes) -> bytes:
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(payload), kind, flags, seq, 0) + payload


def _queue_message(msg: int, queue: int, attributes: bytes, seq: int, flags: int) -> bytes:
    return message((NFNL_SUBSYS_QUEUE << 8) | msg, flags, seq, _NFGENMSG.pack(0, 0, queue) + attributes)


def bind(queue: int, seq: int) -> bytes:
    """Take the packets of `queue` (an ack comes back: an error when another process holds it)."""
    command = attribute(NFQA_CFG_CMD, _CFG_CMD.pack(NFQNL_CFG_CMD_BIND, 0))
    return _queue_message(NFQNL_MSG_CONFIG, queue, command, seq, NLM_F_REQUEST | NLM_F_ACK)


def configure(queue: int, maxlen: int, seq: int) -> bytes:
    """Metadata only (no payload copied), up to `maxlen` packets held in the kernel, fail-open."""
    attributes = (attribute(NFQA_CFG_PARAMS, _CFG_PARAMS.pack(0, NFQNL_COPY_META))
                  + attribute(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", maxlen))
                  + attribute(NFQA_CFG_MASK, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN))
                  + attribute(NFQA_CFG_FLAGS, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN)))
    return _queue_message(NFQNL_MSG_CONFIG, queue, attributes, seq, NLM_F_REQUEST | NLM_F_ACK)


def verdict(queue: int, packet_id: int, decision: int = NF_ACCEPT, batch: bool = False) -> bytes:
    """The verdict on one packet, or (`batch`) on every packet of the queue with an id up to `packet_id`."""
    header = attribute(NFQA_VERDICT_HDR, _VERDICT_HDR.pack(decision, packet_id))
    return _queue_message(NFQNL_MSG_VERDICT_BATCH if batch else NFQNL_MSG_VERDICT, queue, header, 0, NLM_F_REQUEST)


def messages(data: bytes) -> list[Message]:
    """The netlink messages in one datagram; a truncated tail is left out."""
    found: list[Message] = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, flags, seq, _ = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            break
        found.append(Message(kind, flags, seq, data[offset + _NLMSGHDR.size:offset + length]))
        offset += _align(length)
    return found


def attributes(data: bytes) -> dict[int, bytes]:
    """Attribute type (flags cleared) -> value, for the attributes packed in `data`."""
    found: dict[int, bytes] = {}
    offset = 0
    while offset + _NLATTR.size <= len(data):
        length, kind = _NLATTR.unpack_from(data, offset)
        if length < _NLATTR.size or offset + length > len(data):
            break
        found[kind & NLA_TYPE_MASK] = data[offset + _NLATTR.size:offset + length]
        offset += _align(length)
    return found


def error_code(msg: Message) -> int | None:
    """For an NLMSG_ERROR message: 0 for an ack, else the negative errno; None for any other message."""
    if msg.type != NLMSG_ERROR or len(msg.payload) < _ERROR.size:
        return None
    code: int = _ERROR.unpack_from(msg.payload)[0]
    return code


def packet(msg: Message) -> Packet | None:
    """The queued packet an NFQNL_MSG_PACKET message announces; None for any other message."""
    if msg.type != (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET or len(msg.payload) < _NFGENMSG.size:
        return None
    queue = _NFGENMSG.unpack_from(msg.payload)[2]
    header = attributes(msg.payload[_NFGENMSG.size:]).get(NFQA_PACKET_HDR, b"")
    if len(header) < _PACKET_HDR.size:
        return None
    packet_id, _, hook = _PACKET_HDR.unpack_from(header)
    return Packet(queue, packet_id, hook)


def due(held: Iterable[tuple[float, int]], now: float, delay: float) -> int:
    """How many of the oldest held packets (received at, id), in arrival order, have been held `delay` seconds by `now`."""
    count = 0
    for received, _ in held:
        if received + delay > now:
            break
        count += 1
    return count

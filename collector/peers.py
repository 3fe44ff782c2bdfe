"""Which process sent an OTLP request: the one holding the sender's end of its TCP connection.

A request's ``process.pid`` is the sender's word. What the kernel can tell is which socket the
request came from: in the collector's own network namespace the sender's end of the connection is
found by its exact address pair (``sock_diag``), in another one as the only socket of that
namespace with the sender's address and port (``/proc/<pid>/net/tcp``). A process sent the request
when it holds that socket among its file descriptors. A process that does not hold it while the
socket is still open elsewhere did not send it (a relay forwarding for it, or a forger); when the
socket is gone or cannot be found, nobody can tell, and the answer is ``None``.
"""

from __future__ import annotations

import collections
import ipaddress
import os
import socket
import struct
import threading
from dataclasses import dataclass, field

from agentguard.collector import procfs

__all__ = ["Connection", "Sender", "SenderVerifier", "holds_socket", "sending_socket"]

# linux/sock_diag.h, linux/inet_diag.h, linux/netlink.h.
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_INET_DIAG_NOCOOKIE = 0xFFFFFFFF
_TCP_LISTEN = 10
_TCP_TIME_WAIT = 6
# struct inet_diag_msg: family, state, timer, retrans, then the socket id (ports, addresses,
# interface, cookie), expires, rqueue, wqueue, uid and the inode.
_DIAG_ID = struct.Struct("!HH16s16s")
_DIAG_INODE_OFFSET = 68
# A process with more descriptors than this is not searched (the answer is then ``None``): any
# sender can name any pid, and a scan costs a readlink per descriptor.
MAX_FDS = 16384
_MAX_TABLE_BYTES = 4 << 20
_NETLINK_TIMEOUT = 1.0


@dataclass(frozen=True, slots=True)
class Connection:
    """The TCP connection a request came on: the sender's address and port, and the collector's
    (``local_address`` ``None``: a listener on every address that cannot say which was reached).
    IPv4 addresses mapped into IPv6 are kept as IPv4."""

    address: str
    port: int
    local_address: str | None
    local_port: int

    @classmethod
    def of(cls, address: str, port: int, local_address: str | None,
           local_port: int) -> Connection | None:
        """The connection, or ``None`` when the sender's address is not an IP address."""
        sender = _plain(address)
        if sender is None or not 0 < port < 65536 or not 0 < local_port < 65536:
            return None
        return cls(sender, port, _plain(local_address), local_port)


@dataclass(slots=True)
class Sender:
    """Who sent one request: its address (``None``: unknown), the connection it came on, and,
    for the processes looked at while the request was open, whether each sent it."""

    address: str | None
    connection: Connection | None = None
    verdicts: dict[int, bool | None] = field(default_factory=dict)


def _plain(address: str | None) -> str | None:
    """``address`` in canonical form, an IPv4-mapped IPv6 address as IPv4; ``None`` when it is
    not an IP address."""
    if not address:
        return None
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(parsed)


def _packed(address: str) -> tuple[int, bytes]:
    parsed = ipaddress.ip_address(address)
    family = socket.AF_INET if parsed.version == 4 else socket.AF_INET6
    return family, parsed.packed


def _forms(packed: bytes) -> tuple[bytes, ...]:
    """How a socket id may carry an address: padded to 16 bytes, and an IPv4 address also
    mapped into IPv6."""
    if len(packed) == 4:
        return packed.ljust(16, b"\0"), b"\0" * 10 + b"\xff\xff" + packed
    return (packed,)


def _diag_inode(connection: Connection, local_address: str) -> int | None:
    """The inode of the socket whose own end is the sender's address and port and whose other end
    is ``local_address`` and our port, in this network namespace (``None``: no such socket, or one
    no process holds any more)."""
    family, source = _packed(connection.address)
    other_family, destination = _packed(local_address)
    if family != other_family:
        return None
    request = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + \
        _DIAG_ID.pack(connection.port, connection.local_port, source.ljust(16, b"\0"),
                      destination.ljust(16, b"\0")) + \
        struct.pack("=III", 0, _INET_DIAG_NOCOOKIE, _INET_DIAG_NOCOOKIE)
    header = struct.pack("=IHHII", 16 + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, 1, 0)
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
                           _NETLINK_SOCK_DIAG) as diag:
            diag.settimeout(_NETLINK_TIMEOUT)
            diag.send(header + request)
            answer = diag.recv(8192)
    except OSError:
        return None
    if len(answer) < 16 + _DIAG_INODE_OFFSET + 4:
        return None
    kind = struct.unpack_from("=H", answer, 4)[0]
    if kind != _SOCK_DIAG_BY_FAMILY:
        return None
    message = answer[16:]
    # An exact lookup may also answer with a listener on the sender's port: only the very pair
    # of ends counts (an IPv6 socket reports IPv4 addresses mapped).
    found_port, found_local_port, found_source, found_destination = \
        _DIAG_ID.unpack_from(message, 4)
    if message[1] in (_TCP_LISTEN, _TCP_TIME_WAIT) or \
            (found_port, found_local_port) != (connection.port, connection.local_port) or \
            found_source not in _forms(source) or found_destination not in _forms(destination):
        return None
    inode: int = struct.unpack_from("=I", message, _DIAG_INODE_OFFSET)[0]
    return inode or None


def _own_socket(connection: Connection) -> int | None:
    """The sender's end of ``connection`` in the collector's own network namespace."""
    if connection.local_address is not None:
        return _diag_inode(connection, connection.local_address)
    # A listener on every address: the sender reached one of ours, most likely its own address
    # (loopback, or the host's address from the host itself).
    tried: set[str] = set()
    for address in (connection.address, *sorted(procfs.local_addresses(os.getpid()))):
        address = _plain(address) or ""
        if address and address not in tried:
            tried.add(address)
            inode = _diag_inode(connection, address)
            if inode is not None:
                return inode
    return None


def _table_address(text: bytes) -> tuple[str, int] | None:
    """An ``address:port`` of ``/proc/net/tcp`` (hex, each 32-bit word in host order)."""
    address, _, port = text.partition(b":")
    try:
        words = [int(address[i:i + 8], 16) for i in range(0, len(address), 8)]
        raw = b"".join(struct.pack("=I", word) for word in words)
        return _plain(str(ipaddress.ip_address(raw))) or "", int(port, 16)
    except ValueError:
        return None


def _table_socket(pid: int, connection: Connection) -> int | None:
    """The inode of the only TCP socket in ``pid``'s network namespace with the sender's address
    and port as its own end (``None``: none, several, or one no process holds)."""
    wanted = (connection.address, connection.port)
    found: list[int] = []
    for table in ("tcp", "tcp6"):
        try:
            with open(f"{procfs.PROC}/{pid}/net/{table}", "rb", buffering=0) as handle:
                raw = handle.read(_MAX_TABLE_BYTES)
        except OSError:
            continue
        for line in raw.split(b"\n")[1:]:
            fields = line.split()
            if len(fields) < 10 or _table_address(fields[1]) != wanted:
                continue
            try:
                state = int(fields[3], 16)
            except ValueError:
                continue
            # A listener or a closed connection's remains send nothing (and are held by none).
            if state in (_TCP_LISTEN, _TCP_TIME_WAIT):
                continue
            found.append(int(fields[9]) if fields[9].isdigit() else 0)
    return (found[0] or None) if len(found) == 1 else None


def sending_socket(connection: Connection, pid: int) -> int | None:
    """The inode of the sender's end of ``connection``: in the collector's network namespace, or
    else in ``pid``'s when that is another one that owns the sender's address; ``None`` when it
    cannot be found."""
    inode = _own_socket(connection)
    if inode is not None:
        return inode
    # A sender on loopback or on one of our addresses was in our namespace: its socket is gone.
    if ipaddress.ip_address(connection.address).is_loopback or \
            connection.address in procfs.local_addresses(os.getpid()):
        return None
    theirs = procfs.net_namespace(pid)
    if theirs is None or theirs == procfs.net_namespace(os.getpid()) or \
            connection.address not in procfs.local_addresses(pid):
        return None
    return _table_socket(pid, connection)


def holds_socket(pid: int, inode: int) -> bool | None:
    """Whether process ``pid`` holds socket ``inode`` among its file descriptors (``None``: its
    descriptors cannot be read, or there are more than :data:`MAX_FDS`)."""
    directory = f"{procfs.PROC}/{pid}/fd"
    try:
        fds = os.listdir(directory)
    except OSError:
        return None
    if len(fds) > MAX_FDS:
        return None
    target = f"socket:[{inode}]"
    for fd in fds:
        try:
            if os.readlink(f"{directory}/{fd}") == target:
                return True
        except OSError:
            continue
    return False


class SenderVerifier:
    """Tells whether a process sent a request on a connection (thread-safe). Answers are kept for
    the last 4,096 (process, socket, connection) triples: a socket's inode names it only while
    it is open, so the connection is part of the key."""

    def __init__(self, max_kept: int = 4096) -> None:
        self.max_kept = max_kept
        self._kept: collections.OrderedDict[tuple[int, int, Connection], bool] = \
            collections.OrderedDict()
        self._lock = threading.Lock()

    def sent_by(self, connection: Connection, pid: int) -> bool | None:
        """``True``: ``pid`` holds the sender's end of ``connection``; ``False``: the sender's end
        is open and ``pid`` does not hold it; ``None``: it cannot be told (the socket is gone or
        not found, ``pid`` is gone or its descriptors unreadable)."""
        inode = sending_socket(connection, pid)
        if inode is None:
            return None
        key = (pid, inode, connection)
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None:
                self._kept.move_to_end(key)
                return kept
        held = holds_socket(pid, inode)
        if held is None:
            return None
        # Not held by pid: the socket must still be open (held by some process) for that to say
        # another process sent the request; one closed meanwhile may have been pid's.
        if not held and sending_socket(connection, pid) != inode:
            return None
        with self._lock:
            self._kept[key] = held
            if len(self._kept) > self.max_kept:
                self._kept.popitem(last=False)
        return held

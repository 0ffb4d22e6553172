# Holds packets in an NFQUEUE queue and never gives a verdict, so their conntrack
# entries stay allocated and unconfirmed (confirmation happens only when a packet
# leaves the last hook with ACCEPT). Closing the socket makes the kernel drop the
# queued packets, which frees their entries without ever hashing them.
#   python3 nfqueue-hold.py <queue num>
# Run under `ip netns exec` (queues are per network namespace). Prints "bound"
# once the queue is bound, "packets N" each time the count of queued packets
# received grows, and "held N" when it ends: stdin closed, SIGTERM/SIGINT, or
# MAX_LIFETIME seconds passed. Standard library only: raw nfnetlink and struct.
import errno
import os
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE, NLMSG_OVERRUN = 1, 2, 3, 4
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_CONFIG = 0, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS = 1, 2
NFQNL_CFG_CMD_BIND, NFQNL_CFG_CMD_PF_BIND, NFQNL_CFG_CMD_PF_UNBIND = 1, 3, 4
NFQNL_COPY_META = 1
NFNETLINK_V0 = 0

MAX_LIFETIME = 120.0  # seconds: ends by itself even if nobody stops it
ACK_TIMEOUT = 5.0
TICK = 0.2  # longest select: how soon a SIGTERM is noticed
RECV_BUF = 1 << 20

stopping = False


def on_signal(signum, frame):
    global stopping
    stopping = True


def align(n):
    return (n + 3) & ~3


def attr(kind, payload):
    head = struct.pack("=HH", 4 + len(payload), kind)
    return head + payload + b"\0" * (align(len(payload)) - len(payload))


def config_msg(seq, queue, family, attrs):
    # nfgenmsg: family, version, res_id (queue number, big-endian)
    body = struct.pack("=BB", family, NFNETLINK_V0) + struct.pack("!H", queue) + b"".join(attrs)
    kind = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_CONFIG
    return struct.pack("=IHHII", 16 + len(body), kind, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body


def messages(data):
    """(type, seq, payload) of each netlink message in one datagram."""
    off = 0
    while off + 16 <= len(data):
        length, kind, _flags, seq, _pid = struct.unpack_from("=IHHII", data, off)
        if length < 16 or off + length > len(data):
            raise RuntimeError(f"malformed netlink message (length {length} at {off} of {len(data)})")
        yield kind, seq, data[off + 16 : off + length]
        off += align(length)


def request(sock, seq, what, msg):
    """Sends one config message and waits (bounded) for its ACK; raises on an error."""
    sock.send(msg)
    deadline = time.monotonic() + ACK_TIMEOUT
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            raise RuntimeError(f"{what}: no ACK in {ACK_TIMEOUT} s")
        for kind, got_seq, payload in messages(sock.recv(65536)):
            if kind != NLMSG_ERROR or got_seq != seq:
                continue  # nothing else is expected before the bind; ignore
            (err,) = struct.unpack_from("=i", payload, 0)
            if err != 0:
                code = -err
                raise RuntimeError(f"{what}: kernel answered {errno.errorcode.get(code, code)} ({os.strerror(code)})")
            return


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: nfqueue-hold.py <queue num>")
    queue = int(sys.argv[1])
    if not 0 <= queue <= 65535:
        sys.exit("nfqueue-hold: queue number out of range")
    started = time.monotonic()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, on_signal)

    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    count = 0
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUF)
        sock.bind((0, 0))
        seq = 0

        def cmd(command, family):
            return attr(NFQA_CFG_CMD, struct.pack("=BB", command, 0) + struct.pack("!H", family))

        # Kernels before 3.8 needed the per-family handler (re)bound; later ones
        # accept these commands and do nothing.
        for command, name in ((NFQNL_CFG_CMD_PF_UNBIND, "PF_UNBIND"), (NFQNL_CFG_CMD_PF_BIND, "PF_BIND")):
            seq += 1
            request(sock, seq, name, config_msg(seq, 0, socket.AF_INET, [cmd(command, socket.AF_INET)]))
        seq += 1
        request(sock, seq, f"BIND queue {queue}", config_msg(seq, queue, socket.AF_INET, [cmd(NFQNL_CFG_CMD_BIND, socket.AF_INET)]))
        # Metadata only (copy_range 0): the packet's bytes are not needed.
        seq += 1
        params = attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))
        request(sock, seq, "COPY_META", config_msg(seq, queue, socket.AF_UNSPEC, [params]))
        print("bound", flush=True)

        stdin = sys.stdin.buffer.raw if hasattr(sys.stdin.buffer, "raw") else sys.stdin.buffer
        watch = [sock, stdin]
        packet_kind = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET
        while not stopping:
            left = started + MAX_LIFETIME - time.monotonic()
            if left <= 0:
                print(f"nfqueue-hold: maximum lifetime of {MAX_LIFETIME:.0f} s reached", file=sys.stderr, flush=True)
                break
            ready = select.select(watch, [], [], min(TICK, left))[0]
            if stdin in ready and not os.read(stdin.fileno(), 4096):
                break  # stdin closed
            if sock not in ready:
                continue
            try:
                data = sock.recv(65536)
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    raise RuntimeError("netlink receive buffer overran: queued packets were not all seen") from e
                raise
            before = count
            for kind, _seq, payload in messages(data):
                if kind == packet_kind:
                    count += 1  # read, never answered: the packet stays queued
                elif kind == NLMSG_ERROR:
                    (err,) = struct.unpack_from("=i", payload, 0)
                    if err != 0:
                        raise RuntimeError(f"kernel error message: {os.strerror(-err)}")
            if count != before:
                print(f"packets {count}", flush=True)
    finally:
        # Closing the socket destroys the queue instance: the kernel drops
        # every packet still queued (NF_DROP), freeing their entries.
        sock.close()
    print(f"held {count}", flush=True)


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as e:
        print(f"nfqueue-hold: {e}", file=sys.stderr, flush=True)
        sys.exit(1)

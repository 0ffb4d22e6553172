# Makes conntrack clashes: two processes pinned to two CPUs send the same UDP
# flow (same source port, same destination) at the same instant, n times, each
# time from a new source port. Both packets miss the table, both get a new
# unconfirmed entry, and the second to confirm loses (stat `clashres`).
#   python3 clash-sender.py <dst addr> <dst port> <first src port> <n>
# Run under `ip netns exec`; needs 2 CPUs. Python, not Node: the two senders
# must start each send within microseconds of each other (busy-wait on a
# shared monotonic deadline).
import os
import socket
import sys
import time

dst, dport, first, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
SPACING = 0.002  # seconds between flows: more than one iteration's work, even under QEMU TCG
start = time.monotonic() + 0.3


def send_all(cpu):
    os.sched_setaffinity(0, {cpu})
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("0.0.0.0", first + i))
        deadline = start + i * SPACING
        while time.monotonic() < deadline:
            pass
        s.sendto(b"x", (dst, dport))
        s.close()


if len(os.sched_getaffinity(0)) < 2:
    sys.exit("clash-sender: needs 2 CPUs")
children = []
for cpu in sorted(os.sched_getaffinity(0))[:2]:
    pid = os.fork()
    if pid == 0:
        try:
            send_all(cpu)
            os._exit(0)
        except BaseException as e:
            print(f"clash-sender: {e}", file=sys.stderr)
            os._exit(1)
    children.append(pid)
failed = [pid for pid in children if os.waitpid(pid, 0)[1] != 0]
sys.exit(1 if failed else 0)

# A stand-in for a container's process, started already in its cgroup (joined
# before `ip netns exec`, which mounts a sysfs of its own): says its pid, then on each "send N" line sends N one-way UDP datagrams to addr:port,
# each from its own source port (base, base + 1, ...: never one twice, so each is
# one conntrack entry), and answers "sent N". Exits when its input closes.
import os
import socket
import sys

addr, port, next_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
print(os.getpid(), flush=True)
for line in sys.stdin:
    words = line.split()
    if len(words) != 2 or words[0] != "send":
        continue
    n = int(words[1])
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", next_port))
        s.sendto(b"x", (addr, port))
        s.close()
        next_port += 1
    print(f"sent {n}", flush=True)

// stormgen: a conntrack storm at a chosen rate. Every packet carries a 5-tuple
// not used before in the run, so each one makes a NEW conntrack entry in the
// receiving netns (one-way traffic is enough: the entry is confirmed when the
// first packet reaches INPUT there). Run it as root inside the sending netns:
//
//   ip netns exec CLIENT ./stormgen --dst 198.19.9.2 [--proto udp|syn]
//       [--rate N|max] [--count N] [--seconds S] [--src-net A.B.C.D/len]
//       [--port-base P]
//
// At least one of --count and --seconds bounds the run. Prints one JSON line:
//   {"sent":N,"failed":N,"seconds":S,"ratePerSecond":R,"proto":"udp","target":T|null}
// Bad input: one line `stormgen: <problem>; <fix>` on stderr, exit 2. A fatal
// send error: the JSON so far, a line on stderr, exit 1.
//
// Packets are built by hand on a raw socket (IP_HDRINCL) so the source address
// can be any address in --src-net (default 10.0.0.0/8). The receiver must not
// filter them (rp_filter 0 on its interface) and is best left with no route back
// to them: its RSTs and port unreachables then go nowhere, so each entry keeps
// its first-packet state (UDP unreplied, TCP SYN_SENT) and timeout.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64               // packets per sendmmsg()
#define WAKE_INTERVAL_NS 100000 // paced runs wake at most ~10000 times a second
#define MAX_COUNT 1000000000ULL
#define MAX_RATE 100000000ULL
#define MAX_SECONDS 3600.0
#define UDP_DST_PORT 53
#define SYN_DST_PORT 80

enum proto { PROTO_UDP, PROTO_SYN };

struct config {
  uint32_t dst;               // host byte order, as are all addresses below
  enum proto proto;
  uint64_t rate;              // 0: flat out
  uint64_t count;             // 0: no count bound
  double seconds;             // 0: no time bound
  uint32_t first_host;        // source addresses: first_host + index, skipping dst
  uint64_t host_count;
  uint32_t port_base;         // source ports: port_base..65535
};

struct packet {
  struct iphdr ip;
  union {
    struct udphdr udp;
    struct tcphdr tcp;
  } l4;
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int signo) {
  (void)signo;
  stop_requested = 1;
}

static void usage_error(const char *problem, const char *fix) {
  fprintf(stderr, "stormgen: %s; %s\n", problem, fix);
  exit(2);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

// Whole-string unsigned integer in [min, max], or exit 2.
static uint64_t parse_uint(const char *text, uint64_t min, uint64_t max, const char *option) {
  char problem[160], fix[96];
  char *end;
  errno = 0;
  unsigned long long value = strtoull(text, &end, 10);
  if (text[0] < '0' || text[0] > '9' || *end != '\0' || errno != 0 || value < min || value > max) {
    snprintf(problem, sizeof problem, "%s '%s' is not a whole number in %llu..%llu", option, text,
             (unsigned long long)min, (unsigned long long)max);
    snprintf(fix, sizeof fix, "give e.g. %s %llu", option, (unsigned long long)min);
    usage_error(problem, fix);
  }
  return value;
}

static uint32_t parse_ipv4(const char *text, const char *option) {
  struct in_addr addr;
  if (inet_pton(AF_INET, text, &addr) != 1) {
    char problem[160];
    snprintf(problem, sizeof problem, "%s '%s' is not an IPv4 address", option, text);
    usage_error(problem, "write it as A.B.C.D");
  }
  return ntohl(addr.s_addr);
}

// A.B.C.D/len -> the usable source hosts in it. The receiver drops packets from
// zero-net, loopback, multicast and broadcast sources as martians before
// conntrack confirms them, so those ranges are refused.
static void parse_src_net(const char *text, struct config *config) {
  char copy[64];
  if (strlen(text) >= sizeof copy || !strchr(text, '/'))
    usage_error("--src-net needs A.B.C.D/len", "give e.g. --src-net 10.0.0.0/8");
  strcpy(copy, text);
  char *slash = strchr(copy, '/');
  *slash = '\0';
  uint32_t net = parse_ipv4(copy, "--src-net");
  const char *len_text = slash + 1;
  char *end;
  unsigned long len = strtoul(len_text, &end, 10);
  if (len_text[0] < '0' || len_text[0] > '9' || *end != '\0' || len < 8 || len > 32)
    usage_error("--src-net prefix length must be 8..32", "give e.g. --src-net 10.0.0.0/8");
  uint64_t size = 1ULL << (32 - len);
  uint32_t last = net + (uint32_t)(size - 1);
  if (net & (uint32_t)(size - 1))
    usage_error("--src-net has host bits set", "give the network address, e.g. 10.1.0.0/16");
  if ((net >> 24) == 0 || (net >> 24) == 127 || (last >> 24) >= 224)
    usage_error("--src-net overlaps 0/8, 127/8 or 224/3, whose sources the receiver drops",
                "use a unicast range such as 10.0.0.0/8");
  // Skip the network and broadcast addresses where a prefix has them.
  config->first_host = size > 2 ? net + 1 : net;
  config->host_count = size > 2 ? size - 2 : size;
}

static void parse_args(int argc, char **argv, struct config *config) {
  static const struct option options[] = {
      {"dst", required_argument, NULL, 'd'},     {"proto", required_argument, NULL, 'p'},
      {"rate", required_argument, NULL, 'r'},    {"count", required_argument, NULL, 'c'},
      {"seconds", required_argument, NULL, 's'}, {"src-net", required_argument, NULL, 'n'},
      {"port-base", required_argument, NULL, 'b'}, {NULL, 0, NULL, 0},
  };
  const char *fix = "options: --dst A.B.C.D --proto udp|syn --rate N|max --count N --seconds S "
                    "--src-net A.B.C.D/len --port-base P";
  char problem[160];
  int have_dst = 0;
  const char *src_net = "10.0.0.0/8";
  opterr = 0; // our own one-line messages instead of getopt's
  for (;;) {
    int option = getopt_long(argc, argv, ":", options, NULL);
    if (option == -1) break;
    switch (option) {
    case 'd':
      config->dst = parse_ipv4(optarg, "--dst");
      have_dst = 1;
      break;
    case 'p':
      if (strcmp(optarg, "udp") == 0) config->proto = PROTO_UDP;
      else if (strcmp(optarg, "syn") == 0) config->proto = PROTO_SYN;
      else usage_error("--proto must be udp or syn", "give --proto udp or --proto syn");
      break;
    case 'r':
      config->rate = strcmp(optarg, "max") == 0 ? 0 : parse_uint(optarg, 1, MAX_RATE, "--rate");
      break;
    case 'c':
      config->count = parse_uint(optarg, 1, MAX_COUNT, "--count");
      break;
    case 's': {
      char *end;
      errno = 0;
      double seconds = strtod(optarg, &end);
      // !(x > 0) also catches NaN.
      int starts_numeric = (optarg[0] >= '0' && optarg[0] <= '9') || optarg[0] == '.';
      if (!starts_numeric || *end != '\0' || errno != 0 || !(seconds > 0) || seconds > MAX_SECONDS) {
        snprintf(problem, sizeof problem, "--seconds '%s' is not a number in (0, %g]", optarg,
                 MAX_SECONDS);
        usage_error(problem, "give e.g. --seconds 3");
      }
      config->seconds = seconds;
      break;
    }
    case 'n':
      src_net = optarg;
      break;
    case 'b':
      config->port_base = (uint32_t)parse_uint(optarg, 1, 65535, "--port-base");
      break;
    case ':':
      snprintf(problem, sizeof problem, "%s needs a value", argv[optind - 1]);
      usage_error(problem, fix);
      break;
    default:
      snprintf(problem, sizeof problem, "unknown option %s", argv[optind - 1]);
      usage_error(problem, fix);
    }
  }
  if (optind < argc) {
    snprintf(problem, sizeof problem, "unexpected argument '%s'", argv[optind]);
    usage_error(problem, fix);
  }
  if (!have_dst) usage_error("--dst is required", "give the server address, e.g. --dst 198.19.9.2");
  if (config->count == 0 && config->seconds == 0)
    usage_error("the run has no bound", "give --count N and/or --seconds S");
  parse_src_net(src_net, config);
  // A source equal to the receiver's own address is a martian there.
  if (config->dst >= config->first_host && config->dst - config->first_host < config->host_count)
    config->host_count--;
  if (config->host_count == 0)
    usage_error("--src-net has no usable source address", "give a wider --src-net");
  uint64_t tuples = config->host_count * (65536 - config->port_base);
  if (config->count > tuples) {
    snprintf(problem, sizeof problem, "--count %llu exceeds the %llu distinct source tuples",
             (unsigned long long)config->count, (unsigned long long)tuples);
    usage_error(problem, "use a wider --src-net, a lower --port-base or a lower --count");
  }
}

// Ones' complement sum of big-endian 16-bit words (RFC 1071).
static uint32_t sum16(const void *data, size_t len, uint32_t sum) {
  const uint8_t *bytes = data;
  for (; len > 1; bytes += 2, len -= 2) sum += (uint32_t)bytes[0] << 8 | bytes[1];
  if (len) sum += (uint32_t)bytes[0] << 8;
  return sum;
}

static uint16_t fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)~sum;
}

// TCP and UDP checksums cover a pseudo header: conntrack verifies them in
// PREROUTING (nf_conntrack_checksum=1) and drops the packet as invalid if wrong.
static uint16_t l4_checksum(uint32_t src, uint32_t dst, uint8_t protocol, const void *l4, size_t len) {
  uint32_t sum = (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + protocol + (uint32_t)len;
  return fold(sum16(l4, len, sum));
}

// Tuple `index` of the run: the source address varies fastest, so consecutive
// entries land in unrelated hash buckets, like a spoofed-source flood.
static void build_packet(struct packet *packet, const struct config *config, uint64_t index, uint32_t seq_seed) {
  uint32_t src = config->first_host + (uint32_t)(index % config->host_count);
  if (src >= config->dst && config->dst >= config->first_host) src++; // dst is skipped
  uint16_t sport = (uint16_t)(config->port_base + index / config->host_count);

  memset(packet, 0, sizeof *packet);
  packet->ip.version = 4;
  packet->ip.ihl = 5;
  packet->ip.ttl = 64;
  packet->ip.saddr = htonl(src);
  packet->ip.daddr = htonl(config->dst);
  // tot_len, id and the header checksum are filled in by Linux on IP_HDRINCL
  // sockets (raw(7)).
  if (config->proto == PROTO_UDP) {
    packet->ip.protocol = IPPROTO_UDP;
    packet->l4.udp.source = htons(sport);
    packet->l4.udp.dest = htons(UDP_DST_PORT);
    packet->l4.udp.len = htons(sizeof packet->l4.udp);
    uint16_t check = l4_checksum(src, config->dst, IPPROTO_UDP, &packet->l4.udp, sizeof packet->l4.udp);
    packet->l4.udp.check = htons(check ? check : 0xffff); // 0 would mean "no checksum"
  } else {
    packet->ip.protocol = IPPROTO_TCP;
    packet->l4.tcp.source = htons(sport);
    packet->l4.tcp.dest = htons(SYN_DST_PORT);
    // Knuth's multiplicative hash: distinct, unpredictable-looking initial sequences.
    packet->l4.tcp.seq = htonl((uint32_t)index * 2654435761u ^ seq_seed);
    packet->l4.tcp.doff = 5;
    packet->l4.tcp.syn = 1;
    packet->l4.tcp.window = htons(64240);
    packet->l4.tcp.check =
        htons(l4_checksum(src, config->dst, IPPROTO_TCP, &packet->l4.tcp, sizeof packet->l4.tcp));
  }
}

static void print_result(const struct config *config, uint64_t sent, uint64_t failed, uint64_t first_ns,
                         uint64_t last_ns) {
  double seconds = sent + failed > 0 ? (double)(last_ns - first_ns) / 1e9 : 0;
  double rate = seconds > 0 ? (double)sent / seconds : 0;
  char target[24] = "null";
  if (config->rate) snprintf(target, sizeof target, "%llu", (unsigned long long)config->rate);
  printf("{\"sent\":%llu,\"failed\":%llu,\"seconds\":%.6f,\"ratePerSecond\":%.1f,\"proto\":\"%s\",\"target\":%s}\n",
         (unsigned long long)sent, (unsigned long long)failed, seconds, rate,
         config->proto == PROTO_UDP ? "udp" : "syn", target);
  fflush(stdout);
}

int main(int argc, char **argv) {
  struct config config = {.proto = PROTO_UDP, .port_base = 1024};
  parse_args(argc, argv, &config);

  // IPPROTO_RAW implies IP_HDRINCL and receives nothing, so no receive queue fills up.
  int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
  if (fd < 0) {
    fprintf(stderr, "stormgen: raw socket: %s; run as root (CAP_NET_RAW)\n", strerror(errno));
    return 1;
  }
  // Without IP_RECVERR a raw socket swallows ENOBUFS (a full backlog on the
  // veth's peer), and those drops would go uncounted.
  int on = 1;
  if (setsockopt(fd, IPPROTO_IP, IP_RECVERR, &on, sizeof on) < 0) {
    fprintf(stderr, "stormgen: IP_RECVERR: %s; needs Linux\n", strerror(errno));
    return 1;
  }
  // The default 50 us timer slack would blur wakeups only 100 us apart.
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

  struct sigaction action = {.sa_handler = on_signal}; // no SA_RESTART: sleeps end at once
  sigaction(SIGINT, &action, NULL);
  sigaction(SIGTERM, &action, NULL);

  struct sockaddr_in dst = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(config.dst)};
  static struct packet packets[BATCH];
  struct iovec iovecs[BATCH];
  struct mmsghdr messages[BATCH];
  size_t packet_len = sizeof(struct iphdr) + (config.proto == PROTO_UDP ? sizeof(struct udphdr) : sizeof(struct tcphdr));
  for (int i = 0; i < BATCH; i++) {
    iovecs[i] = (struct iovec){.iov_base = &packets[i], .iov_len = packet_len};
    messages[i] = (struct mmsghdr){.msg_hdr = {.msg_name = &dst, .msg_namelen = sizeof dst, .msg_iov = &iovecs[i], .msg_iovlen = 1}};
  }

  // Never reuse a tuple: the tuple space bounds a run that has only --seconds.
  uint64_t limit = config.host_count * (65536 - config.port_base);
  if (config.count && config.count < limit) limit = config.count;
  uint64_t deadline_ns = config.seconds > 0 ? (uint64_t)(config.seconds * 1e9 + 0.5) : UINT64_MAX;
  uint32_t seq_seed = (uint32_t)now_ns() * 2246822519u;
  uint64_t burst = config.rate * WAKE_INTERVAL_NS / 1000000000ULL;
  if (burst < 1) burst = 1;
  if (burst > BATCH) burst = BATCH;

  uint64_t attempts = 0, sent = 0, failed = 0; // attempts = sent + failed = tuples used
  uint64_t start_ns = now_ns(), last_ns = start_ns;
  int exit_code = 0;
  while (!stop_requested && attempts < limit) {
    uint64_t elapsed_ns = now_ns() - start_ns;
    if (elapsed_ns >= deadline_ns) break;
    uint64_t batch = limit - attempts < BATCH ? limit - attempts : BATCH;
    if (config.rate) {
      // Token bucket: packet k is due at k / rate seconds after the start.
      uint64_t due = (uint64_t)((double)config.rate * (double)elapsed_ns / 1e9) + 1;
      if (due <= attempts) {
        // Wake for a burst of up to WAKE_INTERVAL_NS worth of packets, not for
        // each one: a wakeup costs several packets' worth of CPU. Near the end
        // of the run, wake for the next packet, and spin through the last
        // WAKE_INTERVAL_NS before --seconds ends: a late wakeup there would
        // drop the packets still due.
        if (deadline_ns - elapsed_ns <= WAKE_INTERVAL_NS) continue;
        uint64_t wake_index = attempts + burst - 1;
        if (wake_index >= limit) wake_index = limit - 1;
        uint64_t wake_ns = (uint64_t)((double)wake_index * 1e9 / (double)config.rate);
        if (wake_ns >= deadline_ns) wake_ns = (uint64_t)((double)attempts * 1e9 / (double)config.rate);
        if (wake_ns > deadline_ns) wake_ns = deadline_ns;
        wake_ns += start_ns;
        struct timespec wake = {.tv_sec = (time_t)(wake_ns / 1000000000ULL), .tv_nsec = (long)(wake_ns % 1000000000ULL)};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &wake, NULL);
        continue;
      }
      if (due - attempts < batch) batch = due - attempts;
    }

    for (uint64_t i = 0; i < batch; i++) build_packet(&packets[i], &config, attempts + i, seq_seed);
    uint64_t done = 0;
    while (done < batch) {
      int n = sendmmsg(fd, &messages[done], (unsigned)(batch - done), 0);
      if (n > 0) {
        sent += (uint64_t)n;
        done += (uint64_t)n;
      } else if (errno == EINTR) {
        if (stop_requested) break; // the rest of the batch was never sent
      } else if (errno == ENOBUFS || errno == EAGAIN || errno == ENOMEM) {
        failed++; // this packet is lost; its tuple is not reused
        done++;
      } else {
        fprintf(stderr, "stormgen: sendmmsg to %s: %s; check the route to --dst in this netns\n",
                inet_ntoa(dst.sin_addr), strerror(errno));
        exit_code = 1;
        break;
      }
    }
    attempts += done;
    last_ns = now_ns();
    if (exit_code) break;
  }
  print_result(&config, sent, failed, start_ns, last_ns);
  close(fd);
  return exit_code;
}

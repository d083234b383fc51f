/*
 * audit-read: the kernel audit records agentbox shows as denials (Landlock, seccomp, and
 * file calls the box refused).
 *
 *   audit-read --status               "enabled=N readlog=ok|ERROR"; exit 0 when records can be read
 *   audit-read --rules                the keys of agentbox's audit rules in the kernel, one per line
 *   audit-read [--enable] [--uid UID --key KEY] [TYPE]...
 *
 * Joins the audit socket's read-only multicast group (AUDIT_NLGRP_READLOG, needs
 * CAP_AUDIT_READ): it never becomes the audit daemon, so auditd, where one runs, keeps its
 * role and its records. Prints "ready", then each record of the given types (all when none)
 * as one line, "TYPE<TAB>TEXT", until stdin closes or SIGTERM. An 'f' on stdin is a fence:
 * "fence" is printed once every record the kernel queued before it has been printed.
 *
 * --enable: turns the kernel's auditing on (AUDIT_SET enabled=1) when it is off, which
 * Landlock and seccomp need to log anything; a locked configuration (enabled=2) is left
 * as it is. --uid/--key: adds one exit rule, keyed KEY, recording the failed file calls
 * (open, openat, openat2, creat, execve, execveat, mkdir, mkdirat, unlink, unlinkat,
 * rename, renameat, renameat2, truncate) of UID, and removes it again on exit. KEY is
 * "agentbox:PID:..." with the launcher's PID: rules left by a launcher that died are
 * removed at the next start (their PID no longer runs).
 *
 * The kernel hex-encodes untrusted strings in audit text; any control byte left is printed
 * as '?', so a record is always one line. Exits 4 when records cannot be read or the rule
 * cannot be added (fail closed: the caller then knows denials would go unseen).
 * Written against the kernel UAPI with its own definitions, so no audit headers are needed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

#define NETLINK_AUDIT_ 9
#define AUDIT_GET 1000
#define AUDIT_SET 1001
#define AUDIT_LIST_RULES 1013
#define AUDIT_ADD_RULE 1011
#define AUDIT_DEL_RULE 1012
#define AUDIT_NLGRP_READLOG 1
#define AUDIT_TRUSTED_APP 1121
#define AUDIT_STATUS_ENABLED 1
#define AUDIT_FILTER_EXIT 0x04
#define AUDIT_ALWAYS 2
#define AUDIT_BITMASK_SIZE 64
#define AUDIT_MAX_FIELDS 64
#define AUDIT_UID 1
#define AUDIT_ARCH 11
#define AUDIT_SUCCESS 104
/* The rule's value for "the call failed" (auditctl's success=0; the kernel maps it). */
#define RULE_FAILED 0
#define AUDIT_FILTERKEY 210
#define AUDIT_EQUAL 0x40000000
#define ARCH_X86_64 0xc000003eU

struct audit_status_min { uint32_t mask, enabled, failure, pid, rate_limit, backlog_limit, lost, backlog; };
struct audit_rule_data {
  uint32_t flags, action, field_count;
  uint32_t mask[AUDIT_BITMASK_SIZE];
  uint32_t fields[AUDIT_MAX_FIELDS], values[AUDIT_MAX_FIELDS], fieldflags[AUDIT_MAX_FIELDS];
  uint32_t buflen;
  char buf[];
};

static const int SYSCALLS[] = { 2 /* open */, 257 /* openat */, 437 /* openat2 */, 85 /* creat */, 59 /* execve */, 322 /* execveat */,
                                83 /* mkdir */, 258 /* mkdirat */, 87 /* unlink */, 263 /* unlinkat */, 82 /* rename */,
                                264 /* renameat */, 316 /* renameat2 */, 76 /* truncate */ };

/* One request on a fresh socket; returns the kernel's answer (0 or -errno), with the
 * first reply of type `want` copied to out when given. */
static int request(uint16_t type, const void *data, size_t len, uint16_t want, void *out, size_t outlen) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_AUDIT_);
  if (fd < 0) return -errno;
  char msg[NLMSG_SPACE(8192)];
  if (NLMSG_SPACE(len) > sizeof msg) { close(fd); return -E2BIG; }
  memset(msg, 0, sizeof msg);
  struct nlmsghdr *h = (struct nlmsghdr *)msg;
  h->nlmsg_len = NLMSG_LENGTH(len);
  h->nlmsg_type = type;
  h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  h->nlmsg_seq = 1;
  memcpy(NLMSG_DATA(h), data, len);
  struct sockaddr_nl k = { .nl_family = AF_NETLINK };
  if (sendto(fd, msg, h->nlmsg_len, 0, (struct sockaddr *)&k, sizeof k) < 0) { int e = -errno; close(fd); return e; }
  int result = -ETIMEDOUT;
  static char buf[65536];
  struct pollfd p = { .fd = fd, .events = POLLIN };
  while (poll(&p, 1, 1000) > 0) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    for (struct nlmsghdr *r = (struct nlmsghdr *)buf; NLMSG_OK(r, (unsigned)n); r = NLMSG_NEXT(r, n)) {
      if (r->nlmsg_type == NLMSG_ERROR) {
        int e = ((struct nlmsgerr *)NLMSG_DATA(r))->error;
        if (e != 0 || want == 0) { close(fd); return e; }
      } else if (r->nlmsg_type == want && out) {
        size_t l = r->nlmsg_len - NLMSG_HDRLEN;
        memcpy(out, NLMSG_DATA(r), l < outlen ? l : outlen);
        close(fd);
        return 0;
      }
    }
  }
  close(fd);
  return result;
}

static int enabled_state(void) {
  struct audit_status_min s = { 0 };
  return request(AUDIT_GET, &s, 0, AUDIT_GET, &s, sizeof s) == 0 ? (int)s.enabled : -1;
}

static int join_readlog(void) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_AUDIT_);
  if (fd < 0) return -1;
  struct sockaddr_nl g = { .nl_family = AF_NETLINK, .nl_groups = 1U << (AUDIT_NLGRP_READLOG - 1) };
  if (bind(fd, (struct sockaddr *)&g, sizeof g) != 0) { int e = errno; close(fd); errno = e; return -1; }
  int rcv = 8 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv);
  return fd;
}

static struct audit_rule_data *rule_for(unsigned uid, const char *key, size_t *len) {
  size_t klen = strlen(key);
  *len = sizeof(struct audit_rule_data) + klen;
  struct audit_rule_data *r = calloc(1, *len);
  if (!r) return NULL;
  r->flags = AUDIT_FILTER_EXIT;
  r->action = AUDIT_ALWAYS;
  for (size_t i = 0; i < sizeof SYSCALLS / sizeof *SYSCALLS; i++) r->mask[SYSCALLS[i] / 32] |= 1U << (SYSCALLS[i] % 32);
  uint32_t f[4][2] = { { AUDIT_ARCH, ARCH_X86_64 }, { AUDIT_UID, uid }, { AUDIT_SUCCESS, RULE_FAILED }, { AUDIT_FILTERKEY, (uint32_t)klen } };
  for (int i = 0; i < 4; i++) { r->fields[i] = f[i][0]; r->values[i] = f[i][1]; r->fieldflags[i] = AUDIT_EQUAL; }
  r->field_count = 4;
  r->buflen = (uint32_t)klen;
  memcpy(r->buf, key, klen);
  return r;
}

/* Removes rules keyed "agentbox:PID:..." whose launcher PID no longer runs; with list,
 * prints every agentbox rule's key instead. */
static void purge_stale(int list) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_AUDIT_);
  if (fd < 0) return;
  struct { struct nlmsghdr h; } req = { .h = { .nlmsg_len = NLMSG_LENGTH(0), .nlmsg_type = AUDIT_LIST_RULES, .nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK, .nlmsg_seq = 2 } };
  struct sockaddr_nl k = { .nl_family = AF_NETLINK };
  if (sendto(fd, &req, req.h.nlmsg_len, 0, (struct sockaddr *)&k, sizeof k) < 0) { close(fd); return; }
  static char buf[65536];
  static char stale[32][NLMSG_SPACE(sizeof(struct audit_rule_data) + 256)];
  size_t stale_len[32];
  int nstale = 0, done = 0;
  struct pollfd p = { .fd = fd, .events = POLLIN };
  while (!done && poll(&p, 1, 1000) > 0) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    for (struct nlmsghdr *r = (struct nlmsghdr *)buf; NLMSG_OK(r, (unsigned)n); r = NLMSG_NEXT(r, n)) {
      if (r->nlmsg_type == NLMSG_DONE || r->nlmsg_type == NLMSG_ERROR) { done = r->nlmsg_type == NLMSG_DONE; continue; }
      if (r->nlmsg_type != AUDIT_LIST_RULES) continue;
      struct audit_rule_data *d = NLMSG_DATA(r);
      size_t off = 0;
      for (uint32_t i = 0; i < d->field_count && i < AUDIT_MAX_FIELDS; i++) {
        if (d->fields[i] != AUDIT_FILTERKEY) continue;
        char key[256] = { 0 };
        size_t kl = d->values[i] < 255 ? d->values[i] : 255;
        if (off + kl <= d->buflen) memcpy(key, d->buf + off, kl);
        int pid = 0;
        if (list && strncmp(key, "agentbox:", 9) == 0) { printf("%s\n", key); continue; }
        if (!list && strncmp(key, "agentbox:", 9) == 0 && (pid = atoi(key + 9)) > 0 && kill(pid, 0) != 0 && errno == ESRCH && nstale < 32) {
          size_t l = r->nlmsg_len - NLMSG_HDRLEN;
          if (l <= sizeof stale[0]) { memcpy(stale[nstale], d, l); stale_len[nstale++] = l; }
        }
      }
      (void)off;
    }
  }
  close(fd);
  for (int i = 0; i < nstale; i++) request(AUDIT_DEL_RULE, stale[i], stale_len[i], 0, NULL, 0);
}

static volatile sig_atomic_t stop;
static void on_term(int s) { (void)s; stop = 1; }

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "--status") == 0) {
    int e = enabled_state();
    int fd = join_readlog();
    printf("enabled=%d readlog=%s\n", e, fd >= 0 ? "ok" : strerror(errno));
    return fd >= 0 ? 0 : 4;
  }
  if (argc == 2 && strcmp(argv[1], "--rules") == 0) { purge_stale(1); return 0; }
  int enable = 0;
  long uid = -1;
  const char *key = NULL;
  unsigned types[64];
  int ntypes = 0, i = 1;
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--enable") == 0) enable = 1;
    else if (strcmp(argv[i], "--uid") == 0 && i + 1 < argc) uid = atol(argv[++i]);
    else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc) key = argv[++i];
    else if (ntypes < 64) types[ntypes++] = (unsigned)strtoul(argv[i], NULL, 10);
  }
  if ((uid >= 0) != (key != NULL) || (key && (strncmp(key, "agentbox:", 9) != 0 || strlen(key) > 200))) {
    fprintf(stderr, "agentbox audit-read: --uid and --key go together; the key is agentbox:PID:...\n");
    return 2;
  }
  int fd = join_readlog();
  if (fd < 0) { fprintf(stderr, "agentbox audit-read: join the audit read group: %s\n", strerror(errno)); return 4; }
  if (enable && enabled_state() == 0) {
    struct audit_status_min s = { .mask = AUDIT_STATUS_ENABLED, .enabled = 1 };
    int e = request(AUDIT_SET, &s, sizeof s, 0, NULL, 0);
    if (e != 0) { fprintf(stderr, "agentbox audit-read: turn the kernel's auditing on: %s\n", strerror(-e)); return 4; }
  }
  struct audit_rule_data *rule = NULL;
  size_t rule_len = 0;
  signal(SIGTERM, on_term);
  signal(SIGINT, on_term);
  signal(SIGPIPE, SIG_IGN);
  if (key) {
    purge_stale(0);
    rule = rule_for((unsigned)uid, key, &rule_len);
    int e = rule ? request(AUDIT_ADD_RULE, rule, rule_len, 0, NULL, 0) : -ENOMEM;
    if (e != 0 && e != -EEXIST) { fprintf(stderr, "agentbox audit-read: add the audit rule: %s\n", strerror(-e)); return 4; }
  }
  printf("ready\tenabled=%d\n", enabled_state());
  fflush(stdout);
  static char buf[65536];
  struct pollfd p[2] = { { .fd = fd, .events = POLLIN }, { .fd = 0, .events = POLLIN } };
  int code = 0;
  while (!stop) {
    if (poll(p, 2, -1) < 0) { if (errno == EINTR) continue; code = 1; break; }
    if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      char c;
      if (read(0, &c, 1) <= 0) break;
      /* 'f': a fence. The kernel queues records in order, so once a message of ours sent
       * now comes back, every record of the processes that ended before it has too. */
      if (c == 'f') {
        char text[64];
        int len = snprintf(text, sizeof text, "agentbox-fence %d", (int)getpid());
        if (request(AUDIT_TRUSTED_APP, text, (size_t)len + 1, 0, NULL, 0) != 0) { printf("fence\n"); fflush(stdout); }
      }
    }
    if (!(p[0].revents & POLLIN)) continue;
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      if (errno == ENOBUFS) { printf("lost\t-\n"); fflush(stdout); continue; }
      code = 1;
      break;
    }
    /* One record per datagram. The kernel sets an audit record's nlmsg_len to its text's
     * length without the header (a historic quirk), so the datagram's size bounds the text. */
    if ((size_t)n < NLMSG_HDRLEN) continue;
    struct nlmsghdr *h = (struct nlmsghdr *)buf;
    if (h->nlmsg_type == AUDIT_TRUSTED_APP) {
      char mine[64];
      snprintf(mine, sizeof mine, "agentbox-fence %d", (int)getpid());
      buf[n] = 0;
      if (strstr(buf + NLMSG_HDRLEN, mine) && strstr(buf + NLMSG_HDRLEN, " uid=0 ")) { printf("fence\n"); fflush(stdout); }
      continue;
    }
    int want = ntypes == 0;
    for (int t = 0; t < ntypes; t++) if (types[t] == h->nlmsg_type) want = 1;
    if (!want) continue;
    char *t = buf + NLMSG_HDRLEN;
    size_t len = (size_t)n - NLMSG_HDRLEN;
    printf("%u\t", h->nlmsg_type);
    for (size_t j = 0; j < len && t[j]; j++) putchar((unsigned char)t[j] < 0x20 || t[j] == 0x7f ? '?' : t[j]);
    putchar('\n');
    if (fflush(stdout) != 0) break;
  }
  if (rule) request(AUDIT_DEL_RULE, rule, rule_len, 0, NULL, 0);
  return code;
}

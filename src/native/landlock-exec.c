/*
 * landlock-exec: the second file-system layer under bubblewrap. Restricts itself with
 * Landlock, then execs the agent, so the agent and every child keep the restriction.
 *
 *   landlock-exec [--hold-fd FD] [--ro PATH]... [--rw PATH]... [--x PATH]... [--connect PORT]...
 *                 [--seccomp-fd FD] -- CMD ARGS...
 *
 * --ro: read files and list directories under PATH; --rw: also create, change, delete;
 * --x: execute under PATH; --connect PORT: the only TCP port that may be connected to
 * (needs ABI 4; without any --connect and ABI >= 4, no TCP connect or bind at all).
 * Exits 4 without running CMD if Landlock is unavailable or a rule cannot be added
 * (fail closed); prints the ABI it enforced with --abi. Every fd above 2 is closed
 * before CMD runs. --seccomp-fd: a seccomp BPF program (struct sock_filter array, as
 * bubblewrap's --seccomp reads it) applied after Landlock, for `agentbox exec`, which joins
 * a running box from outside and must carry the box's own filter in, and for the box
 * itself, where it is installed with SECCOMP_FILTER_FLAG_LOG on top of bubblewrap's
 * copy, so that the kernel audits what it refuses (bubblewrap's prctl cannot ask for that).
 * --hold-fd FD: before anything else, wait until the launcher writes one byte to FD:
 * 'g' goes on, anything else or EOF exits 4 (the launcher could not set up what watches
 * the box, so the agent does not run unwatched).
 * Written against the kernel UAPI with its own definitions, so no kernel headers are needed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "landlock.h"

static int fail(const char *what) {
  fprintf(stderr, "agentbox landlock: %s: %s\n", what, strerror(errno));
  return 4;
}

int main(int argc, char **argv) {
  long abi = ll_abi();
  if (argc == 2 && strcmp(argv[1], "--abi") == 0) { printf("%ld\n", abi); return abi > 0 ? 0 : 4; }
  if (abi < 1) return fail("Landlock is not available in this kernel");

  uint64_t fs_all = ll_fs_all(abi);
  uint64_t ro = LL_FS_READ_FILE | LL_FS_READ_DIR;
  uint64_t rw = fs_all & ~(LL_FS_EXECUTE | LL_FS_MAKE_CHAR | LL_FS_MAKE_BLOCK);
  uint64_t x = LL_FS_EXECUTE | LL_FS_READ_FILE | LL_FS_READ_DIR;
  int rs = ll_ruleset(abi);
  if (rs < 0) return fail("landlock_create_ruleset");

  int seccomp_fd = -1;
  int i = 1;
  if (argc > 2 && strcmp(argv[1], "--hold-fd") == 0) {
    char go = 0;
    ssize_t n;
    do n = read(atoi(argv[2]), &go, 1); while (n < 0 && errno == EINTR);
    if (n != 1 || go != 'g') { fprintf(stderr, "agentbox landlock: the launcher did not release the box (its watchers could not start)\n"); return 4; }
    close(atoi(argv[2]));
    i = 3;
  }
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) { i++; break; }
    if (i + 1 >= argc) { fprintf(stderr, "agentbox landlock: %s needs a value\n", argv[i]); return 2; }
    const char *opt = argv[i], *val = argv[++i];
    if (strcmp(opt, "--seccomp-fd") == 0) {
      seccomp_fd = atoi(val);
      continue;
    }
    if (strcmp(opt, "--connect") == 0) {
      if (abi < 4) continue; /* no network rules before ABI 4: bubblewrap's empty network namespace still holds */
      struct ll_net_port_attr np = { .allowed_access = LL_NET_CONNECT_TCP, .port = strtoull(val, NULL, 10) };
      if (syscall(__NR_landlock_add_rule, rs, LL_RULE_NET_PORT, &np, 0) != 0) return fail("add net rule");
      continue;
    }
    uint64_t access = strcmp(opt, "--ro") == 0 ? ro : strcmp(opt, "--rw") == 0 ? rw : strcmp(opt, "--x") == 0 ? x : 0;
    if (access == 0) { fprintf(stderr, "agentbox landlock: unknown option %s\n", opt); return 2; }
    int fd = open(val, O_PATH | O_CLOEXEC);
    if (fd < 0) { if (errno == ENOENT) continue; return fail(val); }
    if (ll_allow(rs, fd, access & fs_all) != 0) { close(fd); return fail(val); }
    close(fd);
  }
  if (i >= argc) { fprintf(stderr, "agentbox landlock: no command after --\n"); return 2; }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return fail("no_new_privs");
  /* ABI 7: the agent's denials are logged through the audit subsystem after the exec too
   * (by default only the exec that called restrict_self logs), so agentbox can show them. */
  if (ll_restrict(rs, abi >= 7 ? LL_RESTRICT_SELF_LOG_NEW_EXEC_ON : 0) != 0) return fail("landlock_restrict_self");
  close(rs);
  if (seccomp_fd >= 0) {
    static struct sock_filter prog[4096];
    size_t got = 0;
    for (;;) {
      ssize_t n = read(seccomp_fd, (char *)prog + got, sizeof prog - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return fail("read the seccomp program");
      if (n == 0) break;
      got += (size_t)n;
      if (got == sizeof prog) { fprintf(stderr, "agentbox landlock: seccomp program too large\n"); return 4; }
    }
    if (got == 0 || got % sizeof(struct sock_filter) != 0) { fprintf(stderr, "agentbox landlock: the seccomp program is not a whole number of instructions\n"); return 4; }
    struct sock_fprog fprog = { .len = (unsigned short)(got / sizeof(struct sock_filter)), .filter = prog };
    /* FLAG_LOG: the refusals are audited (kernel.seccomp.actions_logged decides which). */
    if (syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_LOG, &fprog) != 0 &&
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog, 0, 0) != 0) return fail("seccomp");
  }
  /* Nothing inherited beyond stdio reaches the agent (an fd of a host folder would be a
   * path out of the box's mounts). */
  syscall(436 /* close_range */, 3U, ~0U, 0U);
  execvp(argv[i], &argv[i]);
  fprintf(stderr, "agentbox: cannot run %s: %s\n", argv[i], strerror(errno));
  return errno == ENOENT ? 127 : 126;
}

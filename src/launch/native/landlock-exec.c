/*
 * landlock-exec: the second file-system layer under bubblewrap. Restricts itself with
 * Landlock, then execs the agent, so the agent and every child keep the restriction.
 *
 *   landlock-exec [--ro PATH]... [--rw PATH]... [--x PATH]... [--connect PORT]... -- CMD ARGS...
 *
 * --ro: read files and list directories under PATH; --rw: also create, change, delete;
 * --x: execute under PATH; --connect PORT: the only TCP port that may be connected to
 * (needs ABI 4; without any --connect and ABI >= 4, no TCP connect or bind at all).
 * Exits 4 without running CMD if Landlock is unavailable or a rule cannot be added
 * (fail closed); prints the ABI it enforced with --abi.
 * Written against the kernel UAPI with its own definitions, so no kernel headers are needed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef __NR_landlock_create_ruleset
#define __NR_landlock_create_ruleset 444
#define __NR_landlock_add_rule 445
#define __NR_landlock_restrict_self 446
#endif

struct ruleset_attr { uint64_t handled_access_fs; uint64_t handled_access_net; uint64_t scoped; };
struct path_beneath_attr { uint64_t allowed_access; int32_t parent_fd; } __attribute__((packed));
struct net_port_attr { uint64_t allowed_access; uint64_t port; };

#define RULE_PATH_BENEATH 1
#define RULE_NET_PORT 2
#define CREATE_RULESET_VERSION (1U << 0)

#define FS_EXECUTE (1ULL << 0)
#define FS_WRITE_FILE (1ULL << 1)
#define FS_READ_FILE (1ULL << 2)
#define FS_READ_DIR (1ULL << 3)
#define FS_REMOVE_DIR (1ULL << 4)
#define FS_REMOVE_FILE (1ULL << 5)
#define FS_MAKE_CHAR (1ULL << 6)
#define FS_MAKE_DIR (1ULL << 7)
#define FS_MAKE_REG (1ULL << 8)
#define FS_MAKE_SOCK (1ULL << 9)
#define FS_MAKE_FIFO (1ULL << 10)
#define FS_MAKE_BLOCK (1ULL << 11)
#define FS_MAKE_SYM (1ULL << 12)
#define FS_REFER (1ULL << 13)
#define FS_TRUNCATE (1ULL << 14)
#define FS_IOCTL_DEV (1ULL << 15)
#define NET_BIND_TCP (1ULL << 0)
#define NET_CONNECT_TCP (1ULL << 1)
#define SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#define SCOPE_SIGNAL (1ULL << 1)

static int fail(const char *what) {
  fprintf(stderr, "agentbox landlock: %s: %s\n", what, strerror(errno));
  return 4;
}

int main(int argc, char **argv) {
  long abi = syscall(__NR_landlock_create_ruleset, NULL, 0, CREATE_RULESET_VERSION);
  if (argc == 2 && strcmp(argv[1], "--abi") == 0) { printf("%ld\n", abi); return abi > 0 ? 0 : 4; }
  if (abi < 1) return fail("Landlock is not available in this kernel");

  uint64_t fs_all = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_READ_DIR | FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE_CHAR |
                    FS_MAKE_DIR | FS_MAKE_REG | FS_MAKE_SOCK | FS_MAKE_FIFO | FS_MAKE_BLOCK | FS_MAKE_SYM;
  if (abi >= 2) fs_all |= FS_REFER;
  if (abi >= 3) fs_all |= FS_TRUNCATE;
  if (abi >= 5) fs_all |= FS_IOCTL_DEV;
  uint64_t ro = FS_READ_FILE | FS_READ_DIR;
  uint64_t rw = fs_all & ~(FS_EXECUTE | FS_MAKE_CHAR | FS_MAKE_BLOCK);
  uint64_t x = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR;

  struct ruleset_attr attr = { .handled_access_fs = fs_all };
  size_t attr_size = sizeof(uint64_t);
  if (abi >= 4) { attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP; attr_size = 2 * sizeof(uint64_t); }
  if (abi >= 6) { attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL; attr_size = sizeof(attr); }
  int rs = (int)syscall(__NR_landlock_create_ruleset, &attr, attr_size, 0);
  if (rs < 0) return fail("landlock_create_ruleset");

  int i = 1;
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) { i++; break; }
    if (i + 1 >= argc) { fprintf(stderr, "agentbox landlock: %s needs a value\n", argv[i]); return 2; }
    const char *opt = argv[i], *val = argv[++i];
    if (strcmp(opt, "--connect") == 0) {
      if (abi < 4) continue; /* no network rules before ABI 4: bubblewrap's empty network namespace still holds */
      struct net_port_attr np = { .allowed_access = NET_CONNECT_TCP, .port = strtoull(val, NULL, 10) };
      if (syscall(__NR_landlock_add_rule, rs, RULE_NET_PORT, &np, 0) != 0) return fail("add net rule");
      continue;
    }
    uint64_t access = strcmp(opt, "--ro") == 0 ? ro : strcmp(opt, "--rw") == 0 ? rw : strcmp(opt, "--x") == 0 ? x : 0;
    if (access == 0) { fprintf(stderr, "agentbox landlock: unknown option %s\n", opt); return 2; }
    int fd = open(val, O_PATH | O_CLOEXEC);
    if (fd < 0) { if (errno == ENOENT) continue; return fail(val); }
    struct path_beneath_attr pb = { .allowed_access = access & fs_all, .parent_fd = fd };
    /* A file (not a directory) only takes file rights. */
    if (syscall(__NR_landlock_add_rule, rs, RULE_PATH_BENEATH, &pb, 0) != 0) {
      pb.allowed_access &= (FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV);
      if (syscall(__NR_landlock_add_rule, rs, RULE_PATH_BENEATH, &pb, 0) != 0) { close(fd); return fail(val); }
    }
    close(fd);
  }
  if (i >= argc) { fprintf(stderr, "agentbox landlock: no command after --\n"); return 2; }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return fail("no_new_privs");
  if (syscall(__NR_landlock_restrict_self, rs, 0) != 0) return fail("landlock_restrict_self");
  close(rs);
  execvp(argv[i], &argv[i]);
  fprintf(stderr, "agentbox: cannot run %s: %s\n", argv[i], strerror(errno));
  return errno == ENOENT ? 127 : 126;
}

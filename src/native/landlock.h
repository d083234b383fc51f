/*
 * The Landlock UAPI, with agentbox's own definitions so no kernel headers are needed,
 * and one helper: restrict the calling thread to a set of (fd, access) rules.
 * Shared by landlock-exec (the agent's layer) and overlay-commit (the commit's layer).
 */
#ifndef AGENTBOX_LANDLOCK_H
#define AGENTBOX_LANDLOCK_H
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef __NR_landlock_create_ruleset
#define __NR_landlock_create_ruleset 444
#define __NR_landlock_add_rule 445
#define __NR_landlock_restrict_self 446
#endif

struct ll_ruleset_attr { uint64_t handled_access_fs; uint64_t handled_access_net; uint64_t scoped; };
struct ll_path_beneath_attr { uint64_t allowed_access; int32_t parent_fd; } __attribute__((packed));
struct ll_net_port_attr { uint64_t allowed_access; uint64_t port; };

#define LL_RULE_PATH_BENEATH 1
#define LL_RULE_NET_PORT 2
#define LL_CREATE_RULESET_VERSION (1U << 0)

#define LL_FS_EXECUTE (1ULL << 0)
#define LL_FS_WRITE_FILE (1ULL << 1)
#define LL_FS_READ_FILE (1ULL << 2)
#define LL_FS_READ_DIR (1ULL << 3)
#define LL_FS_REMOVE_DIR (1ULL << 4)
#define LL_FS_REMOVE_FILE (1ULL << 5)
#define LL_FS_MAKE_CHAR (1ULL << 6)
#define LL_FS_MAKE_DIR (1ULL << 7)
#define LL_FS_MAKE_REG (1ULL << 8)
#define LL_FS_MAKE_SOCK (1ULL << 9)
#define LL_FS_MAKE_FIFO (1ULL << 10)
#define LL_FS_MAKE_BLOCK (1ULL << 11)
#define LL_FS_MAKE_SYM (1ULL << 12)
#define LL_FS_REFER (1ULL << 13)
#define LL_FS_TRUNCATE (1ULL << 14)
#define LL_FS_IOCTL_DEV (1ULL << 15)
#define LL_RESTRICT_SELF_LOG_NEW_EXEC_ON (1U << 1)
#define LL_NET_BIND_TCP (1ULL << 0)
#define LL_NET_CONNECT_TCP (1ULL << 1)
#define LL_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#define LL_SCOPE_SIGNAL (1ULL << 1)
/* File rights: what a rule on a file (not a directory) may carry. */
#define LL_FS_FILE_RIGHTS (LL_FS_EXECUTE | LL_FS_WRITE_FILE | LL_FS_READ_FILE | LL_FS_TRUNCATE | LL_FS_IOCTL_DEV)

/* The ABI this kernel offers (0 or less: no Landlock). */
static inline long ll_abi(void) { return syscall(__NR_landlock_create_ruleset, NULL, 0, LL_CREATE_RULESET_VERSION); }

/* Every file-system right this ABI knows. */
static inline uint64_t ll_fs_all(long abi) {
  uint64_t all = LL_FS_EXECUTE | LL_FS_WRITE_FILE | LL_FS_READ_FILE | LL_FS_READ_DIR | LL_FS_REMOVE_DIR | LL_FS_REMOVE_FILE |
                 LL_FS_MAKE_CHAR | LL_FS_MAKE_DIR | LL_FS_MAKE_REG | LL_FS_MAKE_SOCK | LL_FS_MAKE_FIFO | LL_FS_MAKE_BLOCK | LL_FS_MAKE_SYM;
  if (abi >= 2) all |= LL_FS_REFER;
  if (abi >= 3) all |= LL_FS_TRUNCATE;
  if (abi >= 5) all |= LL_FS_IOCTL_DEV;
  return all;
}

/* A ruleset handling every right of this ABI: file system, TCP (ABI 4), and abstract
 * unix sockets and signals scoped to the domain (ABI 6). Returns the fd or -1. */
static inline int ll_ruleset(long abi) {
  struct ll_ruleset_attr attr = { .handled_access_fs = ll_fs_all(abi) };
  size_t size = sizeof(uint64_t);
  if (abi >= 4) { attr.handled_access_net = LL_NET_BIND_TCP | LL_NET_CONNECT_TCP; size = 2 * sizeof(uint64_t); }
  if (abi >= 6) { attr.scoped = LL_SCOPE_ABSTRACT_UNIX_SOCKET | LL_SCOPE_SIGNAL; size = sizeof(attr); }
  return (int)syscall(__NR_landlock_create_ruleset, &attr, size, 0);
}

/* Adds `access` beneath `fd` (a directory, or a file, which takes file rights only). */
static inline int ll_allow(int rs, int fd, uint64_t access) {
  struct ll_path_beneath_attr pb = { .allowed_access = access, .parent_fd = fd };
  if (syscall(__NR_landlock_add_rule, rs, LL_RULE_PATH_BENEATH, &pb, 0) == 0) return 0;
  pb.allowed_access &= LL_FS_FILE_RIGHTS;
  return (int)syscall(__NR_landlock_add_rule, rs, LL_RULE_PATH_BENEATH, &pb, 0);
}

static inline int ll_restrict(int rs, unsigned flags) { return (int)syscall(__NR_landlock_restrict_self, rs, flags); }
#endif

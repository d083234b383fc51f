/*
 * overlay-commit's shared definitions (see main.c for what the helper does and how).
 */
#ifndef AGENTBOX_OVERLAY_COMMIT_H
#define AGENTBOX_OVERLAY_COMMIT_H
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "../landlock.h"

#ifndef __NR_openat2
#define __NR_openat2 437
#endif
#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#define RENAME_EXCHANGE (1 << 1)
#endif
struct ab_open_how { uint64_t flags; uint64_t mode; uint64_t resolve; };
#define AB_RESOLVE_NO_MAGICLINKS 0x02
#define AB_RESOLVE_NO_SYMLINKS 0x04

/* Directory depth is bounded by the C stack (about 500 bytes a level) and two fds a level. */
#define MAX_DEPTH 10000

/* A path of names, for reporting only: never passed to a system call. */
struct path { char *buf; size_t len, cap; };

enum { M_DIR = 1, M_END, M_FILE, M_LINK, M_WHITEOUT, M_SKIP, M_DONE, M_ABORT };
struct msg {
  uint32_t type, mode, uid, gid, opaque, namelen, targetlen, pad;
  int64_t atime_s, atime_ns, mtime_s, mtime_ns;
};
#define MAX_MSG (sizeof(struct msg) + 256 + 4096 + 8192)

enum { OP_RENAME = 1, OP_EXCHANGE, OP_TRASH, OP_CHMOD, OP_INPLACE };
struct op {
  int type, dirfd, applied, fellback;
  /* OP_CHMOD: the folder's own fd (chmod'ed through /proc/self/fd, no lookup), and
   * whether the folder's owner bits were lifted while staging (restored on rollback). */
  int selffd, lifted, have_old;
  char *name, *tmp, *rel;
  mode_t mode, oldmode;
  int tmpfd, backupfd;
  ino_t ino;
  struct timespec times[2];
};
struct frame { int fd, isnew, keep; mode_t mode; struct timespec times[2]; size_t pathlen; };

/* The failure reason reported on stdout (util.c). */
extern char reason[8192];
/* The writer's steps, in the order recorded, and the order they were applied in (ops.c). */
extern struct op *ops;
extern size_t nops, capops;
extern uid_t my_uid;
extern size_t *applied_order;
extern size_t napplied;

/* diff.c */
int diff_dir(int ufd, int lfd, int opaque, struct path *p, int depth);
int files_differ(int a, int b);
int diff_file(const char *copy, const char *file);

/* ops.c */
struct op *add_op(int type, int dirfd, const char *name, const char *tmp, const char *rel);
mode_t file_mode(uint32_t m);
mode_t dir_mode(uint32_t m);
int stage_file(int dirfd, const char *name, int src, const struct msg *m, int final_name);
int tmpfile_in(int dirfd);
int do_op(struct op *o);
int undo_op(struct op *o);
int rollback(void);
int stage_dir_mode(int fd, const struct stat *st, mode_t final, const char *rel);

/* reader.c */
int send_msg(int sock, const struct msg *m, const char *name, const char *target, int fd);
void fill_meta(struct msg *m, uint32_t type, const struct stat *st);
int read_upper(int sock, int ufd, struct path *p, int depth);

/* util.c */
int failf(const char *fmt, ...);
void out(const char *kind, const char *rel);
size_t path_push(struct path *p, const char *name);
void path_pop(struct path *p, size_t old);
int open_exact(const char *path, int flags);
int cmpstr(const void *a, const void *b);
char **list_names(int dirfd, size_t *count);
void free_names(char **names);
int has_xattr(int fd, const char *name, const char *want);
int is_whiteout(int dirfd, const char *name, const struct stat *st);
void raise_nofile(void);
int copy_fd(int from, int to);
void random_name(char out[40], const char *prefix);
int remove_tree(int dirfd, const char *name, int depth);
int chmod_fd(int fd, mode_t mode);
int remove_in(int dirfd, const char *name);

/* writer.c */
int writer(int sock, int gfd, uid_t uid);

#endif

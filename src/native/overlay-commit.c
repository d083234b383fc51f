/*
 * overlay-commit: lists, or commits into the granted folder, what an agent changed in
 * its session overlay's upper layer. Runs as root; never follows a symlink, walks by
 * directory fd (no path is ever longer than one name, so depth is bounded only by the
 * fd limit), and does every write as the agent's uid with no capabilities.
 *
 *   overlay-commit diff   UPPER LOWER
 *   overlay-commit commit UPPER GRANT UID GID
 *   overlay-commit diff-file   COPY FILE
 *   overlay-commit commit-file COPY FILE UID GID DEV INO
 *
 * UPPER is the overlay's upper directory (root-only, static once the box has ended);
 * LOWER/GRANT the granted directory. For a granted file, COPY is the session's copy the
 * box wrote to, FILE the granted file, DEV:INO its identity when the session started.
 *
 * commit: a root reader walks UPPER and hands each entry (regular files as open fds,
 * over SCM_RIGHTS) to a child that has dropped to UID:GID (no groups, no capabilities,
 * no_new_privs, not dumpable) and restricted itself with Landlock to the grant, so the
 * kernel refuses anything outside the grant or beyond the agent's own permissions,
 * whatever the upper layer holds or a racing process does.
 *
 * The child applies exactly what the overlay shows, all or nothing:
 *  1. stage: every new or changed entry is built beside its destination under an
 *     unpredictable name (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600 until complete; new
 *     and opaque directories as a whole staged tree); nothing visible changes yet;
 *  2. apply: each staged entry takes its place by rename (RENAME_NOREPLACE for new
 *     names, RENAME_EXCHANGE for replaced ones, so type changes are atomic), deleted
 *     entries are renamed aside, metadata is changed last; a file that belongs to
 *     another user is rewritten in place (its owner, mode and links stay), after all
 *     renames, from a staged copy, with a backup of its old content;
 *  3. any failure undoes every applied step in reverse and removes what was staged.
 * Regular files never carry setuid/setgid bits or foreign ownership at any moment:
 * they are created by the agent's uid with mode 0600 and chmod'ed (permission bits
 * only) before they are renamed into place.
 *
 * Output on stdout: NUL-terminated pairs KIND RELPATH with KIND added, modified,
 * deleted or skipped (FIFOs, sockets, devices: never committed); then for commit one
 * pair: "committed" COUNT, or "failed" REASON. Exit 0; 1 failed, nothing changed;
 * 3 failed and the rollback was incomplete (REASON says what is left); 2 usage or setup.
 */
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

#include "landlock.h"

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

/* ---------- small helpers ---------- */

static char reason[8192];

static int failf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, sizeof reason, fmt, ap);
  va_end(ap);
  return -1;
}

static void out(const char *kind, const char *rel) {
  fputs(kind, stdout);
  fputc(0, stdout);
  fputs(rel[0] ? rel : ".", stdout);
  fputc(0, stdout);
}

/* A path of names, for reporting only: never passed to a system call. */
struct path { char *buf; size_t len, cap; };
static size_t path_push(struct path *p, const char *name) {
  size_t old = p->len, n = strlen(name), need = p->len + n + 2;
  if (need > p->cap) {
    p->cap = need * 2;
    p->buf = realloc(p->buf, p->cap);
    if (!p->buf) { perror("realloc"); exit(2); }
  }
  if (p->len) p->buf[p->len++] = '/';
  memcpy(p->buf + p->len, name, n);
  p->len += n;
  p->buf[p->len] = 0;
  return old;
}
static void path_pop(struct path *p, size_t old) { p->len = old; if (p->buf) p->buf[old] = 0; }

/* An absolute path opened with no symlink anywhere in it (grants are resolved at load). */
static int open_exact(const char *path, int flags) {
  struct ab_open_how how = { .flags = (uint64_t)(flags | O_CLOEXEC), .resolve = AB_RESOLVE_NO_SYMLINKS | AB_RESOLVE_NO_MAGICLINKS };
  return (int)syscall(__NR_openat2, AT_FDCWD, path, &how, sizeof how);
}

static int cmpstr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The names in a directory (sorted, without . and ..); NULL-terminated. */
static char **list_names(int dirfd, size_t *count) {
  int d = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (d < 0) return NULL;
  DIR *dir = fdopendir(d);
  if (!dir) { close(d); return NULL; }
  size_t n = 0, cap = 16;
  char **names = malloc(cap * sizeof *names);
  struct dirent *e;
  errno = 0;
  while ((e = readdir(dir))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    if (n + 1 >= cap) names = realloc(names, (cap *= 2) * sizeof *names);
    names[n++] = strdup(e->d_name);
  }
  int err = errno;
  closedir(dir);
  if (err) { for (size_t i = 0; i < n; i++) free(names[i]); free(names); errno = err; return NULL; }
  qsort(names, n, sizeof *names, cmpstr);
  names[n] = NULL;
  *count = n;
  return names;
}
static void free_names(char **names) { if (!names) return; for (char **p = names; *p; p++) free(*p); free(names); }

static int has_xattr(int fd, const char *name, const char *want) {
  char v[8];
  ssize_t n = fgetxattr(fd, name, v, sizeof v);
  if (n < 0) return 0;
  return want == NULL || ((size_t)n == strlen(want) && !memcmp(v, want, (size_t)n));
}

/* Whiteouts: a 0/0 character device, or (xattr whiteouts) an empty file marked so. */
static int is_whiteout(int dirfd, const char *name, const struct stat *st) {
  if (S_ISCHR(st->st_mode) && st->st_rdev == 0) return 1;
  if (S_ISREG(st->st_mode) && st->st_size == 0) {
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return 0;
    int w = has_xattr(fd, "trusted.overlay.whiteout", NULL);
    close(fd);
    return w;
  }
  return 0;
}

static void raise_nofile(void) {
  struct rlimit rl;
  long max = 1 << 20;
  FILE *f = fopen("/proc/sys/fs/nr_open", "r");
  if (f) { if (fscanf(f, "%ld", &max) != 1) max = 1 << 20; fclose(f); }
  rl.rlim_cur = rl.rlim_max = (rlim_t)max;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

static int copy_fd(int from, int to) {
  if (lseek(from, 0, SEEK_SET) < 0) return -1;
  for (;;) {
    ssize_t n = copy_file_range(from, NULL, to, NULL, 1 << 30, 0);
    if (n == 0) return 0;
    if (n > 0) continue;
    if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) return -1;
    break;
  }
  char buf[1 << 16];
  for (;;) {
    ssize_t r = read(from, buf, sizeof buf);
    if (r < 0) { if (errno == EINTR) continue; return -1; }
    if (r == 0) return 0;
    for (ssize_t o = 0; o < r;) {
      ssize_t w = write(to, buf + o, (size_t)(r - o));
      if (w < 0) { if (errno == EINTR) continue; return -1; }
      o += w;
    }
  }
}

static void random_name(char out[40], const char *prefix) {
  unsigned char b[12];
  if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) { perror("getrandom"); exit(2); }
  int n = snprintf(out, 40, "%s", prefix);
  for (int i = 0; i < 12; i++) n += snprintf(out + n, (size_t)(40 - n), "%02x", b[i]);
}

/* Removes NAME under DIRFD and everything below it, by fd, never following links. */
static int remove_tree(int dirfd, const char *name, int depth) {
  struct stat st;
  if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return errno == ENOENT ? 0 : -1;
  if (S_ISDIR(st.st_mode)) {
    if (depth > MAX_DEPTH) { errno = ELOOP; return -1; }
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -1;
    fchmod(fd, 0700); /* our own staged directory may carry its final, read-only mode */
    size_t n;
    char **names = list_names(fd, &n);
    int rc = names ? 0 : -1;
    for (size_t i = 0; names && i < n; i++) if (remove_tree(fd, names[i], depth + 1) != 0) rc = -1;
    free_names(names);
    close(fd);
    if (rc != 0) return -1;
    return unlinkat(dirfd, name, AT_REMOVEDIR);
  }
  return unlinkat(dirfd, name, 0);
}

/* chmod of an open fd (O_PATH too) through /proc/self/fd: no lookup, no search permission needed. */
static int chmod_fd(int fd, mode_t mode) {
  char self[64];
  snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
  return fchmodat(AT_FDCWD, self, mode, 0);
}

/* Removes NAME in DIRFD even if the agent's own folder was just made unsearchable or
 * read-only by the commit (chmod 500 or 600): its owner's bits are lifted for the removal
 * and put back. */
static int remove_in(int dirfd, const char *name) {
  /* Through /proc/self/fd: the fd may be O_PATH, and "." is not reachable without search permission. */
  char self[64];
  snprintf(self, sizeof self, "/proc/self/fd/%d", dirfd);
  struct stat st;
  int lifted = 0;
  if (fstat(dirfd, &st) == 0 && st.st_uid == geteuid() && (st.st_mode & 0300) != 0300) lifted = fchmodat(AT_FDCWD, self, (st.st_mode & 07777) | 0300, 0) == 0;
  int rc = remove_tree(dirfd, name, 0);
  if (lifted) fchmodat(AT_FDCWD, self, st.st_mode & 07777, 0);
  return rc;
}

/* ---------- diff (root, read-only) ---------- */

static int diff_dir(int ufd, int lfd, int opaque, struct path *p, int depth) {
  if (depth > MAX_DEPTH) return failf("%s: deeper than %d directories", p->buf ? p->buf : ".", MAX_DEPTH);
  size_t n;
  char **names = list_names(ufd, &n);
  if (!names) return failf("%s: cannot list: %s", p->buf ? p->buf : ".", strerror(errno));
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    const char *name = names[i];
    struct stat st, lst;
    size_t old = path_push(p, name);
    if (fstatat(ufd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) { rc = failf("%s: %s", p->buf, strerror(errno)); break; }
    int lexists = lfd >= 0 && fstatat(lfd, name, &lst, AT_SYMLINK_NOFOLLOW) == 0;
    if (is_whiteout(ufd, name, &st)) {
      if (lexists) out("deleted", p->buf);
    } else if (S_ISDIR(st.st_mode)) {
      int cfd = openat(ufd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (cfd < 0) { rc = failf("%s: %s", p->buf, strerror(errno)); break; }
      int copq = has_xattr(cfd, "trusted.overlay.opaque", "y");
      int clfd = -1;
      if (lexists && S_ISDIR(lst.st_mode)) {
        clfd = openat(lfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if ((lst.st_mode & 07777) != (st.st_mode & 07777) || copq) out("modified", p->buf);
      } else out(lexists ? "modified" : "added", p->buf);
      rc = diff_dir(cfd, clfd, copq, p, depth + 1);
      close(cfd);
      if (clfd >= 0) close(clfd);
    } else if (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) {
      out(lexists ? "modified" : "added", p->buf);
    } else {
      out("skipped", p->buf);
    }
    path_pop(p, old);
  }
  /* An opaque directory replaces its lower one: what only the lower had goes. */
  if (rc == 0 && opaque && lfd >= 0) {
    size_t ln;
    char **lnames = list_names(lfd, &ln);
    for (size_t i = 0; lnames && i < ln; i++) {
      if (bsearch(&lnames[i], names, n, sizeof *names, cmpstr)) continue;
      size_t old = path_push(p, lnames[i]);
      out("deleted", p->buf);
      path_pop(p, old);
    }
    free_names(lnames);
  }
  free_names(names);
  return rc;
}

/* ---------- commit: the protocol between the root reader and the agent-uid writer ---------- */

enum { M_DIR = 1, M_END, M_FILE, M_LINK, M_WHITEOUT, M_SKIP, M_DONE, M_ABORT };
struct msg {
  uint32_t type, mode, uid, gid, opaque, namelen, targetlen, pad;
  int64_t atime_s, atime_ns, mtime_s, mtime_ns;
};
#define MAX_MSG (sizeof(struct msg) + 256 + 4096 + 8192)

static int send_msg(int sock, const struct msg *m, const char *name, const char *target, int fd) {
  char buf[MAX_MSG];
  size_t len = sizeof *m;
  memcpy(buf, m, sizeof *m);
  if (m->namelen) { memcpy(buf + len, name, m->namelen); len += m->namelen; }
  if (m->targetlen) { memcpy(buf + len, target, m->targetlen); len += m->targetlen; }
  struct iovec iov = { buf, len };
  union { char b[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } ctl;
  struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
  if (fd >= 0) {
    mh.msg_control = ctl.b;
    mh.msg_controllen = sizeof ctl.b;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  for (;;) {
    ssize_t r = sendmsg(sock, &mh, MSG_NOSIGNAL);
    if (r >= 0) return 0;
    if (errno != EINTR) return -1;
  }
}

static void fill_meta(struct msg *m, uint32_t type, const struct stat *st) {
  memset(m, 0, sizeof *m);
  m->type = type;
  if (st) {
    m->mode = st->st_mode;
    m->uid = st->st_uid;
    m->gid = st->st_gid;
    m->atime_s = st->st_atim.tv_sec;
    m->atime_ns = st->st_atim.tv_nsec;
    m->mtime_s = st->st_mtim.tv_sec;
    m->mtime_ns = st->st_mtim.tv_nsec;
  }
}

/* The reader: walks UPPER depth-first, sending DIR ... END around each directory. */
static int read_upper(int sock, int ufd, struct path *p, int depth) {
  if (depth > MAX_DEPTH) return failf("%s: deeper than %d directories", p->buf ? p->buf : ".", MAX_DEPTH);
  size_t n;
  char **names = list_names(ufd, &n);
  if (!names) return failf("%s: cannot list the upper layer: %s", p->buf ? p->buf : ".", strerror(errno));
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    const char *name = names[i];
    size_t old = path_push(p, name);
    struct stat st;
    struct msg m;
    if (fstatat(ufd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) { rc = failf("%s: %s", p->buf, strerror(errno)); break; }
    uint32_t nl = (uint32_t)strlen(name);
    if (is_whiteout(ufd, name, &st)) {
      fill_meta(&m, M_WHITEOUT, NULL);
      m.namelen = nl;
      rc = send_msg(sock, &m, name, NULL, -1);
    } else if (S_ISDIR(st.st_mode)) {
      int cfd = openat(ufd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (cfd < 0) { rc = failf("%s: %s", p->buf, strerror(errno)); break; }
      if (has_xattr(cfd, "trusted.overlay.redirect", NULL)) { close(cfd); rc = failf("%s: a renamed directory (overlay redirect) cannot be committed", p->buf); break; }
      fill_meta(&m, M_DIR, &st);
      m.opaque = (uint32_t)has_xattr(cfd, "trusted.overlay.opaque", "y");
      m.namelen = nl;
      rc = send_msg(sock, &m, name, NULL, -1);
      if (rc == 0) rc = read_upper(sock, cfd, p, depth + 1);
      fill_meta(&m, M_END, NULL);
      if (rc == 0) rc = send_msg(sock, &m, NULL, NULL, -1);
      close(cfd);
    } else if (S_ISREG(st.st_mode)) {
      int fd = openat(ufd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
      struct stat fst;
      if (fd < 0 || fstat(fd, &fst) != 0 || !S_ISREG(fst.st_mode) || fst.st_ino != st.st_ino) { if (fd >= 0) close(fd); rc = failf("%s: changed while it was read", p->buf); break; }
      if (has_xattr(fd, "trusted.overlay.metacopy", NULL)) { close(fd); rc = failf("%s: a metadata-only copy-up cannot be committed", p->buf); break; }
      fill_meta(&m, M_FILE, &fst);
      m.namelen = nl;
      rc = send_msg(sock, &m, name, NULL, fd);
      close(fd);
    } else if (S_ISLNK(st.st_mode)) {
      static char target[4097]; /* not on the stack: this function recurses */
      ssize_t t = readlinkat(ufd, name, target, sizeof target - 1);
      if (t < 0) { rc = failf("%s: %s", p->buf, strerror(errno)); break; }
      target[t] = 0;
      fill_meta(&m, M_LINK, &st);
      m.namelen = nl;
      m.targetlen = (uint32_t)t;
      rc = send_msg(sock, &m, name, target, -1);
    } else {
      fill_meta(&m, M_SKIP, &st);
      m.namelen = nl;
      rc = send_msg(sock, &m, name, NULL, -1);
    }
    if (rc != 0 && !reason[0]) failf("the committing process stopped early");
    path_pop(p, old);
  }
  free_names(names);
  return rc;
}

/* ---------- commit: the writer (agent uid) ---------- */

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
static struct op *ops;
static size_t nops, capops;
static uid_t my_uid;

static struct op *add_op(int type, int dirfd, const char *name, const char *tmp, const char *rel) {
  if (nops == capops) {
    capops = capops ? capops * 2 : 64;
    ops = realloc(ops, capops * sizeof *ops);
    if (!ops) { perror("realloc"); exit(2); }
  }
  struct op *o = &ops[nops++];
  memset(o, 0, sizeof *o);
  o->type = type;
  o->dirfd = dirfd;
  o->name = strdup(name);
  o->tmp = tmp ? strdup(tmp) : NULL;
  o->rel = strdup(rel);
  o->tmpfd = o->backupfd = -1;
  return o;
}

struct frame { int fd, isnew, keep; mode_t mode; struct timespec times[2]; size_t pathlen; };

static mode_t file_mode(uint32_t m) { return (mode_t)(m & 0777); }       /* never setuid, setgid or sticky */
static mode_t dir_mode(uint32_t m) { return (mode_t)(m & 03777); }       /* setgid and sticky mean inheritance */

static int stage_file(int dirfd, const char *name, int src, const struct msg *m, int final_name) {
  int fd = openat(dirfd, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return -1;
  struct timespec t[2] = { { m->atime_s, m->atime_ns }, { m->mtime_s, m->mtime_ns } };
  int rc = copy_fd(src, fd);
  if (rc == 0) rc = fchmod(fd, file_mode(m->mode));
  if (rc == 0) rc = futimens(fd, t);
  int saved = errno;
  close(fd);
  if (rc != 0 && !final_name) unlinkat(dirfd, name, 0);
  errno = saved;
  return rc;
}

static int tmpfile_in(int dirfd) {
  int fd = openat(dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)) return fd;
  char tmp[40];
  random_name(tmp, ".agentbox-");
  fd = openat(dirfd, tmp, O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd >= 0) unlinkat(dirfd, tmp, 0);
  return fd;
}

static int do_op(struct op *o) {
  switch (o->type) {
  case OP_RENAME:
    return renameat2(o->dirfd, o->tmp, o->dirfd, o->name, RENAME_NOREPLACE);
  case OP_EXCHANGE:
    if (renameat2(o->dirfd, o->tmp, o->dirfd, o->name, RENAME_EXCHANGE) == 0) return 0;
    if (errno != EINVAL && errno != ENOSYS) return -1;
    {
      /* A file system without RENAME_EXCHANGE: old aside, new in, both reversible. */
      char trash[40];
      random_name(trash, ".agentbox-");
      if (renameat2(o->dirfd, o->name, o->dirfd, trash, RENAME_NOREPLACE) != 0) return -1;
      if (renameat2(o->dirfd, o->tmp, o->dirfd, o->name, RENAME_NOREPLACE) != 0) {
        int saved = errno;
        renameat2(o->dirfd, trash, o->dirfd, o->name, RENAME_NOREPLACE);
        errno = saved;
        return -1;
      }
      free(o->tmp);
      o->tmp = strdup(trash);
      o->fellback = 1;
      return 0;
    }
  case OP_TRASH:
    return renameat2(o->dirfd, o->name, o->dirfd, o->tmp, RENAME_NOREPLACE);
  case OP_CHMOD: {
    struct stat st;
    if (fstat(o->selffd, &st) != 0) return -1;
    if (!o->have_old) { o->oldmode = st.st_mode & 07777; o->have_old = 1; }
    return chmod_fd(o->selffd, o->mode);
  }
  case OP_INPLACE: {
    int fd = openat(o->dirfd, o->name, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    int rc = fstat(fd, &st);
    if (rc == 0 && (!S_ISREG(st.st_mode) || st.st_ino != o->ino)) { errno = ESTALE; rc = -1; }
    if (rc == 0) rc = ftruncate(fd, 0);
    if (rc == 0) rc = copy_fd(o->tmpfd, fd);
    if (rc == 0) futimens(fd, o->times);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
  }
  }
  errno = EINVAL;
  return -1;
}

/* Undoes one applied step; returns 0 when the grant is as it was for that step. */
static int undo_op(struct op *o) {
  switch (o->type) {
  case OP_RENAME:
    return renameat2(o->dirfd, o->name, o->dirfd, o->tmp, RENAME_NOREPLACE);
  case OP_EXCHANGE:
    if (!o->fellback) return renameat2(o->dirfd, o->tmp, o->dirfd, o->name, RENAME_EXCHANGE);
    {
      char back[40];
      random_name(back, ".agentbox-");
      if (renameat2(o->dirfd, o->name, o->dirfd, back, RENAME_NOREPLACE) != 0) return -1;
      if (renameat2(o->dirfd, o->tmp, o->dirfd, o->name, RENAME_NOREPLACE) != 0) return -1;
      free(o->tmp);
      o->tmp = strdup(back);
      return 0;
    }
  case OP_TRASH:
    return renameat2(o->dirfd, o->tmp, o->dirfd, o->name, RENAME_NOREPLACE);
  case OP_CHMOD:
    return chmod_fd(o->selffd, o->oldmode);
  case OP_INPLACE: {
    if (o->backupfd < 0) { errno = ENODATA; return -1; }
    int fd = openat(o->dirfd, o->name, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = ftruncate(fd, 0);
    if (rc == 0) rc = copy_fd(o->backupfd, fd);
    close(fd);
    return rc;
  }
  }
  return -1;
}

/* The order steps were applied in (undo runs it backwards). */
static size_t *applied_order;
static size_t napplied;

/* What is staged but not applied goes; applied steps are undone, last first. */
static int rollback(void) {
  int clean = 1;
  for (size_t k = napplied; k-- > 0;) {
    struct op *o = &ops[applied_order[k]];
    if (o->applied && undo_op(o) != 0) {
      clean = 0;
      size_t l = strlen(reason);
      snprintf(reason + l, sizeof reason - l, "; could not undo %s: %s", o->rel, strerror(errno));
      continue;
    }
    o->applied = 0;
  }
  for (size_t i = 0; i < nops; i++) {
    struct op *o = &ops[i];
    if (!o->applied && (o->type == OP_RENAME || o->type == OP_EXCHANGE) && o->tmp) remove_in(o->dirfd, o->tmp);
  }
  /* Folders whose owner bits were lifted to stage inside them get their mode back, last. */
  for (size_t i = nops; i-- > 0;) {
    struct op *o = &ops[i];
    if (o->type == OP_CHMOD && o->lifted && !o->applied) chmod_fd(o->selffd, o->oldmode);
  }
  return clean;
}

/*
 * A merged folder of the agent's own: its final mode is set last (deepest first, after
 * every rename inside it), and if it is not writable and searchable by its owner now,
 * its owner bits are lifted while the commit works inside it. Returns 1 when an op was
 * recorded (the fd must stay open), 0 when nothing is needed, -1 on failure.
 */
static int stage_dir_mode(int fd, const struct stat *st, mode_t final, const char *rel) {
  mode_t orig = st->st_mode & 07777;
  int lift = (orig & 0700) != 0700;
  if ((orig & 03777) == final && !lift) return 0;
  struct op *o = add_op(OP_CHMOD, -1, rel, NULL, rel);
  o->selffd = fd;
  o->mode = (orig & 03777) == final ? orig : final;
  o->oldmode = orig;
  o->have_old = 1;
  if ((orig & 03777) != final) out("modified", rel);
  if (lift) {
    if (chmod_fd(fd, orig | 0700) != 0) return failf("%s: cannot lift the owner's permissions to commit inside it: %s", rel, strerror(errno)), -1;
    o->lifted = 1;
  }
  return 1;
}

static int writer(int sock, int gfd, uid_t uid) {
  my_uid = uid;
  struct frame *stack = NULL;
  size_t depth = 0, cap = 0;
  struct path p = { 0 };
  long committed = 0;
  char buf[MAX_MSG + 1];
  int rc = 0, done = 0;
  while (!done && rc == 0) {
    union { char b[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } ctl;
    struct iovec iov = { buf, MAX_MSG };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b };
    ssize_t r = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) { rc = failf("the upper layer could not be read to the end%s", reason[0] ? "" : ""); break; }
    if ((size_t)r < sizeof(struct msg)) { rc = failf("a short message from the reader"); break; }
    struct msg m;
    memcpy(&m, buf, sizeof m);
    if (sizeof m + m.namelen + m.targetlen != (size_t)r || m.namelen > 255 || m.targetlen > 4096 + 8191) { rc = failf("a malformed message from the reader"); break; }
    char name[256] = { 0 }, target[4096 + 8192] = { 0 };
    memcpy(name, buf + sizeof m, m.namelen);
    memcpy(target, buf + sizeof m + m.namelen, m.targetlen);
    int srcfd = -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) memcpy(&srcfd, CMSG_DATA(c), sizeof srcfd);
    if (m.type != M_ABORT && m.type != M_DONE && m.type != M_END && m.namelen == 0 && !(m.type == M_DIR && depth == 0)) { rc = failf("an entry without a name"); break; }
    if ((strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, "..")) ) { rc = failf("a name that is not a single path component"); break; }

    struct frame *F = depth ? &stack[depth - 1] : NULL;
    size_t old = p.len;
    if (m.type == M_DIR || m.type == M_FILE || m.type == M_LINK || m.type == M_WHITEOUT || m.type == M_SKIP) if (m.namelen) path_push(&p, name);
    const char *rel = p.buf ? p.buf : "";
    struct stat dst;
    int dexists = F && !F->isnew && fstatat(F->fd, name, &dst, AT_SYMLINK_NOFOLLOW) == 0;

    switch (m.type) {
    case M_DIR: {
      if (depth + 1 >= cap) { cap = cap ? cap * 2 : 64; stack = realloc(stack, cap * sizeof *stack); }
      struct frame nf = { .fd = -1, .pathlen = old, .times = { { m.atime_s, m.atime_ns }, { m.mtime_s, m.mtime_ns } }, .mode = dir_mode(m.mode) };
      if (!F) {
        /* The grant itself: only its permission bits can change, and only if it is ours. */
        nf.fd = gfd;
        nf.keep = 1;
        struct stat gst;
        if (fstat(gfd, &gst) == 0 && gst.st_uid == my_uid && stage_dir_mode(gfd, &gst, dir_mode(m.mode), ".") < 0) { rc = -1; break; }
      } else if (F->isnew) {
        if (mkdirat(F->fd, name, 0700) != 0 || (nf.fd = openat(F->fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) { rc = failf("%s: %s", rel, strerror(errno)); break; }
        nf.isnew = 1;
        out("added", rel);
      } else if (!m.opaque && dexists && S_ISDIR(dst.st_mode)) {
        nf.fd = openat(F->fd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (nf.fd < 0) { rc = failf("%s: changed during the commit: %s", rel, strerror(errno)); break; }
        if (dst.st_uid == my_uid) {
          int k = stage_dir_mode(nf.fd, &dst, dir_mode(m.mode), rel);
          if (k < 0) { rc = -1; break; }
          if (k > 0) nf.keep = 1;
        }
      } else {
        /* New, opaque (rm -rf d; mkdir d) or replacing a non-directory: a staged tree. */
        char tmp[40];
        random_name(tmp, ".agentbox-");
        if (mkdirat(F->fd, tmp, 0700) != 0 || (nf.fd = openat(F->fd, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) { rc = failf("%s: cannot stage: %s", rel, strerror(errno)); break; }
        add_op(dexists ? OP_EXCHANGE : OP_RENAME, F->fd, name, tmp, rel);
        F->keep = 1;
        nf.isnew = 1;
        out(dexists ? "modified" : "added", rel);
      }
      stack[depth++] = nf;
      committed++;
      break;
    }
    case M_END: {
      if (!depth) { rc = failf("END without a directory"); break; }
      struct frame *t = &stack[--depth];
      if (t->isnew && (fchmod(t->fd, t->mode) != 0 || futimens(t->fd, t->times) != 0)) { rc = failf("%s: %s", p.buf ? p.buf : ".", strerror(errno)); }
      if (!t->keep) close(t->fd);
      path_pop(&p, t->pathlen);
      break;
    }
    case M_FILE: {
      if (!F || srcfd < 0) { rc = failf("%s: a file without its content", rel); break; }
      if (F->isnew) {
        if (stage_file(F->fd, name, srcfd, &m, 1) != 0) rc = failf("%s: cannot stage: %s", rel, strerror(errno));
        else out("added", rel);
      } else if (dexists && S_ISREG(dst.st_mode) && dst.st_uid != my_uid && m.uid == dst.st_uid) {
        /* Another user's file the agent may write: rewritten in place, so its owner,
         * mode, ACLs and hard links stay; staged first, backed up, applied last. */
        struct op *o = add_op(OP_INPLACE, F->fd, name, NULL, rel);
        F->keep = 1;
        o->ino = dst.st_ino;
        o->times[0] = (struct timespec){ m.atime_s, m.atime_ns };
        o->times[1] = (struct timespec){ m.mtime_s, m.mtime_ns };
        o->tmpfd = tmpfile_in(F->fd);
        if (o->tmpfd < 0 || copy_fd(srcfd, o->tmpfd) != 0) { rc = failf("%s: cannot stage: %s", rel, strerror(errno)); break; }
        int cur = openat(F->fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (cur >= 0) {
          o->backupfd = tmpfile_in(F->fd);
          if (o->backupfd >= 0 && copy_fd(cur, o->backupfd) != 0) { close(o->backupfd); o->backupfd = -1; }
          close(cur);
        }
        out("modified", rel);
      } else {
        char tmp[40];
        random_name(tmp, ".agentbox-");
        if (stage_file(F->fd, tmp, srcfd, &m, 0) != 0) { rc = failf("%s: cannot stage: %s", rel, strerror(errno)); break; }
        add_op(dexists ? OP_EXCHANGE : OP_RENAME, F->fd, name, tmp, rel);
        F->keep = 1;
        out(dexists ? "modified" : "added", rel);
      }
      committed++;
      break;
    }
    case M_LINK: {
      if (!F) { rc = failf("a link outside any directory"); break; }
      if (F->isnew) {
        if (symlinkat(target, F->fd, name) != 0) rc = failf("%s: %s", rel, strerror(errno));
        else out("added", rel);
      } else {
        char tmp[40];
        random_name(tmp, ".agentbox-");
        if (symlinkat(target, F->fd, tmp) != 0) { rc = failf("%s: cannot stage: %s", rel, strerror(errno)); break; }
        add_op(dexists ? OP_EXCHANGE : OP_RENAME, F->fd, name, tmp, rel);
        F->keep = 1;
        out(dexists ? "modified" : "added", rel);
      }
      committed++;
      break;
    }
    case M_WHITEOUT:
      if (F && !F->isnew && dexists) {
        char tmp[40];
        random_name(tmp, ".agentbox-");
        add_op(OP_TRASH, F->fd, name, tmp, rel);
        F->keep = 1;
        out("deleted", rel);
        committed++;
      }
      break;
    case M_SKIP:
      out("skipped", rel);
      break;
    case M_DONE:
      done = 1;
      break;
    case M_ABORT:
      rc = failf("%s", target);
      break;
    default:
      rc = failf("an unknown message from the reader");
    }
    if (srcfd >= 0) close(srcfd);
    if (m.type != M_DIR && m.type != M_END) path_pop(&p, old);
  }
  if (rc != 0) {
    int clean = rollback();
    return clean ? 1 : 3;
  }
  /* Apply: renames first (each reversible), then rewrites in place, then permission
   * changes, deepest first: a folder that becomes unsearchable (chmod 600) must not stop
   * the steps inside it. */
  applied_order = malloc((nops + 1) * sizeof *applied_order);
  if (!applied_order) { perror("malloc"); exit(2); }
  for (int pass = 0; pass < 3; pass++) {
    for (size_t k = 0; k < nops; k++) {
      size_t i = pass == 2 ? nops - 1 - k : k;
      struct op *o = &ops[i];
      int kind = o->type == OP_INPLACE ? 1 : o->type == OP_CHMOD ? 2 : 0;
      if (kind != pass) continue;
      if (do_op(o) != 0) {
        failf("%s: %s", o->rel, strerror(errno));
        return rollback() ? 1 : 3;
      }
      o->applied = 1;
      applied_order[napplied++] = i;
    }
  }
  /* Done: what was replaced or deleted goes (a leftover is reported, not a failure). */
  for (size_t i = 0; i < nops; i++) {
    struct op *o = &ops[i];
    if ((o->type == OP_EXCHANGE || o->type == OP_TRASH) && remove_in(o->dirfd, o->tmp) != 0) out("leftover", o->rel);
  }
  char n[32];
  snprintf(n, sizeof n, "%ld", committed);
  out("committed", n);
  return 0;
}

/* Becomes UID:GID with no groups and no capabilities, then confines itself to the grant. */
static int drop_to(uid_t uid, gid_t gid, int gfd) {
  if (uid == 0) return failf("refusing to commit as root");
  if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 || setresuid(uid, uid, uid) != 0) return failf("cannot become uid %u: %s", uid, strerror(errno));
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return failf("no_new_privs: %s", strerror(errno));
  /* Not dumpable: another process of the agent's uid cannot ptrace the writer. */
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return failf("dumpable: %s", strerror(errno));
  long abi = ll_abi();
  if (abi < 1) return failf("Landlock is not available: the commit would not be confined to the grant");
  int rs = ll_ruleset(abi);
  uint64_t rw = ll_fs_all(abi) & ~(LL_FS_EXECUTE | LL_FS_MAKE_CHAR | LL_FS_MAKE_BLOCK | LL_FS_IOCTL_DEV);
  if (rs < 0 || ll_allow(rs, gfd, rw) != 0 || ll_restrict(rs) != 0) return failf("Landlock: %s", strerror(errno));
  close(rs);
  return 0;
}

static int commit_dir(const char *upper, const char *grant, uid_t uid, gid_t gid) {
  raise_nofile();
  int ufd = open_exact(upper, O_RDONLY | O_DIRECTORY);
  if (ufd < 0) return failf("the upper layer %s: %s", upper, strerror(errno)), 2;
  int gfd = open_exact(grant, O_PATH | O_DIRECTORY);
  if (gfd < 0) {
    failf("the grant %s cannot be opened without following a link (%s): it was changed", grant, strerror(errno));
    out("failed", reason);
    return 1;
  }
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return failf("socketpair: %s", strerror(errno)), 2;
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) return failf("fork: %s", strerror(errno)), 2;
  if (pid == 0) {
    close(sv[0]);
    close(ufd);
    int rc = drop_to(uid, gid, gfd) == 0 ? writer(sv[1], gfd, uid) : 1;
    if (rc != 0) out("failed", reason);
    fflush(stdout);
    _exit(rc);
  }
  close(sv[1]);
  close(gfd);
  struct path p = { 0 };
  struct stat st;
  struct msg m;
  int rc = fstat(ufd, &st);
  fill_meta(&m, M_DIR, &st);
  if (rc == 0) rc = send_msg(sv[0], &m, NULL, NULL, -1);
  if (rc == 0) rc = read_upper(sv[0], ufd, &p, 0);
  if (rc == 0) { fill_meta(&m, M_END, NULL); rc = send_msg(sv[0], &m, NULL, NULL, -1); }
  if (rc == 0) { fill_meta(&m, M_DONE, NULL); send_msg(sv[0], &m, NULL, NULL, -1); }
  else if (reason[0]) {
    fill_meta(&m, M_ABORT, NULL);
    m.targetlen = (uint32_t)strnlen(reason, 8191);
    send_msg(sv[0], &m, NULL, reason, -1);
  }
  close(sv[0]);
  close(ufd);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  return WIFEXITED(status) ? WEXITSTATUS(status) : 3;
}

/* ---------- granted files ---------- */

static int files_differ(int a, int b) {
  struct stat sa, sb;
  if (fstat(a, &sa) != 0 || fstat(b, &sb) != 0) return 1;
  if (sa.st_size != sb.st_size || (sa.st_mode & 07777) != (sb.st_mode & 07777)) return 1;
  char ba[1 << 16], bb[1 << 16];
  for (;;) {
    ssize_t ra = read(a, ba, sizeof ba), rb = read(b, bb, sizeof bb);
    if (ra != rb || ra < 0) return 1;
    if (ra == 0) return 0;
    if (memcmp(ba, bb, (size_t)ra)) return 1;
  }
}

static int diff_file(const char *copy, const char *file) {
  int c = open_exact(copy, O_RDONLY | O_NOFOLLOW);
  int f = open_exact(file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  if (c < 0) return failf("%s: %s", copy, strerror(errno)), 2;
  if (f < 0) { out("added", "."); return 0; }
  if (files_differ(c, f)) out("modified", ".");
  return 0;
}

static int commit_file(const char *copy, const char *file, uid_t uid, gid_t gid, dev_t dev, ino_t ino) {
  int c = open_exact(copy, O_RDONLY | O_NOFOLLOW);
  if (c < 0) return failf("%s: %s", copy, strerror(errno)), 2;
  int f = open_exact(file, O_PATH | O_NOFOLLOW);
  struct stat st;
  if (f < 0 || fstat(f, &st) != 0 || !S_ISREG(st.st_mode) || st.st_dev != dev || st.st_ino != ino)
    return failf("the granted file %s was replaced during the session; its new content was not written", file), 1;
  int cmp = open_exact(file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  if (cmp >= 0) {
    int same = !files_differ(c, cmp);
    close(cmp);
    if (same) { out("committed", "0"); return 0; }
  }
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) return failf("fork: %s", strerror(errno)), 2;
  if (pid == 0) {
    int rc = 1;
    if (drop_to(uid, gid, f) == 0) {
      /* The kernel checks the agent's own write permission on the file here. */
      int w = open(file, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
      struct stat wst;
      if (w < 0) failf("%s: %s", file, strerror(errno));
      else if (fstat(w, &wst) != 0 || wst.st_ino != ino || wst.st_dev != dev) failf("%s: replaced during the commit", file);
      else if (ftruncate(w, 0) != 0 || copy_fd(c, w) != 0) failf("%s: %s (the file may be incomplete)", file, strerror(errno)), rc = 3;
      else { out("modified", "."); out("committed", "1"); rc = 0; }
      if (w >= 0) close(w);
    }
    if (rc != 0) out("failed", reason);
    fflush(stdout);
    _exit(rc);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  return WIFEXITED(status) ? WEXITSTATUS(status) : 3;
}

static int usage(void) {
  fputs("usage: overlay-commit diff UPPER LOWER | commit UPPER GRANT UID GID | diff-file COPY FILE | commit-file COPY FILE UID GID DEV INO\n", stderr);
  return 2;
}

int main(int argc, char **argv) {
  if (argc < 2) return usage();
  int rc;
  if (!strcmp(argv[1], "diff") && argc == 4) {
    int ufd = open_exact(argv[2], O_RDONLY | O_DIRECTORY);
    int lfd = open_exact(argv[3], O_RDONLY | O_DIRECTORY);
    if (ufd < 0) { failf("%s: %s", argv[2], strerror(errno)); rc = 2; }
    else {
      raise_nofile();
      struct path p = { 0 };
      rc = diff_dir(ufd, lfd, 0, &p, 0) == 0 ? 0 : 2;
    }
  } else if (!strcmp(argv[1], "commit") && argc == 6) {
    rc = commit_dir(argv[2], argv[3], (uid_t)strtoul(argv[4], NULL, 10), (gid_t)strtoul(argv[5], NULL, 10));
    if (rc == 2) out("failed", reason);
  } else if (!strcmp(argv[1], "diff-file") && argc == 4) {
    rc = diff_file(argv[2], argv[3]);
  } else if (!strcmp(argv[1], "commit-file") && argc == 8) {
    /* The child prints its own failure; a refusal before it runs is printed here. */
    rc = commit_file(argv[2], argv[3], (uid_t)strtoul(argv[4], NULL, 10), (gid_t)strtoul(argv[5], NULL, 10), (dev_t)strtoull(argv[6], NULL, 10), (ino_t)strtoull(argv[7], NULL, 10));
    if (rc != 0 && reason[0]) out("failed", reason);
  } else return usage();
  if (rc == 2 && reason[0]) fprintf(stderr, "overlay-commit: %s\n", reason);
  fflush(stdout);
  return rc;
}

/* overlay-commit: small helpers (paths for reporting, exact opens, names, copies, removal). */
#include "overlay-commit.h"

char reason[8192];

int failf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, sizeof reason, fmt, ap);
  va_end(ap);
  return -1;
}

void out(const char *kind, const char *rel) {
  fputs(kind, stdout);
  fputc(0, stdout);
  fputs(rel[0] ? rel : ".", stdout);
  fputc(0, stdout);
}


size_t path_push(struct path *p, const char *name) {
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
void path_pop(struct path *p, size_t old) { p->len = old; if (p->buf) p->buf[old] = 0; }

/* An absolute path opened with no symlink anywhere in it (grants are resolved at load). */
int open_exact(const char *path, int flags) {
  struct ab_open_how how = { .flags = (uint64_t)(flags | O_CLOEXEC), .resolve = AB_RESOLVE_NO_SYMLINKS | AB_RESOLVE_NO_MAGICLINKS };
  return (int)syscall(__NR_openat2, AT_FDCWD, path, &how, sizeof how);
}

int cmpstr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The names in a directory (sorted, without . and ..); NULL-terminated. */
char **list_names(int dirfd, size_t *count) {
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
void free_names(char **names) { if (!names) return; for (char **p = names; *p; p++) free(*p); free(names); }

int has_xattr(int fd, const char *name, const char *want) {
  char v[8];
  ssize_t n = fgetxattr(fd, name, v, sizeof v);
  if (n < 0) return 0;
  return want == NULL || ((size_t)n == strlen(want) && !memcmp(v, want, (size_t)n));
}

/* Whiteouts: a 0/0 character device, or (xattr whiteouts) an empty file marked so. */
int is_whiteout(int dirfd, const char *name, const struct stat *st) {
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

void raise_nofile(void) {
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

int copy_fd(int from, int to) {
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

void random_name(char out[40], const char *prefix) {
  unsigned char b[12];
  if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) { perror("getrandom"); exit(2); }
  int n = snprintf(out, 40, "%s", prefix);
  for (int i = 0; i < 12; i++) n += snprintf(out + n, (size_t)(40 - n), "%02x", b[i]);
}

/* Removes NAME under DIRFD and everything below it, by fd, never following links. */
int remove_tree(int dirfd, const char *name, int depth) {
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
int chmod_fd(int fd, mode_t mode) {
  char self[64];
  snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
  return fchmodat(AT_FDCWD, self, mode, 0);
}

/* Removes NAME in DIRFD even if the agent's own folder was just made unsearchable or
 * read-only by the commit (chmod 500 or 600): its owner's bits are lifted for the removal
 * and put back. */
int remove_in(int dirfd, const char *name) {
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

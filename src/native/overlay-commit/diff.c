/* overlay-commit: diff (root, read-only) of a folder's upper layer, or of a granted file's copy. */
#include "overlay-commit.h"

int diff_dir(int ufd, int lfd, int opaque, struct path *p, int depth) {
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

int files_differ(int a, int b) {
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

int diff_file(const char *copy, const char *file) {
  int c = open_exact(copy, O_RDONLY | O_NOFOLLOW);
  int f = open_exact(file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  if (c < 0) return failf("%s: %s", copy, strerror(errno)), 2;
  if (f < 0) { out("added", "."); return 0; }
  if (files_differ(c, f)) out("modified", ".");
  return 0;
}

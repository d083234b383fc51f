/* overlay-commit: the root reader's side of the protocol: it walks UPPER and sends each entry (files as fds over SCM_RIGHTS) to the writer. */
#include "overlay-commit.h"

int send_msg(int sock, const struct msg *m, const char *name, const char *target, int fd) {
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

void fill_meta(struct msg *m, uint32_t type, const struct stat *st) {
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
int read_upper(int sock, int ufd, struct path *p, int depth) {
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

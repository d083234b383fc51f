/* overlay-commit: the writer (agent uid, no capabilities, Landlock on the grant): stages what the reader sends, then applies it all or nothing. */
#include "overlay-commit.h"

int writer(int sock, int gfd, uid_t uid) {
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

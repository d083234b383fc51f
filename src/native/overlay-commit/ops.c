/* overlay-commit: the writer's steps (stage, apply, undo) and the rollback. */
#include "overlay-commit.h"

struct op *ops;
size_t nops, capops;
uid_t my_uid;
struct op *add_op(int type, int dirfd, const char *name, const char *tmp, const char *rel) {
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



mode_t file_mode(uint32_t m) { return (mode_t)(m & 0777); }       /* never setuid, setgid or sticky */
mode_t dir_mode(uint32_t m) { return (mode_t)(m & 03777); }       /* setgid and sticky mean inheritance */

int stage_file(int dirfd, const char *name, int src, const struct msg *m, int final_name) {
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

int tmpfile_in(int dirfd) {
  int fd = openat(dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)) return fd;
  char tmp[40];
  random_name(tmp, ".agentbox-");
  fd = openat(dirfd, tmp, O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd >= 0) unlinkat(dirfd, tmp, 0);
  return fd;
}

int do_op(struct op *o) {
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
int undo_op(struct op *o) {
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
size_t *applied_order;
size_t napplied;

/* What is staged but not applied goes; applied steps are undone, last first. */
int rollback(void) {
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
int stage_dir_mode(int fd, const struct stat *st, mode_t final, const char *rel) {
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

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
#include "overlay-commit.h"

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
  if (rs < 0 || ll_allow(rs, gfd, rw) != 0 || ll_restrict(rs, 0) != 0) return failf("Landlock: %s", strerror(errno));
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

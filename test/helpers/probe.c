/*
 * A hostile agent's kernel probes, run inside the box by the escape tests: each line is
 * NAME=yes when the attempt succeeded, NAME=no (errno) when the kernel or a filter
 * refused it. Static, so it runs the same in every runtime.
 *
 *   clone_newuser  clone(CLONE_NEWUSER): a user namespace with full capabilities
 *   clone_newnet   clone(CLONE_NEWNET|CLONE_NEWUSER): a network namespace to drive nf_tables in
 *   clone3         clone3(): flags a seccomp filter cannot read
 *   unshare        unshare(CLONE_NEWUSER)
 *   io_uring       io_uring_setup(): its IORING_OP_SOCKET makes sockets the socket() filter never sees
 *   vsock          socket(AF_VSOCK): a VM's path to its host
 *   memfd_exec     execute a program from a memfd through /proc/self/fd/N
 *   tmp_exec       execute a copy of a granted program placed in /tmp
 *   grant_exec     execute a copy placed in the writable grant given as argv[1]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef __NR_clone3
#define __NR_clone3 435
#endif
#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif

static void report(const char *name, int ok, int err) {
  if (ok) printf("%s=yes\n", name);
  else printf("%s=no (%s)\n", name, strerror(err));
  fflush(stdout);
}

static int child_fn(void *arg) { (void)arg; return 0; }

static void try_clone(const char *name, int flags) {
  static char stack[65536];
  pid_t p = clone(child_fn, stack + sizeof stack, flags | SIGCHLD, NULL);
  int err = errno;
  if (p > 0) waitpid(p, NULL, 0);
  report(name, p > 0, err);
}

/* Copies a file to `to` (mode 0755) and tries to run it; yes when it ran. */
static void try_exec_copy(const char *name, const char *from, const char *to) {
  int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0755);
  if (in < 0 || out < 0) { report(name, 0, errno); return; }
  char buf[65536];
  ssize_t n;
  while ((n = read(in, buf, sizeof buf)) > 0) if (write(out, buf, (size_t)n) != n) break;
  close(in);
  close(out);
  pid_t p = fork();
  if (p == 0) {
    execl(to, to, (char *)NULL);
    _exit(errno == EACCES || errno == EPERM ? 126 : 127);
  }
  int st = 0;
  waitpid(p, &st, 0);
  int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
  report(name, ok, ok ? 0 : EACCES);
  unlink(to);
}

int main(int argc, char **argv) {
  try_clone("clone_newuser", CLONE_NEWUSER);
  try_clone("clone_newnet", CLONE_NEWNET | CLONE_NEWUSER);
  struct { uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls; } args = { 0 };
  args.exit_signal = SIGCHLD;
  long r = syscall(__NR_clone3, &args, sizeof args);
  if (r == 0) _exit(0);
  int err = errno;
  if (r > 0) waitpid((pid_t)r, NULL, 0);
  report("clone3", r > 0, err);
  int u = unshare(CLONE_NEWUSER);
  report("unshare", u == 0, errno);
  char params[120] = { 0 };
  long fd = syscall(__NR_io_uring_setup, 4, params);
  err = errno;
  report("io_uring", fd >= 0, err);
  int s = socket(AF_VSOCK, SOCK_STREAM, 0);
  err = errno;
  report("vsock", s >= 0, err);
  /* A program in a memfd, run through its /proc/self/fd path (as fexecve does). */
  int mfd = (int)syscall(SYS_memfd_create, "x", 0);
  if (mfd < 0) report("memfd_exec", 0, errno);
  else {
    int in = open("/bin/true", O_RDONLY);
    char buf[65536];
    ssize_t n;
    while (in >= 0 && (n = read(in, buf, sizeof buf)) > 0) if (write(mfd, buf, (size_t)n) != n) break;
    pid_t p = fork();
    if (p == 0) {
      char path[64];
      snprintf(path, sizeof path, "/proc/self/fd/%d", mfd);
      execl(path, "true", (char *)NULL);
      _exit(126);
    }
    int st = 0;
    waitpid(p, &st, 0);
    report("memfd_exec", WIFEXITED(st) && WEXITSTATUS(st) == 0, EACCES);
  }
  try_exec_copy("tmp_exec", "/bin/true", "/tmp/agentbox-probe-true");
  if (argc > 1) {
    char to[4096];
    snprintf(to, sizeof to, "%s/agentbox-probe-true", argv[1]);
    try_exec_copy("grant_exec", "/bin/true", to);
  }
  return 0;
}

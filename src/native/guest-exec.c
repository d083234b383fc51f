/*
 * guest-exec: PID 1 of an agentbox micro-VM, after /init has loaded the virtio
 * modules and mounted /usr and /ctl. Reads /ctl/config (NUL-separated records written
 * by the host, so no manifest value is ever parsed by a shell), then:
 *   - mounts the granted 9p shares at their paths (read-only unless granted write;
 *     access=user, so each file the agent creates is owned by the agent's uid);
 *   - covers denied directories with an empty read-only mode-000 tmpfs and denied
 *     files with /dev/null;
 *   - forks the agent: stdout on /dev/hvc0, stderr on /dev/hvc1, stdin /dev/null;
 *     supplementary groups cleared, gid and uid set, no_new_privs, RLIMIT_NPROC,
 *     the seccomp filter from /ctl/seccomp.bpf, then execve with exactly the
 *     configured argv and environment;
 *   - reaps every process, writes the agent's exit code to /ctl/exit, powers off.
 *
 * Config records: a type string, then its fields, each NUL-terminated:
 *   mount TAG TARGET ro|rw|rwx   bind SRC TARGET ro|rw|rwx   deny-dir PATH   deny-file PATH
 *   time SECONDS (the host's clock at launch: the guest has no RTC)
 *   arg VALUE   env K=V
 * (rw is writable and noexec; rwx writable and executable, for a grant that holds a
 * granted program.)
 *   uid N   gid N   nproc N   cwd PATH
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <time.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define MAX_ITEMS 4096

static void die(const char *what) {
  dprintf(2, "agentbox-guest: %s: %s\n", what, strerror(errno));
  int rf = open("/ctl/failure", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (rf >= 0) {
    dprintf(rf, "%s: %s\n", what, strerror(errno));
    close(rf);
  }
  int fd = open("/ctl/exit", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    dprintf(fd, "125\n");
    close(fd);
  }
  sync();
  reboot(RB_POWER_OFF);
  _exit(125);
}

static char *read_all(const char *path, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die(path);
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (n == cap) buf = realloc(buf, cap *= 2);
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0) die(path);
    if (r == 0) break;
    n += (size_t)r;
  }
  close(fd);
  *len = n;
  return buf;
}

/* Mount flags for a record's mode field. */
static unsigned long mode_flags(const char *mode) {
  if (!strcmp(mode, "ro")) return MS_NOSUID | MS_NODEV | MS_RDONLY;
  if (!strcmp(mode, "rw")) return MS_NOSUID | MS_NODEV | MS_NOEXEC;
  if (!strcmp(mode, "rwx")) return MS_NOSUID | MS_NODEV;
  errno = EINVAL;
  die(mode);
  return 0;
}

static void mkdirs(const char *path) {
  char tmp[4096];
  size_t n = strlen(path);
  if (n >= sizeof tmp) return;
  memcpy(tmp, path, n + 1);
  for (char *p = tmp + 1; *p; p++) {
    if (*p == '/') {
      *p = 0;
      mkdir(tmp, 0755);
      *p = '/';
    }
  }
  mkdir(tmp, 0755);
}

int main(int argc, char **argv) {
  const char *config = argc > 1 ? argv[1] : "/ctl/config";
  size_t len;
  char *buf = read_all(config, &len);
  char *items[MAX_ITEMS];
  size_t count = 0;
  for (size_t i = 0; i < len && count < MAX_ITEMS;) {
    items[count++] = buf + i;
    i += strlen(buf + i) + 1;
  }
  char *args[MAX_ITEMS], *envs[MAX_ITEMS];
  size_t nargs = 0, nenv = 0;
  uid_t uid = 64000;
  gid_t gid = 64000;
  long nproc = -1;
  const char *cwd = "/";
  for (size_t i = 0; i < count; i++) {
    const char *t = items[i];
#define NEED(k) if (i + (k) >= count) { errno = EINVAL; die("truncated config"); }
    if (!strcmp(t, "mount")) {
      NEED(3);
      const char *tag = items[++i], *target = items[++i], *mode = items[++i];
      mkdirs(target);
      if (mount(tag, target, "9p", mode_flags(mode), "trans=virtio,version=9p2000.L,msize=262144,access=user,cache=none") != 0) die(target);
    } else if (!strcmp(t, "bind")) {
      NEED(3);
      const char *src = items[++i], *target = items[++i], *mode = items[++i];
      char parent[4096];
      snprintf(parent, sizeof parent, "%s", target);
      char *slash = strrchr(parent, '/');
      if (slash && slash != parent) {
        *slash = 0;
        mkdirs(parent);
      }
      int fd = open(target, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
      if (fd >= 0) close(fd);
      if (mount(src, target, NULL, MS_BIND, NULL) != 0) die(target);
      if (mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | mode_flags(mode), NULL) != 0) die(target);
    } else if (!strcmp(t, "deny-dir")) {
      NEED(1);
      const char *p = items[++i];
      if (mount("tmpfs", p, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=000,size=4k") != 0) die(p);
      if (mount(NULL, p, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=000,size=4k") != 0) die(p);
    } else if (!strcmp(t, "deny-file")) {
      NEED(1);
      const char *p = items[++i];
      if (mount("/dev/null", p, NULL, MS_BIND, NULL) != 0) die(p);
    } else if (!strcmp(t, "arg")) {
      NEED(1);
      args[nargs++] = items[++i];
    } else if (!strcmp(t, "env")) {
      NEED(1);
      envs[nenv++] = items[++i];
    } else if (!strcmp(t, "uid")) {
      NEED(1);
      uid = (uid_t)strtoul(items[++i], NULL, 10);
    } else if (!strcmp(t, "gid")) {
      NEED(1);
      gid = (gid_t)strtoul(items[++i], NULL, 10);
    } else if (!strcmp(t, "nproc")) {
      NEED(1);
      nproc = strtol(items[++i], NULL, 10);
    } else if (!strcmp(t, "time")) {
      /* -M microvm has no RTC (rtc=off): without this the guest starts in 1970 and no
         certificate (the session CA's included) is valid yet. */
      NEED(1);
      struct timespec ts = {(time_t)strtoll(items[++i], NULL, 10), 0};
      if (clock_settime(CLOCK_REALTIME, &ts) != 0) die("clock_settime");
    } else if (!strcmp(t, "cwd")) {
      NEED(1);
      cwd = items[++i];
    } else {
      errno = EINVAL;
      die(t);
    }
  }
  args[nargs] = NULL;
  envs[nenv] = NULL;
  if (nargs == 0) {
    errno = EINVAL;
    die("no command");
  }
  size_t flen;
  char *filter = read_all("/ctl/seccomp.bpf", &flen);
  struct sock_fprog prog = {.len = (unsigned short)(flen / sizeof(struct sock_filter)), .filter = (struct sock_filter *)filter};

  int sf = open("/ctl/started", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (sf >= 0) close(sf);
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    int in = open("/dev/null", O_RDONLY), out = open("/dev/hvc0", O_WRONLY), err = open("/dev/hvc1", O_WRONLY);
    if (in < 0 || out < 0 || err < 0) die("consoles");
    // The consoles are terminals: no output processing, so "\n" stays "\n" for the caller.
    for (int i = 0; i < 2; i++) {
      struct termios t;
      int fd = i ? err : out;
      if (tcgetattr(fd, &t) == 0) {
        t.c_oflag &= ~(tcflag_t)OPOST;
        tcsetattr(fd, TCSANOW, &t);
      }
    }
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    setsid();
    if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 || setresuid(uid, uid, uid) != 0) die("drop privileges");
    if (nproc >= 0) {
      struct rlimit rl = {(rlim_t)nproc, (rlim_t)nproc};
      if (setrlimit(RLIMIT_NPROC, &rl) != 0) die("RLIMIT_NPROC");
    }
    if (chdir(cwd) != 0 && chdir("/") != 0) die("chdir");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die("no_new_privs");
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) die("seccomp");
    execve(args[0], args, envs);
    int code = errno == ENOENT ? 127 : 126;
    dprintf(2, "agentbox-guest: %s: %s\n", args[0], strerror(errno));
    _exit(code);
  }
  int status = 0, code = 125;
  for (;;) {
    int st;
    pid_t p = waitpid(-1, &st, 0);
    if (p < 0) break;
    if (p == child) {
      status = st;
      code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      // The agent's leftovers go with it.
      kill(-1, SIGKILL);
    }
  }
  int fd = open("/ctl/exit", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    dprintf(fd, "%d\n", code);
    fsync(fd);
    close(fd);
  }
  sync();
  reboot(RB_POWER_OFF);
  return code;
}

/*
 * file-watch: the box's file activity, as agentbox audits it.
 *
 *   file-watch --pid PID [--exclude PID]... PATH...
 *
 * Marks the mount each PATH is on, as process PID sees it (/proc/PID/root/PATH: the box's
 * own grant mounts, never the host's), with fanotify for opens, executions, writes and
 * closes after writing; then prints "ready" and one line per event:
 *
 *   KIND<TAB>PID<TAB>SIZE<TAB>PATH
 *
 * KIND: o (opened), x (opened to execute), m (modified), w (closed after writing),
 * r (closed after reading: opened without write access); SIZE: the file's size at the event; PATH: as the
 * box sees it, with bytes below 0x21, above 0x7e and '\' written as \xNN, so a line is
 * always one line whatever the agent names its files. Events of processes outside PID's
 * mount namespace (the host's root reaching in through /proc) and of --exclude PIDs are
 * dropped. "overflow" is printed if the kernel's queue overflowed (it is unlimited here,
 * so only memory ends it). Exits 4 when fanotify or a mark cannot be set up (fail
 * closed: the launcher does not start the agent unwatched), 0 when stdin closes. An 'f'
 * on stdin is a fence: "fence" is printed once the queued events have been.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <unistd.h>

static void put_path(const char *p) {
  for (const unsigned char *c = (const unsigned char *)p; *c; c++) {
    if (*c < 0x21 || *c > 0x7e || *c == '\\') printf("\\x%02x", *c);
    else putchar(*c);
  }
}

static ino_t mntns(pid_t pid) {
  char link[64];
  struct stat st;
  snprintf(link, sizeof link, "/proc/%d/ns/mnt", (int)pid);
  return stat(link, &st) == 0 ? st.st_ino : 0;
}


/* Reads one batch of events and prints them; -1 on a read error. */
static int drain(int fan, ino_t box_ns, const pid_t *exclude, int nexclude) {
  static char buf[64 * 1024] __attribute__((aligned(__alignof__(struct fanotify_event_metadata))));
  static pid_t last_pid = 0;
  static int last_in = 0;
  ssize_t n = read(fan, buf, sizeof buf);
  if (n < 0) return errno == EINTR || errno == EAGAIN ? 0 : -1;
  for (struct fanotify_event_metadata *m = (void *)buf; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
    if (m->mask & FAN_Q_OVERFLOW) { printf("overflow\n"); continue; }
    if (m->fd < 0) continue;
    int keep = 1;
    for (int e = 0; e < nexclude; e++) if (m->pid == exclude[e]) keep = 0;
    if (keep && m->pid != last_pid) {
      ino_t ns = mntns(m->pid);
      last_pid = m->pid;
      /* Gone already: the marks are on the box's own mounts, so it was the box's. */
      last_in = ns == 0 || ns == box_ns;
    }
    if (keep && last_in) {
      char link[64], path[PATH_MAX];
      snprintf(link, sizeof link, "/proc/self/fd/%d", m->fd);
      ssize_t l = readlink(link, path, sizeof path - 1);
      struct stat st;
      long long size = fstat(m->fd, &st) == 0 ? (long long)st.st_size : -1;
      if (l > 0) {
        path[l] = 0;
        const char *kinds[5] = { 0 };
        int k = 0;
        if (m->mask & FAN_OPEN_EXEC) kinds[k++] = "x";
        else if (m->mask & FAN_OPEN) kinds[k++] = "o";
        if (m->mask & FAN_MODIFY) kinds[k++] = "m";
        if (m->mask & FAN_CLOSE_WRITE) kinds[k++] = "w";
        if (m->mask & FAN_CLOSE_NOWRITE) kinds[k++] = "r";
        for (int j = 0; j < k; j++) {
          printf("%s\t%d\t%lld\t", kinds[j], (int)m->pid, size);
          put_path(path);
          putchar('\n');
        }
      }
    }
    close(m->fd);
  }
  fflush(stdout);
  return 0;
}

int main(int argc, char **argv) {
  pid_t pid = 0;
  pid_t exclude[16];
  int nexclude = 0;
  int i = 1;
  for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
    if (strcmp(argv[i], "--pid") == 0) pid = (pid_t)atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--exclude") == 0 && nexclude < 16) exclude[nexclude++] = (pid_t)atoi(argv[i + 1]);
    else { fprintf(stderr, "agentbox file-watch: unknown option %s\n", argv[i]); return 2; }
  }
  if (pid <= 0 || i >= argc) { fprintf(stderr, "usage: file-watch --pid PID [--exclude PID]... PATH...\n"); return 2; }
  ino_t box_ns = mntns(pid);
  if (box_ns == 0) { fprintf(stderr, "agentbox file-watch: process %d: %s\n", (int)pid, strerror(errno)); return 4; }
  int fan = fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_UNLIMITED_QUEUE, O_RDONLY | O_LARGEFILE | O_CLOEXEC);
  if (fan < 0) { fprintf(stderr, "agentbox file-watch: fanotify_init: %s\n", strerror(errno)); return 4; }
  uint64_t mask = FAN_OPEN | FAN_OPEN_EXEC | FAN_MODIFY | FAN_CLOSE_WRITE | FAN_CLOSE_NOWRITE;
  for (; i < argc; i++) {
    char at[PATH_MAX];
    if (snprintf(at, sizeof at, "/proc/%d/root%s", (int)pid, argv[i]) >= (int)sizeof at) { fprintf(stderr, "agentbox file-watch: path too long\n"); return 4; }
    /* The mount is found without following a last-component link the agent could plant. */
    if (fanotify_mark(fan, FAN_MARK_ADD | FAN_MARK_MOUNT | FAN_MARK_DONT_FOLLOW, mask, AT_FDCWD, at) != 0) {
      if (errno == ENOENT) continue; /* a grant that does not exist in the box */
      fprintf(stderr, "agentbox file-watch: mark %s: %s\n", argv[i], strerror(errno));
      return 4;
    }
  }
  printf("ready\n");
  fflush(stdout);
  struct pollfd p[2] = { { .fd = fan, .events = POLLIN }, { .fd = 0, .events = POLLIN } };
  for (;;) {
    if (poll(p, 2, -1) < 0) { if (errno == EINTR) continue; return 1; }
    if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      char c;
      if (read(0, &c, 1) <= 0) return 0;
      /* 'f': a fence. Events are queued when they happen: once the queue is empty, every
       * event of the processes that ended before it has been printed. */
      if (c == 'f') {
        struct pollfd q = { .fd = fan, .events = POLLIN };
        while (poll(&q, 1, 0) > 0 && (q.revents & POLLIN)) if (drain(fan, box_ns, exclude, nexclude) < 0) return 1;
        printf("fence\n");
        fflush(stdout);
      }
    }
    if (!(p[0].revents & POLLIN)) continue;
    if (drain(fan, box_ns, exclude, nexclude) < 0) return 1;
  }
}

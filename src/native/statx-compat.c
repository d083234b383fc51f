/*
 * statx-compat.so: preloaded into agents under gVisor's runsc as packaged in Debian 12
 * (2022-12), whose statx(2) refuses AT_NO_AUTOMOUNT with EINVAL. coreutils 9 passes
 * that flag on every stat, so `ls` and `stat` failed on every path. Automount points
 * do not exist inside the sandbox, so clearing the flag changes no result.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *buf) {
  return (int)syscall(SYS_statx, dirfd, path, flags & ~AT_NO_AUTOMOUNT, mask, buf);
}

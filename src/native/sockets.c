/*
 * sockets.node: the two socket facts Node cannot reach, as a Node-API addon.
 *
 * peerCred(fd): SO_PEERCRED of a connected unix socket (the kernel's word for the pid,
 *   uid and gid of whoever connected; a control request is authorised and audited by it).
 *
 * sever(pid, path): cuts, from outside, the egress connections a process holds: every
 *   connected TCP socket (the egress proxy's upstream connections) and every accepted
 *   unix connection on the socket bound at `path` (the box's side of the proxy). Each is
 *   taken with pidfd_getfd(2), shut down both ways (the holder can send and receive
 *   nothing more on it, whether or not it is running: a stopped launcher included), and
 *   TCP ones are given SO_LINGER 0 so their last close resets instead of draining.
 *   Listening sockets and every other socket (the Engine's, QMP's, a terminal's) are
 *   left alone. Returns what was cut: [{ fd, family, peer }].
 *
 * Build: cc -O2 -Wall -shared -fPIC -I/usr/include/node (Node's own headers).
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

static napi_value fail(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, err == EPERM || err == EACCES ? "EPERM" : "ESOCKET", msg);
  return NULL;
}

static int int_arg(napi_env env, napi_value v, int *out) {
  int32_t x;
  if (napi_get_value_int32(env, v, &x) != napi_ok) return -1;
  *out = x;
  return 0;
}

static void set_int(napi_env env, napi_value obj, const char *key, int v) {
  napi_value n;
  napi_create_int32(env, v, &n);
  napi_set_named_property(env, obj, key, n);
}

static void set_str(napi_env env, napi_value obj, const char *key, const char *v) {
  napi_value s;
  napi_create_string_utf8(env, v, NAPI_AUTO_LENGTH, &s);
  napi_set_named_property(env, obj, key, s);
}

static napi_value peer_cred(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int fd;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || int_arg(env, argv[0], &fd) != 0) {
    napi_throw_type_error(env, NULL, "peerCred(fd): fd must be an integer");
    return NULL;
  }
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return fail(env, "SO_PEERCRED", errno);
  napi_value obj;
  napi_create_object(env, &obj);
  set_int(env, obj, "pid", cred.pid);
  set_int(env, obj, "uid", (int)cred.uid);
  set_int(env, obj, "gid", (int)cred.gid);
  return obj;
}

static void describe_peer(int fd, int family, char *out, size_t n) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  char host[INET6_ADDRSTRLEN] = "?";
  if (family == AF_UNIX) {
    snprintf(out, n, "unix");
    return;
  }
  if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0) {
    snprintf(out, n, "unconnected");
    return;
  }
  if (family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    snprintf(out, n, "%s:%u", host, ntohs(a->sin_port));
  } else {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    snprintf(out, n, "[%s]:%u", host, ntohs(a->sin6_port));
  }
}

/* True when fd (ours, a copy of the target's) is one of the egress sockets to cut. */
static int is_egress(int fd, const char *path, int *family_out) {
  int type = 0, listening = 0;
  socklen_t l = sizeof type;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) != 0) return 0; /* not a socket */
  l = sizeof listening;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &l) == 0 && listening) return 0;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return 0;
  *family_out = ss.ss_family;
  if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) return type == SOCK_STREAM;
  if (ss.ss_family != AF_UNIX || !path || !*path) return 0;
  /* An accepted connection carries the listener's bound name. */
  struct sockaddr_un *u = (struct sockaddr_un *)&ss;
  size_t plen = len > offsetof(struct sockaddr_un, sun_path) ? len - offsetof(struct sockaddr_un, sun_path) : 0;
  size_t want = strlen(path);
  if (plen < want || memcmp(u->sun_path, path, want) != 0) return 0;
  return plen == want || u->sun_path[want] == '\0';
}

static napi_value sever(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int pid;
  char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1] = "";
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || int_arg(env, argv[0], &pid) != 0 || pid <= 0) {
    napi_throw_type_error(env, NULL, "sever(pid, path): pid must be a positive integer");
    return NULL;
  }
  if (argc > 1) {
    size_t got = 0;
    if (napi_get_value_string_utf8(env, argv[1], path, sizeof path, &got) != napi_ok) path[0] = '\0';
  }
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) return fail(env, "pidfd_open", errno);
  char dir[64];
  snprintf(dir, sizeof dir, "/proc/%d/fd", pid);
  DIR *d = opendir(dir);
  if (!d) {
    int e = errno;
    close(pidfd);
    return fail(env, dir, e);
  }
  napi_value list;
  napi_create_array(env, &list);
  uint32_t n = 0;
  struct dirent *ent;
  while ((ent = readdir(d)) != NULL) {
    char *end;
    long target = strtol(ent->d_name, &end, 10);
    if (*end != '\0' || end == ent->d_name) continue;
    int fd = (int)syscall(SYS_pidfd_getfd, pidfd, (int)target, 0);
    if (fd < 0) continue; /* closed meanwhile */
    int family = 0;
    if (is_egress(fd, path, &family)) {
      char peer[96];
      describe_peer(fd, family, peer, sizeof peer);
      if (family != AF_UNIX) {
        struct linger lg = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      }
      if (shutdown(fd, SHUT_RDWR) == 0 || errno == ENOTCONN) {
        napi_value o;
        napi_create_object(env, &o);
        set_int(env, o, "fd", (int)target);
        set_str(env, o, "family", family == AF_UNIX ? "unix" : family == AF_INET ? "tcp" : "tcp6");
        set_str(env, o, "peer", peer);
        napi_set_element(env, list, n++, o);
      }
    }
    close(fd);
  }
  closedir(d);
  close(pidfd);
  return list;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value f;
  napi_create_function(env, "peerCred", NAPI_AUTO_LENGTH, peer_cred, NULL, &f);
  napi_set_named_property(env, exports, "peerCred", f);
  napi_create_function(env, "sever", NAPI_AUTO_LENGTH, sever, NULL, &f);
  napi_set_named_property(env, exports, "sever", f);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

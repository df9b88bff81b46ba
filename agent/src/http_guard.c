/* http_guard.c - request deadlines and the Host check.
 *
 * libmicrohttpd's connection timeout counts idle time only: a client that
 * sends one byte of a header (or of a chunked body) every few seconds
 * holds its connection for ever, and enough of them took every slot.  The
 * server now serves thousands of connections from a few polling threads, and
 * this file bounds how long any of them may take to deliver a request: every
 * connection is registered here when accepted (with its socket) and a
 * thread of our own shuts down the socket of any whose request is still
 * being read after the deadline.  shutdown(), not close(): the descriptor
 * stays libmicrohttpd's, which sees the end of the stream and closes the
 * connection in its own thread; a connection is unregistered (under the
 * lock) before libmicrohttpd closes its descriptor, so the thread never
 * shuts down a descriptor that was reused.
 *
 * The Host check: a web page can make a browser talk to allocd through a
 * DNS name it re-points at 127.0.0.1 (DNS rebinding), and read the answers
 * as same-origin.  Such requests carry the attacker's name in Host, so only
 * names that mean this machine's loopback (or the --listen address, or
 * names the operator allowed) are answered. */
#include "http_guard.h"

#include "sleeper.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#define SWEEP_MS 250   /* how often deadlines are checked: the slack on them */

struct guard_conn_s {
  guard_conn_t *prev, *next;   /* the registry, under guard_t.lock */
  int fd;
  _Atomic int64_t reading_since_ms;   /* 0: not reading a request now */
};

struct guard_s {
  sleeper_t s;                 /* s.lock: the list and the hosts */
  guard_conn_t head;           /* circular list of open connections */
  unsigned deadline_ms;
  _Atomic uint64_t closed_slow;
  char hosts[GUARD_MAX_HOSTS + 4][256];
  size_t nhosts;
};

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- deadlines ----------------------------------------------------------------- */

static void sweep(guard_t *g) {
  int64_t now = mono_ms();
  pthread_mutex_lock(&g->s.lock);
  for (guard_conn_t *c = g->head.next; c != &g->head; c = c->next) {
    int64_t since = atomic_load(&c->reading_since_ms);
    if (since == 0 || g->deadline_ms == 0 || now - since < (int64_t)g->deadline_ms) continue;
    atomic_store(&c->reading_since_ms, 0);   /* once */
    shutdown(c->fd, SHUT_RDWR);
    atomic_fetch_add(&g->closed_slow, 1);
  }
  pthread_mutex_unlock(&g->s.lock);
}

static void *guard_main(void *arg) {
  guard_t *g = arg;
  pthread_mutex_lock(&g->s.lock);
  while (!g->s.stop) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += SWEEP_MS * 1000000L;
    if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    pthread_cond_timedwait(&g->s.wake, &g->s.lock, &until);
    if (g->s.stop) break;
    pthread_mutex_unlock(&g->s.lock);
    sweep(g);
    pthread_mutex_lock(&g->s.lock);
  }
  pthread_mutex_unlock(&g->s.lock);
  return NULL;
}

guard_conn_t *guard_conn_open(guard_t *g, int fd) {
  guard_conn_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->fd = fd;
  atomic_store(&c->reading_since_ms, mono_ms());
  pthread_mutex_lock(&g->s.lock);
  c->next = g->head.next;
  c->prev = &g->head;
  g->head.next->prev = c;
  g->head.next = c;
  pthread_mutex_unlock(&g->s.lock);
  return c;
}

void guard_conn_close(guard_t *g, guard_conn_t *c) {
  if (!c) return;
  pthread_mutex_lock(&g->s.lock);
  c->prev->next = c->next;
  c->next->prev = c->prev;
  pthread_mutex_unlock(&g->s.lock);
  free(c);
}

void guard_conn_read(guard_conn_t *c) {
  if (c) atomic_store(&c->reading_since_ms, 0);
}

void guard_conn_next(guard_conn_t *c) {
  if (c) atomic_store(&c->reading_since_ms, mono_ms());
}

uint64_t guard_closed_slow(guard_t *g) { return atomic_load(&g->closed_slow); }

/* ---- Host ------------------------------------------------------------------------ */

/* The name part of a Host value: "[v6]" keeps its brackets, a port goes,
 * and so does one trailing dot ("localhost." is localhost). */
static bool host_name(const char *host, char *out, size_t size) {
  size_t len;
  if (host[0] == '[') {
    const char *end = strchr(host, ']');
    if (!end || (end[1] && end[1] != ':')) return false;
    len = (size_t)(end - host) + 1;
  } else {
    const char *colon = strchr(host, ':');
    len = colon ? (size_t)(colon - host) : strlen(host);
  }
  if (len == 0 || len >= size) return false;
  memcpy(out, host, len);
  out[len] = 0;
  if (len > 1 && out[len - 1] == '.') out[len - 1] = 0;
  return true;
}

bool guard_host_allowed(const guard_t *g, const char *host) {
  char name[256];
  if (!host) return true;   /* HTTP/1.0 without Host: not a browser */
  if (!host_name(host, name, sizeof name)) return false;
  for (size_t i = 0; i < g->nhosts; i++)
    if (strcasecmp(name, g->hosts[i]) == 0) return true;
  return false;
}

static void allow(guard_t *g, const char *name) {
  if (!name || !*name || g->nhosts == sizeof g->hosts / sizeof g->hosts[0]) return;
  bool v6 = strchr(name, ':') && name[0] != '[';   /* "::1" as it appears in a Host: "[::1]" */
  snprintf(g->hosts[g->nhosts++], sizeof g->hosts[0], v6 ? "[%s]" : "%s", name);
}

/* ---- life ------------------------------------------------------------------------- */

guard_t *guard_start(const char *listen_host, const char *const *hosts, size_t nhosts, unsigned request_deadline_ms) {
  guard_t *g = calloc(1, sizeof *g);
  if (!g) return NULL;
  g->head.next = g->head.prev = &g->head;
  g->deadline_ms = request_deadline_ms;
  allow(g, "localhost");
  allow(g, "127.0.0.1");
  allow(g, "::1");
  allow(g, listen_host);
  for (size_t i = 0; i < nhosts && i < GUARD_MAX_HOSTS; i++) allow(g, hosts[i]);
  if (!sleeper_start(&g->s, guard_main, g)) {
    free(g);
    return NULL;
  }
  return g;
}

/* After the HTTP server stopped: every connection is closed by then. */
void guard_stop(guard_t *g) {
  if (!g) return;
  sleeper_stop(&g->s);
  free(g);
}

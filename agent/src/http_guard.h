/* http_guard.h - what keeps one local user from denying the HTTP API to
 * the others: a total deadline on reading each request (enforced from a
 * thread of its own, since a client that drips a byte at a time never
 * looks idle), and the Host check that defeats DNS rebinding. */
#ifndef ALLOCD_HTTP_GUARD_H
#define ALLOCD_HTTP_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct guard_s guard_t;
typedef struct guard_conn_s guard_conn_t;

#define GUARD_MAX_HOSTS 16

/* listen_host: the host part of --listen ("127.0.0.1", "::1", a name);
 * hosts: the --allow-host names.  request_deadline_ms: how long reading one
 * request (headers and body) may take in all (0: no deadline). */
guard_t *guard_start(const char *listen_host, const char *const *hosts, size_t nhosts, unsigned request_deadline_ms);
void guard_stop(guard_t *g);

/* A connection was accepted on socket fd (from MHD's connection
 * notification); its request deadline starts now.  NULL if out of memory
 * (the connection then has no deadline but its idle timeout). */
guard_conn_t *guard_conn_open(guard_t *g, int fd);
/* The connection is closing: forget it before its descriptor is closed, so
 * the deadline thread never touches a reused descriptor. */
void guard_conn_close(guard_t *g, guard_conn_t *conn);
/* The request has been read (its deadline stops) / a response went out
 * and the connection waits for its next request (a new deadline starts). */
void guard_conn_read(guard_conn_t *conn);
void guard_conn_next(guard_conn_t *conn);
/* Connections closed for reading a request too slowly, so far. */
uint64_t guard_closed_slow(guard_t *g);

/* Is this Host header value (name, optionally :port) one we answer to? */
bool guard_host_allowed(const guard_t *g, const char *host);

#endif

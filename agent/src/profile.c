/* profile.c - GET /api/v1/processes/{pid}/profile/heap: the process writes
 * its profile only when asked (alloc_shm.h, the profile area), so a request
 * posts "prof.publish" to its control area like a config push (push.c),
 * waits for the acknowledgement (the process answers at its next
 * publication, within one stats interval), reads the profile numbered at
 * least as the acknowledgement says, and symbolizes it (symbolize.h).
 * The caller runs this in a thread of its own: it waits for the process.
 *
 * The segment is opened afresh and must still belong to the owner the
 * collector accepted; a process whose profiling is off and which has no
 * stacks gets 409 with how to switch it on. */
#include "profile.h"

#include "log.h"
#include "pprof.h"

#include <alloc_shm_reader.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SYMBOLIZE_MS 5000         /* symbolizing one profile: then addresses only */
#define PUBLISHER_QUIET_MS 2000   /* as push.c: no publication for this long, nobody would answer */

static uint64_t clock_ms(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t next_id(void) {
  static _Atomic uint64_t counter;
  uint64_t expected = 0;
  /* not the ids push.c uses: start elsewhere in the same clock-based space */
  atomic_compare_exchange_strong(&counter, &expected, (clock_ms(CLOCK_REALTIME) / 1000) << 20 | 1u << 19);
  return atomic_fetch_add(&counter, 1) + 1;
}

static void error_result(profile_result_t *out, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void error_result(profile_result_t *out, int status, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  json_t *v = json_pack("{s:s}", "error", msg);
  out->status = status;
  out->body = v ? json_dumps(v, JSON_COMPACT) : NULL;
  out->len = out->body ? strlen(out->body) : 0;
  out->pprof = false;
  json_decref(v);
}

static bool publisher_quiet(const alloc_shm_header_t *h) {
  uint64_t now = clock_ms(CLOCK_REALTIME), beat = h->heartbeat_ns / 1000000u;
  uint64_t quiet = h->interval_ms < PUBLISHER_QUIET_MS / 3 ? PUBLISHER_QUIET_MS : 3 * h->interval_ms;
  return beat < now && now - beat > quiet;
}

/* Ask for the profile and read it: 0, or the HTTP status already put in *out. */
static int fetch(const collector_target_t *t, unsigned timeout_ms, alloc_shm_prof_t *prof, profile_result_t *out) {
  alloc_shm_segment_t seg;
  int err = alloc_shm_open(&seg, AT_FDCWD, t->path, t->uid);
  if (err) {
    error_result(out, err == ALLOC_SHM_ERR_OPEN && seg.sys_errno == ENOENT ? 404 : 502,
                 err == ALLOC_SHM_ERR_OPEN && seg.sys_errno == ENOENT ? "the process has exited"
                                                                      : "the process's telemetry segment cannot be used: %s",
                 alloc_shm_strerror(err));
    return out->status;
  }
  if (!seg.writable) {
    alloc_shm_close(&seg);
    error_result(out, 403, "allocd may not write to this process's segment (another user's: allocd runs as root "
                           "or with CAP_DAC_OVERRIDE to profile every user's processes)");
    return out->status;
  }
  if (publisher_quiet(&seg.header)) {
    alloc_shm_close(&seg);
    error_result(out, 503, "the process has not published lately (stopped?): it cannot answer a profile request now");
    return out->status;
  }
  alloc_shm_request_t ack;
  err = alloc_shm_prof_request(&seg, next_id(), clock_ms(CLOCK_MONOTONIC) + timeout_ms, &ack, prof);
  alloc_shm_close(&seg);
  switch (err) {
  case ALLOC_SHM_OK: return 0;
  case ALLOC_SHM_ERR_REFUSED:
    if (ack.status == ENOENT)
      error_result(out, 409, "this process's liballoc has no heap profiler (it does not know prof.publish): "
                             "a liballoc with the profiler is needed");
    else
      error_result(out, 409, "the process refused the profile request: %s", ack.message);
    break;
  case ALLOC_SHM_ERR_BUSY: error_result(out, 503, "the process's control area is full: retry"); break;
  case ALLOC_SHM_ERR_TIMEOUT:
  case ALLOC_SHM_ERR_INFLIGHT: error_result(out, 504, "the process did not answer the profile request in time"); break;
  case ALLOC_SHM_ERR_NOTYET:
  case ALLOC_SHM_ERR_TORN:
  case ALLOC_SHM_ERR_LAYOUT:
  case ALLOC_SHM_ERR_IO:
    error_result(out, 502, "the process's profile is invalid: %s", prof->why ? prof->why : alloc_shm_strerror(err));
    break;
  default: error_result(out, 502, "the profile could not be read: %s", alloc_shm_strerror(err)); break;
  }
  return out->status;
}

void profile_heap(symbolizer_t *sym, const collector_target_t *t, const profile_query_t *q, unsigned timeout_ms,
                  profile_result_t *out) {
  memset(out, 0, sizeof *out);
  alloc_shm_prof_t prof;
  if (fetch(t, timeout_ms, &prof, out)) {
    log_debug("profile of pid %d: %d %.*s", t->pid, out->status, (int)out->len, out->body ? out->body : "");
    return;
  }
  if (prof.head.sample_bytes == 0 && prof.head.nstacks == 0) {
    alloc_shm_prof_free(&prof);
    error_result(out, 409, "heap profiling is off in this process: switch it on with 'allocctl set %d prof=true' "
                           "(or start it with ALLOC_CONF=prof:true), let it run, then ask again", t->pid);
    return;
  }
  uint64_t started = clock_ms(CLOCK_MONOTONIC);
  pprof_symbols_t how = {sym, t->exe[0] ? t->exe : NULL, t->uid, started + SYMBOLIZE_MS};
  pprof_t *pp = pprof_build(&prof, &how);
  uint64_t time_s = prof.head.time_ns / 1000000000u;
  alloc_shm_prof_free(&prof);
  if (!pp) {
    error_result(out, 500, "out of memory");
    return;
  }
  size_t nlocs, nsym;
  const char *why;
  pprof_stats(pp, &nlocs, &nsym, &why);
  if (q->json) {
    json_t *v = pprof_top_json(pp, q->sort, q->top);
    if (v) {
      json_object_set_new(v, "pid", json_integer(t->pid));
      json_object_set_new(v, "symbolized", json_integer((json_int_t)nsym));
      if (why) json_object_set_new(v, "unsymbolized_reason", json_string(why));
    }
    out->body = v ? json_dumps(v, JSON_COMPACT) : NULL;
    out->len = out->body ? strlen(out->body) : 0;
    json_decref(v);
    out->status = out->body ? 200 : 500;
  } else {
    uint8_t *gz;
    size_t len;
    if (pprof_encode(pp, q->default_value, &gz, &len)) {
      out->body = (char *)gz;
      out->len = len;
      out->pprof = true;
      out->status = 200;
      snprintf(out->filename, sizeof out->filename, "heap-%d-%llu.pb.gz", t->pid, (unsigned long long)time_s);
    }
  }
  pprof_free(pp);
  if (!out->body) error_result(out, 500, "out of memory");
  log_debug("profile of pid %d: %zu locations, %zu symbolized%s%s, %llu ms", t->pid, nlocs, nsym, why ? ": " : "",
            why ? why : "", (unsigned long long)(clock_ms(CLOCK_MONOTONIC) - started));
}

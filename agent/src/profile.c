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
#include "sleeper.h"
#include "snapshot.h"

#include <alloc_shm_reader.h>
#include <errno.h>
#include <pthread.h>
#include <zlib.h>
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

/* The stored profile of process_id at or before t_ms, validated again. */
static int stored_profile(store_t *store, int64_t process_id, int64_t t_ms, alloc_shm_prof_t *out, int64_t *found_ms) {
  size_t len = 0;
  void *blob = store_profile_at(store, process_id, t_ms, &len, found_ms);
  memset(out, 0, sizeof *out);
  if (!blob) return ALLOC_SHM_ERR_NOTYET;
  uLongf size = ALLOC_SHM_PROFILE_SIZE;
  void *area = malloc(size);
  int err;
  if (!area) {
    err = ALLOC_SHM_ERR_ARG;
  } else if (uncompress(area, &size, blob, len) != Z_OK) {
    free(area);
    err = ALLOC_SHM_ERR_LAYOUT;
  } else {
    err = alloc_shm_prof_parse(area, size, out);   /* takes area over */
  }
  free(blob);
  return err;
}

void profile_heap(symbolizer_t *sym, store_t *store, const collector_target_t *t, const profile_query_t *q,
                  unsigned timeout_ms, profile_result_t *out) {
  memset(out, 0, sizeof *out);
  alloc_shm_prof_t prof, base = {0};
  int64_t base_ms = 0;
  if (q->base_ms && stored_profile(store, t->process_id, q->base_ms, &base, &base_ms)) {
    error_result(out, 404, "no stored profile of this process at or before the base time (see --profile-interval)");
    return;
  }
  if (fetch(t, timeout_ms, &prof, out)) {
    log_debug("profile of pid %d: %d %.*s", t->pid, out->status, (int)out->len, out->body ? out->body : "");
    alloc_shm_prof_free(&base);
    return;
  }
  if (prof.head.sample_bytes == 0 && prof.head.nstacks == 0) {
    alloc_shm_prof_free(&prof);
    alloc_shm_prof_free(&base);
    error_result(out, 409, "heap profiling is off in this process: switch it on with 'allocctl set %d prof=true' "
                           "(or start it with ALLOC_CONF=prof:true), let it run, then ask again", t->pid);
    return;
  }
  uint64_t started = clock_ms(CLOCK_MONOTONIC);
  pprof_symbols_t how = {sym, t->exe[0] ? t->exe : NULL, t->uid, started + SYMBOLIZE_MS};
  pprof_t *pp = pprof_build_diff(&prof, q->base_ms ? &base : NULL, &how);
  uint64_t time_s = prof.head.time_ns / 1000000000u;
  alloc_shm_prof_free(&prof);
  alloc_shm_prof_free(&base);
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
      json_object_set_new(v, "flame", pprof_flame_json(pp, q->sort));
      if (q->base_ms) json_object_set_new(v, "base_time", json_real(base_ms / 1000.0));
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

/* ---- the history ------------------------------------------------------------ */

#define KEEP_PER_PASS 16       /* profiles asked for per pass */
#define KEEP_TRACKED 4096      /* processes whose last attempt is remembered */
#define KEEP_MAX_BYTES (8u << 20)   /* a compressed profile larger than this is not kept */

struct profile_keeper_s {
  store_t *store;
  collector_t *collector;
  int64_t interval_ms;
  unsigned timeout_ms;
  sleeper_t s;
  struct attempt_s {
    int64_t process_id, at_ms;
  } attempts[KEEP_TRACKED];
  size_t nattempts;
};

/* When process_id was last asked, and its slot.  A process seen for the
 * first time counts as asked now: its first profile is one interval after
 * allocd first saw it (a short-lived process is never asked). */
static struct attempt_s *attempt_of(profile_keeper_t *k, int64_t process_id, int64_t now) {
  for (size_t i = 0; i < k->nattempts; i++)
    if (k->attempts[i].process_id == process_id) return &k->attempts[i];
  if (k->nattempts == KEEP_TRACKED) k->nattempts = 0;   /* forget all: each starts over */
  k->attempts[k->nattempts] = (struct attempt_s){process_id, now};
  return &k->attempts[k->nattempts++];
}

/* Ask one process and store its profile if profiling is on.  False when
 * it refused the request (a liballoc without the profiler): not asked again. */
static bool keep_one(profile_keeper_t *k, const collector_target_t *t) {
  alloc_shm_prof_t prof;
  profile_result_t res = {0};
  if (fetch(t, k->timeout_ms, &prof, &res)) {
    free(res.body);
    return res.status != 409;
  }
  if (prof.head.sample_bytes || prof.head.nstacks) {
    uLongf len = compressBound(prof.head.used);
    uint8_t *z = malloc(len);
    if (z && compress2(z, &len, prof.area, prof.head.used, 6) == Z_OK && len <= KEEP_MAX_BYTES &&
        !store_profile(k->store, t->process_id, (int64_t)(prof.head.time_ns / 1000000u), prof.head.number, z, len))
      log_warn("profile of pid %d not stored: %s", t->pid, store_error(k->store));
    free(z);
  }
  alloc_shm_prof_free(&prof);
  return true;
}

static void keep_pass(profile_keeper_t *k) {
  size_t n = 0;
  collector_live_t *live = collector_live(k->collector, -1, &n, false);
  int64_t now = (int64_t)clock_ms(CLOCK_MONOTONIC);
  int asked = 0;
  for (size_t i = 0; live && i < n && asked < KEEP_PER_PASS; i++) {
    pthread_mutex_lock(&k->s.lock);
    bool stop = k->s.stop;
    struct attempt_s *a = attempt_of(k, live[i].process_id, now);
    bool due = now - a->at_ms >= k->interval_ms;
    if (due) a->at_ms = now;
    pthread_mutex_unlock(&k->s.lock);
    if (stop) break;
    collector_target_t t;
    if (!due || !collector_lookup(k->collector, live[i].pid, &t)) continue;
    /* A segment that publishes the knob `prof` and says it is off is not
     * asked: nothing would be stored (one without it is asked once). */
    char prof[16];
    if (t.have_config && snap_config_text(&t.config, "prof", prof, sizeof prof) && strcmp(prof, "false") == 0) continue;
    asked++;
    if (!keep_one(k, &t)) {
      pthread_mutex_lock(&k->s.lock);
      attempt_of(k, live[i].process_id, now)->at_ms = INT64_MAX / 2;   /* never again */
      pthread_mutex_unlock(&k->s.lock);
    }
  }
  free(live);
}

static void *keeper_thread(void *arg) {
  profile_keeper_t *k = arg;
  int64_t period = k->interval_ms < 10000 ? k->interval_ms : 10000;
  pthread_mutex_lock(&k->s.lock);
  while (!k->s.stop) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += period / 1000;
    until.tv_nsec += (period % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) until.tv_sec++, until.tv_nsec -= 1000000000;
    while (!k->s.stop && pthread_cond_timedwait(&k->s.wake, &k->s.lock, &until) == 0) {
    }
    if (k->s.stop) break;
    pthread_mutex_unlock(&k->s.lock);
    keep_pass(k);
    pthread_mutex_lock(&k->s.lock);
  }
  pthread_mutex_unlock(&k->s.lock);
  return NULL;
}

profile_keeper_t *profile_keeper_start(store_t *store, collector_t *collector, int64_t interval_ms, unsigned timeout_ms) {
  if (interval_ms <= 0) return NULL;
  profile_keeper_t *k = calloc(1, sizeof *k);
  if (!k) return NULL;
  *k = (profile_keeper_t){.store = store, .collector = collector, .interval_ms = interval_ms, .timeout_ms = timeout_ms};
  if (!sleeper_start(&k->s, keeper_thread, k)) {
    free(k);
    return NULL;
  }
  return k;
}

void profile_keeper_stop(profile_keeper_t *k) {
  if (!k) return;
  sleeper_stop(&k->s);
  free(k);
}

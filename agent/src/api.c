/* api.c - the HTTP server (libmicrohttpd): routes, JSON bodies, errors,
 * authentication, limits.
 *
 * Reads are open on the bound address; writes (POST, DELETE) need
 * "Authorization: Bearer <token>", compared in constant time.  Every error
 * is a JSON {"error": "..."} with its status: 400 bad JSON or value, 401,
 * 404 unknown pid or path, 405 wrong method (with Allow), 409, 413 body over
 * BODY_MAX, 421 a Host that is not ours (DNS rebinding), 503 too many
 * pushes at once, 504 no acknowledgement.
 *
 * Any local user can connect, so no client may hold what others need:
 * a few polling threads serve thousands of connections (an idle or slow one
 * costs a descriptor and a few KB, not a thread); http_guard.c closes a
 * connection whose request is not read within the deadline; a body that
 * is too large (by its Content-Length) or not authorized is refused on the
 * first call, before a byte of it is read.  A config push waits for the
 * process, so it runs in a thread of its own while its connection is
 * suspended, and the polling threads go on serving the others. */
#include "api.h"

#include "advice.h"
#include "duration.h"

#include "http_guard.h"
#include "log.h"
#include "pprof.h"
#include "profile.h"
#include "prom.h"
#include "push.h"
#include "rules.h"
#include "snapshot.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <microhttpd.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BODY_MAX 65536

/* The answers that grow with the number of processes (/api/v1/processes,
 * /metrics: megabytes at 1000 processes) are rendered at most RENDERS_MAX
 * at a time.  More would only share the same CPUs with the collector, and
 * each holds its JSON tree and text while it renders. */
#define RENDERS_MAX 2

/* Threads serving connections, each polling its share: a render or a
 * database query holds one for its duration, so a few, not one.  poll(),
 * not epoll: libmicrohttpd 0.9.75's epoll mode missed a client's half-close
 * (shutdown after its request), leaving the connection open until the
 * request deadline; poll sees it at once, and a poll over a thread's share
 * of 2000 connections still answers /api/v1/health in about a millisecond. */
#define HTTP_THREADS 4

/* Config pushes waiting for their processes at once (each a thread): more
 * get 503 instead of a thread each. */
#define PUSHES_MAX 32

/* Heap profiles being fetched and rendered at once (each a thread holding
 * up to ~5 MB of profile area and its tables): more get 503. */
#define PROFILES_MAX 2

struct api_s {
  struct MHD_Daemon *daemon;
  guard_t *guard;
  sem_t renders;
  pthread_mutex_t push_lock;   /* pushes_running, for api_stop to wait on */
  pthread_cond_t push_done;
  unsigned pushes_running;     /* and profiles: threads api_stop waits for */
  unsigned profiles_running;
  symbolizer_t *sym;
  int static_fd;          /* the dashboard's directory, or -1 */
  store_t *store;
  collector_t *collector;
  rules_t *rules;
  rules_dir_t *rules_dir;
  reclaim_t *reclaim;
  char token[256];
  unsigned push_timeout_ms;
  time_t started;
};

static void render_begin(api_t *api) {
  while (sem_wait(&api->renders) != 0) {   /* EINTR */
  }
}

static void render_end(api_t *api) { sem_post(&api->renders); }

/* A config push running in its own thread while its connection is
 * suspended; the handler answers with its result once resumed. */
typedef struct push_job_s {
  api_t *api;
  struct MHD_Connection *conn;
  collector_target_t target;
  json_t *changes;
  char client[64];
  json_t *result;
  int status;
  atomic_bool done;
  bool profile;                /* a heap profile request, not a push */
  profile_query_t query;
  profile_result_t profile_result;
} push_job_t;

/* Per request: the body as it arrives. */
typedef struct request_s {
  char *body;
  size_t len;
  push_job_t *job;
} request_t;

/* ---- responses ------------------------------------------------------------- */

/* A response this big (a list of 1000 processes is 8 MB of JSON, /metrics
 * as much) leaves the HTTP thread's heap with the free space of every
 * object built for it, scattered among the few that live on (SQLite's
 * cached pages): the thread gives it back when the request is done
 * (malloc_trim, in completed()), since the pool's threads may then sit
 * idle for long, and idle threads' slabs are theirs alone. */
#define TRIM_AFTER_BYTES ((size_t)1 << 20)
static __thread bool trim_when_done;

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status, const char *type, char *text, size_t len) {
  if (len >= TRIM_AFTER_BYTES) trim_when_done = true;
  struct MHD_Response *r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
  if (!r) {
    free(text);
    return MHD_NO;
  }
  MHD_add_response_header(r, "Content-Type", type);
  MHD_add_response_header(r, "Cache-Control", "no-store");
  enum MHD_Result ret = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ret;
}

/* Send and release a JSON value. */
static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *v) {
  char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
  json_decref(v);
  if (!text) return MHD_NO;
  return send_text(c, status, "application/json", text, strlen(text));
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *msg) {
  return send_json(c, status, json_pack("{s:s}", "error", msg));
}

static enum MHD_Result send_405(struct MHD_Connection *c, const char *allow) {
  json_t *v = json_pack("{s:s}", "error", "method not allowed");
  char *text = json_dumps(v, JSON_COMPACT);
  json_decref(v);
  struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
  MHD_add_response_header(r, "Content-Type", "application/json");
  MHD_add_response_header(r, "Allow", allow);
  enum MHD_Result ret = MHD_queue_response(c, 405, r);
  MHD_destroy_response(r);
  return ret;
}

/* A heap profile's answer: the gzip'ed profile.proto as a download, or
 * JSON (the top call sites, or an error).  The body is handed over. */
static enum MHD_Result send_profile(struct MHD_Connection *c, profile_result_t *p) {
  char *body = p->body;
  p->body = NULL;
  if (!body) return send_error(c, 500, "out of memory");
  if (!p->pprof) return send_text(c, (unsigned)p->status, "application/json", body, p->len);
  struct MHD_Response *r = MHD_create_response_from_buffer(p->len, body, MHD_RESPMEM_MUST_FREE);
  if (!r) {
    free(body);
    return MHD_NO;
  }
  char disposition[128];
  snprintf(disposition, sizeof disposition, "attachment; filename=\"%s\"", p->filename);
  MHD_add_response_header(r, "Content-Type", "application/octet-stream");
  MHD_add_response_header(r, "Content-Disposition", disposition);
  MHD_add_response_header(r, "Cache-Control", "no-store");
  enum MHD_Result ret = MHD_queue_response(c, (unsigned)p->status, r);
  MHD_destroy_response(r);
  return ret;
}

/* ---- request helpers --------------------------------------------------------- */

static void client_address(struct MHD_Connection *c, char *out, size_t size) {
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  snprintf(out, size, "unknown");
  if (!ci || !ci->client_addr) return;
  const struct sockaddr *sa = ci->client_addr;
  if (sa->sa_family == AF_INET) inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)size);
  else if (sa->sa_family == AF_INET6)
    inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)size);
}

/* Constant-time comparison of the bearer token (time depends only on the
 * length of the expected token). */
static bool authorized(api_t *api, struct MHD_Connection *c) {
  const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
  if (!h || strncmp(h, "Bearer ", 7) != 0) return false;
  const char *given = h + 7;
  size_t n = strlen(api->token), glen = strlen(given);
  unsigned char diff = (unsigned char)(glen != n);
  for (size_t i = 0; i < n; i++) diff |= (unsigned char)(api->token[i] ^ (i < glen ? given[i] : 0));
  return diff == 0;
}

/* A decimal integer filling the whole string, within [min, max]. */
static bool parse_int(const char *s, long long min, long long max, long long *out) {
  if (!s || !*s) return false;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end || v < min || v > max) return false;
  *out = v;
  return true;
}

/* Seconds since the epoch (fractions allowed) as milliseconds. */
static bool parse_time(const char *s, int64_t *ms) {
  if (!s || !*s) return false;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || *end || v != v || v < 0 || v > 1e11) return false;
  *ms = (int64_t)(v * 1000);
  return true;
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The path after prefix, split at '/': up to 4 parts, each at most 63 bytes. */
static int split(const char *path, char parts[4][64]) {
  int n = 0;
  while (*path == '/') path++;
  while (*path && n < 4) {
    const char *e = strchr(path, '/');
    size_t len = e ? (size_t)(e - path) : strlen(path);
    if (len >= 64) return -1;
    memcpy(parts[n], path, len);
    parts[n][len] = 0;
    n++;
    path += len;
    while (*path == '/') path++;
  }
  return *path ? -1 : n;
}

/* ---- handlers ----------------------------------------------------------------- */

static enum MHD_Result get_health(api_t *api, struct MHD_Connection *c) {
  collector_counters_t k;
  collector_counters(api->collector, &k);
  json_t *v = json_pack("{s:s, s:s, s:I, s:o, s:{s:I, s:I, s:I, s:I, s:I, s:f}, s:{s:I}, s:{s:I}}", "status", "ok",
                        "version", ALLOCD_VERSION, "uptime_s", (json_int_t)(time(NULL) - api->started), "database",
                        store_health_json(api->store), "collector", "ticks", (json_int_t)k.ticks, "processes",
                        (json_int_t)k.processes_alive, "snapshots", (json_int_t)k.snapshots, "segments_rejected",
                        (json_int_t)k.segments_rejected, "db_write_failures", (json_int_t)k.db_failures,
                        "last_tick_s", k.last_tick_seconds, "http", "closed_slow",
                        (json_int_t)guard_closed_slow(api->guard), "rules", "suppressed",
                        (json_int_t)rules_suppressed(api->rules));
  json_object_set_new(v, "memory_pressure", collector_psi_json(&k.host_psi));
  reclaim_counters_t rc;
  reclaim_counters(api->reclaim, &rc);
  json_object_set_new(v, "reclaim", json_pack("{s:b, s:I, s:I, s:I, s:I, s:I}", "enabled", api->reclaim != NULL,
                                              "squeezed", (json_int_t)rc.squeezed, "restored", (json_int_t)rc.restored,
                                              "dry_run", (json_int_t)rc.dry_run, "returned_bytes",
                                              (json_int_t)rc.returned_bytes, "squeezed_now", (json_int_t)rc.squeezed_now));
  return send_json(c, 200, v);
}

/* Live processes come from the collector's memory, exited ones from the
 * database. */
static json_t *processes_json(api_t *api, bool only_alive) {
  size_t n;
  collector_live_t *live = collector_live(api->collector, -1, &n, false);
  int64_t *ids = calloc(n ? n : 1, sizeof *ids);
  json_t *a = live && ids ? json_array() : NULL;
  for (size_t i = 0; a && i < n; i++) {
    json_array_append_new(a, collector_live_json(&live[i], false));
    ids[i] = live[i].process_id;
  }
  if (a && !only_alive) {
    json_t *exited = store_exited_json(api->store, ids, n);
    json_array_extend(a, exited);
    json_decref(exited);
  }
  free(live);
  free(ids);
  return a;
}

static enum MHD_Result get_processes(api_t *api, struct MHD_Connection *c) {
  const char *alive = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "alive");
  bool only_alive = alive && (strcmp(alive, "1") == 0 || strcmp(alive, "true") == 0);
  render_begin(api);
  json_t *a = processes_json(api, only_alive);
  enum MHD_Result r = a ? send_json(c, 200, json_pack("{s:o}", "processes", a)) : send_error(c, 500, "out of memory");
  render_end(api);
  return r;
}

/* One process, live (from memory) or else the newest one with this pid
 * in the database; NULL if neither knows it. */
static json_t *process_json(api_t *api, int pid) {
  size_t n;
  collector_live_t *live = collector_live(api->collector, pid, &n, true);
  json_t *o = live && n ? collector_live_json(live, true) : NULL;
  free(live);
  return o ? o : store_process_json(api->store, pid);
}

static const char *arg(struct MHD_Connection *c, const char *name) {
  return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
}

/* The range every history query takes: from, to (default: the hour
 * before now) and step.  NULL, or the 400's message. */
static const char *parse_range(struct MHD_Connection *c, history_query_t *q) {
  const char *from_s = arg(c, "from"), *to_s = arg(c, "to"), *step_s = arg(c, "step");
  long long step = 0;
  q->to_ms = now_ms();
  if (to_s && !parse_time(to_s, &q->to_ms)) return "to: seconds since the epoch expected";
  q->from_ms = q->to_ms - 3600 * 1000;
  if (from_s && !parse_time(from_s, &q->from_ms)) return "from: seconds since the epoch expected";
  if (q->from_ms > q->to_ms) return "from is after to";
  if (step_s && !parse_int(step_s, 1, 86400 * 365, &step)) return "step: positive seconds expected";
  q->step_ms = step * 1000;
  return NULL;
}

/* A history query's parameters: a metric of `set`, the range, a source.
 * NULL, or the 400's message. */
static const char *parse_history(struct MHD_Connection *c, const metric_set_t *set, history_query_t *q) {
  q->metric = arg(c, "metric");
  q->source = arg(c, "source");
  if (!q->metric || metric_set_index(set, q->metric) < 0) return "metric: missing or unknown metric name";
  if (q->source && strcmp(q->source, "raw") && strcmp(q->source, "1m") && strcmp(q->source, "1h"))
    return "source: raw, 1m or 1h";
  return parse_range(c, q);
}

static enum MHD_Result get_history(api_t *api, struct MHD_Connection *c, json_t *proc) {
  history_query_t q;
  const char *bad = parse_history(c, &snap_set, &q);
  if (bad) return send_error(c, 400, bad);
  json_t *h = store_history_json(api->store, json_integer_value(json_object_get(proc, "id")), &q);
  if (!h) return send_error(c, 400, "metric: unknown metric name");
  json_object_set(h, "pid", json_object_get(proc, "pid"));
  return send_json(c, 200, h);
}

static enum MHD_Result get_classes(api_t *api, struct MHD_Connection *c, json_t *proc) {
  history_query_t q;
  const char *bad = parse_range(c, &q);
  if (bad) return send_error(c, 400, bad);
  json_t *h = store_classes_json(api->store, json_integer_value(json_object_get(proc, "id")), q.from_ms, q.to_ms,
                                 q.step_ms);
  json_object_set(h, "pid", json_object_get(proc, "pid"));
  return send_json(c, 200, h);
}

/* ?dirty_decay_ms=A,B,...: the decay times to try (default a range);
 * false if malformed.  At most 16. */
static bool parse_candidates(const char *s, int64_t *out, size_t *n) {
  static const int64_t range[] = {0, 1000, 5000, 10000, 30000, 60000};
  if (!s) {
    memcpy(out, range, sizeof range);
    *n = sizeof range / sizeof range[0];
    return true;
  }
  *n = 0;
  for (const char *p = s; *p && *n < 16; p += *p == ',') {
    char *end;
    errno = 0;
    long long v = strtoll(p, &end, 10);
    if (errno || end == p || v < -1 || v > 86400000LL * 365 || (*end && *end != ',')) return false;
    out[(*n)++] = v;
    p = end;
  }
  return *n > 0;
}

/* GET /api/v1/processes/{pid}/advice[?window=D][&dirty_decay_ms=A,B]:
 * the recorded history replayed under other decay times (advice.h). */
static enum MHD_Result get_advice(api_t *api, struct MHD_Connection *c, json_t *proc) {
  int64_t window_ms = 3600 * 1000, candidates[16];
  size_t ncand;
  const char *w = arg(c, "window");
  if (w && (!parse_duration(w, &window_ms) || window_ms > 90LL * 86400 * 1000))
    return send_error(c, 400, "window: a duration (90s, 15m, 1h, 1d) of at most 90 days");
  if (!parse_candidates(arg(c, "dirty_decay_ms"), candidates, &ncand))
    return send_error(c, 400, "dirty_decay_ms: up to 16 comma-separated times in ms (-1: never)");
  json_t *cfg = json_object_get(proc, "config");
  if (!json_is_integer(json_object_get(cfg, "dirty_decay_ms")))
    return send_error(c, 409, "the process has published no configuration yet");
  int64_t to = now_ms(), from = to - window_ms;
  const char *why = NULL;
  json_t *a = advice_json(api->store, json_integer_value(json_object_get(proc, "id")),
                          json_integer_value(json_object_get(cfg, "dirty_decay_ms")),
                          json_integer_value(json_object_get(cfg, "muzzy_decay_ms")), from, to, candidates, ncand, &why);
  if (!a) return send_error(c, 409, why);
  json_object_set(a, "pid", json_object_get(proc, "pid"));
  return send_json(c, 200, a);
}

/* /api/v1/host/history[?exe=PATH] and /api/v1/host/executables. */
static enum MHD_Result host_route(api_t *api, struct MHD_Connection *c, const char *method, const char *what) {
  bool history = strcmp(what, "history") == 0;
  if (!history && strcmp(what, "executables") != 0) return send_error(c, 404, "no such path");
  if (strcmp(method, "GET")) return send_405(c, "GET");
  history_query_t q;
  const char *bad = parse_history(c, &host_set, &q);
  if (bad) return send_error(c, 400, bad);
  if (history) {
    const char *exe = arg(c, "exe");
    char key[HOST_KEY_MAX];
    if (exe && (!*exe || snprintf(key, sizeof key, HOST_SERIES_EXE "%s", exe) >= (int)sizeof key))
      return send_error(c, 400, "exe: an executable's path, at most 255 bytes");
    json_t *h = store_host_history_json(api->store, exe ? key : NULL, &q);
    if (exe) json_object_set_new(h, "exe", json_string(exe));
    return h ? send_json(c, 200, h) : send_error(c, 500, "out of memory");
  }
  long long limit = 8;
  const char *l = arg(c, "limit");
  if (l && !parse_int(l, 1, HOST_EXES + 1, &limit)) {
    char msg[48];
    snprintf(msg, sizeof msg, "limit: 1 to %d", HOST_EXES + 1);
    return send_error(c, 400, msg);
  }
  json_t *h = store_host_executables_json(api->store, &q, (int)limit);
  return h ? send_json(c, 200, h) : send_error(c, 500, "out of memory");
}

/* The push thread: the process's answer (or timeout) becomes the job's
 * result, then the connection resumes and the handler sends it.  The job
 * belongs to the request from then on; only `api` is touched after. */
static void *push_thread(void *arg) {
  push_job_t *job = arg;
  api_t *api = job->api;
  bool profile = job->profile;
  if (profile)
    profile_heap(api->sym, api->store, &job->target, &job->query, api->push_timeout_ms, &job->profile_result);
  else
    job->result = push_config(api->store, &job->target, job->changes, job->client, 0, NULL,
                              api->push_timeout_ms, &job->status);
  atomic_store(&job->done, true);
  MHD_resume_connection(job->conn);
  pthread_mutex_lock(&api->push_lock);
  api->pushes_running--;
  if (profile) api->profiles_running--;
  pthread_cond_broadcast(&api->push_done);
  pthread_mutex_unlock(&api->push_lock);
  return NULL;
}

/* Start the push of `changes` (taken) in a thread; false if too many run. */
static bool push_start(api_t *api, struct MHD_Connection *c, request_t *req, const collector_target_t *t,
                       json_t *changes, const profile_query_t *profile) {
  push_job_t *job = calloc(1, sizeof *job);
  pthread_mutex_lock(&api->push_lock);
  bool room = job && api->pushes_running < PUSHES_MAX && (!profile || api->profiles_running < PROFILES_MAX);
  if (room) api->pushes_running++, api->profiles_running += profile != NULL;
  pthread_mutex_unlock(&api->push_lock);
  if (!room) {
    free(job);
    json_decref(changes);
    return false;
  }
  *job = (push_job_t){.api = api, .conn = c, .target = *t, .changes = changes, .profile = profile != NULL};
  if (profile) job->query = *profile;
  client_address(c, job->client, sizeof job->client);
  req->job = job;
  MHD_suspend_connection(c);
  pthread_attr_t attr;
  pthread_t th;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  if (pthread_create(&th, &attr, push_thread, job) != 0) {   /* answered 503 once resumed */
    job->status = 503;
    job->result = json_pack("{s:s}", "error", "cannot start the push");
    atomic_store(&job->done, true);
    MHD_resume_connection(c);
    pthread_mutex_lock(&api->push_lock);
    api->pushes_running--;
    if (profile) api->profiles_running--;
    pthread_mutex_unlock(&api->push_lock);
  }
  pthread_attr_destroy(&attr);
  return true;
}

static enum MHD_Result post_config(api_t *api, struct MHD_Connection *c, int pid, request_t *req) {
  json_error_t jerr;
  json_t *body = json_loadb(req->body ? req->body : "", req->len, JSON_REJECT_DUPLICATES, &jerr);
  if (!body) {
    char msg[300];
    snprintf(msg, sizeof msg, "invalid JSON: %s", jerr.text);
    return send_error(c, 400, msg);
  }
  char why[160];
  const char *bad = push_validate(body, why, sizeof why);
  if (bad) {
    json_decref(body);
    return send_error(c, 400, bad);
  }
  collector_target_t t;
  if (!collector_lookup(api->collector, pid, &t)) {
    json_decref(body);
    return send_error(c, 404, "no live process with this pid");
  }
  if (!push_start(api, c, req, &t, body, NULL)) return send_error(c, 503, "too many config changes in progress: retry");
  return MHD_YES;   /* answered when the push thread resumes the connection */
}

/* GET /api/v1/processes/{pid}/profile/heap[?format=json&top=N&sort=VALUE]:
 * the process is asked for its profile in a thread of its own (like a
 * push), the connection suspended meanwhile.  Only a live process the
 * collector accepted can be asked: its segment must be the owner's it
 * verified.  `seconds` (what pprof scrapers send) is accepted and ignored:
 * a heap profile is a state, not a duration. */
static enum MHD_Result get_profile(api_t *api, struct MHD_Connection *c, int pid, request_t *req, bool allocs) {
  profile_query_t q = {false, pprof_value_index("inuse_space"), 20,
                       pprof_value_index(allocs ? "alloc_space" : "inuse_space"), 0};
  const char *format = arg(c, "format"), *top = arg(c, "top"), *sort = arg(c, "sort"), *seconds = arg(c, "seconds");
  long long v;
  if (format && strcmp(format, "json") && strcmp(format, "pprof")) return send_error(c, 400, "format: json or pprof");
  q.json = format && strcmp(format, "json") == 0;
  if (top && !parse_int(top, 1, 1000, &v)) return send_error(c, 400, "top: 1 to 1000");
  if (top) q.top = (int)v;
  if (sort && (q.sort = pprof_value_index(sort)) < 0)
    return send_error(c, 400, "sort: alloc_objects, alloc_space, inuse_objects, inuse_space or pinned_space");
  if (seconds && !parse_int(seconds, 0, 86400, &v)) return send_error(c, 400, "seconds: 0 to 86400 (ignored for heap)");
  const char *base = arg(c, "base");
  if (base && (!parse_time(base, &q.base_ms) || q.base_ms <= 0)) return send_error(c, 400, "base: seconds since the epoch expected");
  collector_target_t t;
  if (!collector_lookup(api->collector, pid, &t)) return send_error(c, 404, "no live process with this pid that allocd may read");
  if (!push_start(api, c, req, &t, NULL, &q)) return send_error(c, 503, "too many profile requests in progress: retry");
  return MHD_YES;   /* answered when the thread resumes the connection */
}

/* /debug/pprof/heap?pid=N and /debug/pprof/allocs?pid=N: the same
 * profile on the paths pprof scrapers (Parca, Grafana Pyroscope) ask for
 * by default, the process chosen by a query parameter (a scrape config's
 * `params`, or a target's __param_pid label); /allocs defaults to
 * alloc_space, as Go's does. */
static enum MHD_Result get_pprof_by_param(api_t *api, struct MHD_Connection *c, const char *url, request_t *req) {
  long long pid;
  if (!parse_int(arg(c, "pid"), 1, INT_MAX, &pid)) return send_error(c, 400, "pid: the process's pid expected");
  return get_profile(api, c, (int)pid, req, strcmp(url, "/debug/pprof/allocs") == 0);
}

static enum MHD_Result processes_route(api_t *api, struct MHD_Connection *c, const char *method, char parts[4][64],
                                       int n, request_t *req) {
  if (n == 1) return strcmp(method, "GET") ? send_405(c, "GET") : get_processes(api, c);
  long long pid;
  if (!parse_int(parts[1], 1, INT_MAX, &pid)) return send_error(c, 404, "no such process");
  if (n == 4 && strcmp(parts[2], "profile") == 0) {
    if (strcmp(parts[3], "heap")) return send_error(c, 404, "no such profile: heap is the one there is");
    return strcmp(method, "GET") ? send_405(c, "GET") : get_profile(api, c, (int)pid, req, false);
  }
  if (n == 4) return send_error(c, 404, "no such path");
  if (n == 3 && strcmp(parts[2], "config") == 0) {
    if (strcmp(method, "POST")) return send_405(c, "POST");
    if (!authorized(api, c)) return send_error(c, 401, "missing or wrong bearer token");
    return post_config(api, c, (int)pid, req);
  }
  bool classes = n == 3 && strcmp(parts[2], "classes") == 0, advice = n == 3 && strcmp(parts[2], "advice") == 0;
  bool profiles = n == 3 && strcmp(parts[2], "profiles") == 0;
  if (n == 3 && !classes && !advice && !profiles && strcmp(parts[2], "history") != 0) return send_error(c, 404, "no such path");
  if (strcmp(method, "GET")) return send_405(c, "GET");
  json_t *proc = process_json(api, (int)pid);
  if (!proc) return send_error(c, 404, "no such process");
  if (n == 2) return send_json(c, 200, proc);
  if (profiles) {   /* the heap profiles stored (--profile-interval), newest first */
    json_t *list = store_profiles_json(api->store, json_integer_value(json_object_get(proc, "id")));
    json_t *v = json_pack("{s:O, s:o}", "pid", json_object_get(proc, "pid"), "profiles", list);
    json_decref(proc);
    return send_json(c, 200, v);
  }
  enum MHD_Result r = advice    ? get_advice(api, c, proc)
                      : classes ? get_classes(api, c, proc)
                                : get_history(api, c, proc);
  json_decref(proc);
  return r;
}

/* If rule `id` comes from a rule file, why the API must not delete it
 * (the file would bring it back at the next change). */
static const char *rule_file(api_t *api, long long id, char *buf, size_t size) {
  json_t *rules = store_rules_json(api->store), *rule;
  size_t i;
  const char *why = NULL;
  json_array_foreach(rules, i, rule) {
    const char *client = json_string_value(json_object_get(rule, "client")) ?: "";
    if (json_integer_value(json_object_get(rule, "id")) != id || strncmp(client, RULES_DIR_CLIENT, strlen(RULES_DIR_CLIENT)))
      continue;
    json_t *st = rules_dir_status_json(api->rules_dir);
    snprintf(buf, size, "rule %lld comes from the file %s/%s: change or remove the file instead", id,
             json_string_value(json_object_get(st, "dir")), client + strlen(RULES_DIR_CLIENT));
    json_decref(st);
    why = buf;
  }
  json_decref(rules);
  return why;
}

static enum MHD_Result rules_route(api_t *api, struct MHD_Connection *c, const char *method, char parts[4][64], int n,
                                   request_t *req) {
  if (n == 1 && strcmp(method, "GET") == 0)
    return send_json(c, 200, json_pack("{s:o, s:o}", "rules", store_rules_json(api->store), "files",
                                       rules_dir_status_json(api->rules_dir)));
  if (n == 1 && strcmp(method, "POST")) return send_405(c, "GET, POST");
  if (n == 2 && strcmp(method, "DELETE")) return send_405(c, "DELETE");
  if (!authorized(api, c)) return send_error(c, 401, "missing or wrong bearer token");
  char client[64], why[400];
  client_address(c, client, sizeof client);
  if (n == 2) {
    long long id;
    if (!parse_int(parts[1], 1, LLONG_MAX, &id)) return send_error(c, 404, "no such rule");
    const char *file = rule_file(api, id, why, sizeof why);
    if (file) return send_error(c, 409, file);
    if (!store_rule_delete(api->store, id)) return send_error(c, 404, "no such rule");
    log_info("rule %lld deleted by %s", id, client);
    return send_json(c, 200, json_pack("{s:I}", "deleted", (json_int_t)id));
  }
  json_error_t jerr;
  json_t *rule = json_loadb(req->body ? req->body : "", req->len, JSON_REJECT_DUPLICATES, &jerr);
  if (!rule) return send_error(c, 400, "invalid JSON");
  const char *bad = rules_validate(rule, why, sizeof why);
  if (bad) {
    json_decref(rule);
    return send_error(c, 400, bad);
  }
  json_t *canary = json_object_get(rule, "canary_pct");
  char *config = json_dumps(json_object_get(rule, "config"), JSON_COMPACT | JSON_SORT_KEYS);
  int64_t id = store_rule_add(api->store, json_string_value(json_object_get(rule, "exe_glob")), config,
                              canary ? (int)json_integer_value(canary) : 100, client);
  free(config);
  json_decref(rule);
  if (id < 0) return send_error(c, 500, "the rule could not be stored");
  log_info("rule %lld created by %s", (long long)id, client);
  return send_json(c, 201, json_pack("{s:I}", "id", (json_int_t)id));
}

static enum MHD_Result get_audit(api_t *api, struct MHD_Connection *c) {
  int64_t since = 0;
  long long limit = 100;
  const char *s = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "since");
  const char *l = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
  if (s && !parse_time(s, &since)) return send_error(c, 400, "since: seconds since the epoch expected");
  if (l && !parse_int(l, 1, 10000, &limit)) return send_error(c, 400, "limit: 1 to 10000");
  return send_json(c, 200, json_pack("{s:o}", "audit", store_audit_json(api->store, since, (int)limit)));
}

static enum MHD_Result get_metrics(api_t *api, struct MHD_Connection *c) {
  size_t len;
  prom_agent_t agent = {.closed_slow = guard_closed_slow(api->guard), .rules_suppressed = rules_suppressed(api->rules),
                        .rule_file_errors = rules_dir_errors(api->rules_dir)};
  reclaim_counters(api->reclaim, &agent.reclaim);
  render_begin(api);
  char *text = prom_render(api->collector, &agent, &len);
  render_end(api);
  if (!text) return send_error(c, 500, "out of memory");
  return send_text(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}

/* ---- the dashboard's files ------------------------------------------------------ */

static const char *content_type(const char *path) {
  static const char *const types[][2] = {
    {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},   {".json", "application/json"},
    {".svg", "image/svg+xml"},             {".png", "image/png"},
    {".ico", "image/x-icon"},              {".map", "application/json"}};
  const char *dot = strrchr(path, '.');
  for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
    if (strcmp(dot, types[i][0]) == 0) return types[i][1];
  return "application/octet-stream";
}

/* A path made only of [A-Za-z0-9_-] names joined by '/', none starting with
 * a dot: nothing can climb out of the directory or reach hidden files. */
static bool safe_path(const char *p) {
  if (!*p || strlen(p) > 200) return false;
  for (const char *seg = p; *seg;) {
    if (*seg == '.' || *seg == '/') return false;
    const char *end = seg;
    for (; *end && *end != '/'; end++)
      if (!((*end >= 'a' && *end <= 'z') || (*end >= 'A' && *end <= 'Z') || (*end >= '0' && *end <= '9') ||
            *end == '_' || *end == '-' || *end == '.'))
        return false;
    seg = *end ? end + 1 : end;
  }
  return true;
}

static enum MHD_Result get_static(api_t *api, struct MHD_Connection *c, const char *url) {
  const char *rel = strcmp(url, "/") == 0 ? "index.html" : url + 1;
  if (api->static_fd < 0 && strcmp(rel, "index.html") == 0)
    return send_error(c, 404, "the dashboard is not installed: allocd was built without it (no "
                              "dashboards/node_modules) or did not find its files; see --static-dir");
  if (api->static_fd < 0 || !safe_path(rel)) return send_error(c, 404, "no such path");
  /* O_NOFOLLOW refuses a symlink as the last component; safe_path keeps
   * the others inside (no "..", no absolute path). */
  int fd = openat(api->static_fd, rel, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (16 << 20)) {
    if (fd >= 0) close(fd);
    return send_error(c, 404, "no such path");
  }
  struct MHD_Response *r = MHD_create_response_from_fd((uint64_t)st.st_size, fd);
  if (!r) {
    close(fd);
    return MHD_NO;
  }
  MHD_add_response_header(r, "Content-Type", content_type(rel));
  MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
  enum MHD_Result ret = MHD_queue_response(c, 200, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result route(api_t *api, struct MHD_Connection *c, const char *url, const char *method, request_t *req) {
  if (strcmp(method, "HEAD") == 0) method = "GET";   /* libmicrohttpd sends the headers only */
  if (strcmp(url, "/metrics") == 0) return strcmp(method, "GET") ? send_405(c, "GET") : get_metrics(api, c);
  if (strcmp(url, "/debug/pprof/heap") == 0 || strcmp(url, "/debug/pprof/allocs") == 0)
    return strcmp(method, "GET") ? send_405(c, "GET") : get_pprof_by_param(api, c, url, req);
  if (strncmp(url, "/api/", 5) != 0) return strcmp(method, "GET") ? send_405(c, "GET") : get_static(api, c, url);
  if (strncmp(url, "/api/v1/", 8) != 0) return send_error(c, 404, "no such path");
  char parts[4][64];
  int n = split(url + 8, parts);
  if (n <= 0) return send_error(c, 404, "no such path");
  if (n == 1 && strcmp(parts[0], "health") == 0) return strcmp(method, "GET") ? send_405(c, "GET") : get_health(api, c);
  if (n == 1 && strcmp(parts[0], "audit") == 0) return strcmp(method, "GET") ? send_405(c, "GET") : get_audit(api, c);
  if (strcmp(parts[0], "processes") == 0 && n <= 4) return processes_route(api, c, method, parts, n, req);
  if (strcmp(parts[0], "host") == 0 && n == 2) return host_route(api, c, method, parts[1]);
  if (strcmp(parts[0], "rules") == 0 && n <= 2) return rules_route(api, c, method, parts, n, req);
  return send_error(c, 404, "no such path");
}

static guard_conn_t *guard_conn_of(struct MHD_Connection *c) {
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  return ci ? ci->socket_context : NULL;
}

/* Does the request come with a body (a length above zero, or chunked)? */
static bool has_body(struct MHD_Connection *c, long long *length) {
  const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
  *length = -1;
  if (cl && !parse_int(cl, 0, LLONG_MAX, length)) *length = LLONG_MAX;   /* unparsable: too big */
  return *length > 0 || MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
}

/* The first call, headers read, body not yet: what can be refused without
 * reading on is refused now (a rebinding Host, a body that is too large or
 * that no one authorized).  MHD_YES with *answered set when a response was
 * queued. */
static enum MHD_Result first_call(api_t *api, struct MHD_Connection *c, const char *url, const char *method,
                                  request_t *req, bool *answered) {
  const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
  *answered = true;
  if (!guard_host_allowed(api->guard, host))
    return send_error(c, 421, "this Host is not one allocd answers to (start it with --allow-host NAME to add one)");
  long long length;
  if (!has_body(c, &length)) {
    *answered = false;
    return MHD_YES;
  }
  if (!authorized(api, c)) return route(api, c, url, method, req);   /* 401, 404 or 405, without the body */
  if (length > BODY_MAX) return send_error(c, 413, "request body too large");
  *answered = false;
  return MHD_YES;
}

/* More of the body: kept up to BODY_MAX; a (chunked) body that goes on
 * past it closes the connection rather than be read to its end. */
static enum MHD_Result add_body(request_t *req, const char *upload, size_t *upload_size) {
  if (req->len + *upload_size > BODY_MAX) {
    log_warn("HTTP: request body over %d bytes: connection closed", BODY_MAX);
    return MHD_NO;
  }
  char *b = realloc(req->body, req->len + *upload_size + 1);
  if (!b) return MHD_NO;
  memcpy(b + req->len, upload, *upload_size);
  req->body = b;
  req->len += *upload_size;
  *upload_size = 0;
  return MHD_YES;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls) {
  (void)version;
  api_t *api = cls;
  request_t *req = *con_cls;
  if (!req) {
    if (!(req = calloc(1, sizeof *req))) return MHD_NO;
    *con_cls = req;
    bool answered;
    enum MHD_Result r = first_call(api, c, url, method, req, &answered);
    if (answered) guard_conn_read(guard_conn_of(c));
    return r;
  }
  if (*upload_size) return add_body(req, upload, upload_size);
  if (req->job) {   /* resumed after a push */
    push_job_t *job = req->job;
    if (!atomic_load(&job->done)) return MHD_YES;
    if (job->profile) return send_profile(c, &job->profile_result);
    json_t *result = job->result;
    job->result = NULL;
    return send_json(c, (unsigned)job->status, result);
  }
  guard_conn_read(guard_conn_of(c));
  return route(api, c, url, method, req);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode code) {
  (void)cls, (void)code;
  request_t *req = *con_cls;
  if (req) {
    if (req->job) {
      json_decref(req->job->changes);
      json_decref(req->job->result);
      free(req->job->profile_result.body);
      free(req->job);
    }
    free(req->body);
    free(req);
  }
  *con_cls = NULL;
  guard_conn_next(guard_conn_of(c));   /* a kept-alive connection's next request has a deadline too */
  if (trim_when_done) {
    trim_when_done = false;
    malloc_trim(0);
  }
}

/* Connections come and go: each is registered with the guard (for its
 * request deadline) for as long as its descriptor is open. */
static void connection_event(void *cls, struct MHD_Connection *c, void **socket_context,
                             enum MHD_ConnectionNotificationCode code) {
  api_t *api = cls;
  if (code == MHD_CONNECTION_NOTIFY_STARTED) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    *socket_context = ci ? guard_conn_open(api->guard, ci->connect_fd) : NULL;
  } else {
    guard_conn_close(api->guard, *socket_context);
    *socket_context = NULL;
  }
}

static void api_free(api_t *api) {
  guard_stop(api->guard);
  sym_free(api->sym);
  if (api->static_fd >= 0) close(api->static_fd);
  sem_destroy(&api->renders);
  pthread_mutex_destroy(&api->push_lock);
  pthread_cond_destroy(&api->push_done);
  free(api);
}

api_t *api_start(const api_config_t *cfg, store_t *store, collector_t *collector, rules_t *rules, char *err,
                 size_t errlen) {
  api_t *api = calloc(1, sizeof *api);
  if (!api) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  sem_init(&api->renders, 0, RENDERS_MAX);
  pthread_mutex_init(&api->push_lock, NULL);
  pthread_cond_init(&api->push_done, NULL);
  api->store = store;
  api->collector = collector;
  api->rules = rules;
  api->rules_dir = cfg->rules_dir;
  api->reclaim = cfg->reclaim;
  api->push_timeout_ms = cfg->push_timeout_ms;
  api->started = time(NULL);
  snprintf(api->token, sizeof api->token, "%s", cfg->token);
  api->static_fd = -1;
  if (cfg->static_dir && (api->static_fd = open(cfg->static_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
    snprintf(err, errlen, "cannot open the static directory %s: %s", cfg->static_dir, strerror(errno));
    api_free(api);
    return NULL;
  }
  if (!(api->sym = sym_new())) {
    snprintf(err, errlen, "out of memory");
    api_free(api);
    return NULL;
  }
  api->guard = guard_start(cfg->listen_host, cfg->allow_hosts, cfg->nallow_hosts, cfg->request_timeout_s * 1000);
  if (!api->guard) {
    snprintf(err, errlen, "out of memory");
    api_free(api);
    return NULL;
  }
  api->daemon = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_ALLOW_SUSPEND_RESUME, 0, NULL, NULL, handle, api,
      MHD_OPTION_LISTEN_SOCKET, cfg->listen_fd, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)HTTP_THREADS,
      MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections, MHD_OPTION_CONNECTION_TIMEOUT, cfg->connection_timeout_s,
      MHD_OPTION_NOTIFY_COMPLETED, completed, api, MHD_OPTION_NOTIFY_CONNECTION, connection_event, api,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(128 * 1024), MHD_OPTION_END);
  if (!api->daemon) {
    snprintf(err, errlen, "cannot start the HTTP server");
    api_free(api);
    return NULL;
  }
  return api;
}

/* Pushes in flight are waited for (each ends within the push timeout) and
 * answered before the server stops: a suspended connection must be
 * resumed before MHD_stop_daemon. */
void api_stop(api_t *api) {
  if (!api) return;
  pthread_mutex_lock(&api->push_lock);
  while (api->pushes_running) pthread_cond_wait(&api->push_done, &api->push_lock);
  pthread_mutex_unlock(&api->push_lock);
  MHD_stop_daemon(api->daemon);
  api_free(api);
}

/* rules.c - applying rules to processes as they appear.
 *
 * After each collection tick the collector has a list of processes seen
 * for the first time; this thread takes them, and for every rule whose glob
 * matches the executable (and whose canary share includes the process)
 * pushes the rule's config, recorded in the audit log as coming from
 * "rule:<id>".  Rules apply in id order, so a later rule wins a knob.  A
 * rule applies once per process: after an allocd restart (every process is
 * new to the collector then) the audit log says which already have it.
 *
 * A push waits up to the push timeout for the process, and any local user
 * can start processes that never answer.  So pushes run concurrently, in
 * worker threads (at most RULES_WORKERS, and at most RULES_PER_UID for one
 * user, so one user's silent processes cannot hold every worker); a process
 * that did not answer gets no further rule this time; and a user whose
 * processes left RULES_TIMEOUTS_PER_MIN pushes unanswered (or pending: the
 * process could not act, push.c) within a minute
 * gets no rule pushes (nor audit rows) for the rest of that minute: they
 * are skipped, counted (rules_suppressed) and logged once a minute. */
#include "rules.h"

#include "log.h"
#include "push.h"
#include "sleeper.h"

#include <fnmatch.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RULES_WORKERS 8
#define RULES_PER_UID 2
#define RULES_TIMEOUTS_PER_MIN 10
#define RULES_UIDS 64   /* users tracked at once; more reuse idle entries */

/* A user's pushes: how many run, and how many went unanswered lately. */
typedef struct uid_state_s {
  uid_t uid;
  unsigned running, timeouts;
  int64_t window_ms;   /* start of the minute `timeouts` counts */
  int64_t logged_ms;   /* last "suppressed" log line */
  bool used;
} uid_state_t;

struct rules_s {
  store_t *store;
  collector_t *collector;
  unsigned timeout_ms;
  sleeper_t s;                 /* s.lock: everything below; s.wake: kicked, a worker finished, or stop */
  unsigned running;
  collector_target_t *waiting; /* new processes not yet dispatched */
  size_t nwaiting, cap;
  uid_state_t uids[RULES_UIDS];
  uint64_t suppressed;
};

typedef struct job_s {
  rules_t *r;
  collector_target_t target;
} job_t;

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool rules_match(const char *glob, const char *exe) {
  const char *base = strrchr(exe, '/');
  const char *subject = strchr(glob, '/') || !base ? exe : base + 1;
  return fnmatch(glob, subject, 0) == 0;
}

bool rules_in_canary(int pid, uint64_t start_time, int64_t rule_id, int canary_pct) {
  if (canary_pct >= 100) return true;
  uint64_t h = 0xcbf29ce484222325ull;
  uint64_t parts[3] = {(uint64_t)pid, start_time, (uint64_t)rule_id};
  for (int i = 0; i < 3; i++) h = (h ^ parts[i]) * 0x100000001b3ull;
  h ^= h >> 29;
  return (int)(h % 100) < canary_pct;
}

const char *rules_validate(json_t *rule, char *buf, size_t size) {
  if (!json_is_object(rule)) return "the body must be a JSON object";
  json_t *glob = json_object_get(rule, "exe_glob"), *config = json_object_get(rule, "config");
  json_t *canary = json_object_get(rule, "canary_pct");
  if (!json_is_string(glob) || !json_string_length(glob) || json_string_length(glob) > 255)
    return "exe_glob must be a non-empty string of at most 255 bytes";
  if (canary && (!json_is_integer(canary) || json_integer_value(canary) < 1 || json_integer_value(canary) > 100))
    return "canary_pct must be an integer from 1 to 100";
  const char *key;
  json_t *v;
  json_object_foreach(rule, key, v) if (strcmp(key, "exe_glob") && strcmp(key, "config") && strcmp(key, "canary_pct")) {
    snprintf(buf, size, "unknown field '%.64s'", key);
    return buf;
  }
  return push_validate(config, buf, size);
}

/* Apply every matching rule to one process, in id order; false if the
 * process did not answer (then it gets no further rule). */
static bool apply(rules_t *r, const collector_target_t *t, json_t *rules) {
  size_t i;
  json_t *rule;
  json_array_foreach(rules, i, rule) {
    int64_t id = json_integer_value(json_object_get(rule, "id"));
    const char *glob = json_string_value(json_object_get(rule, "exe_glob"));
    int canary = (int)json_integer_value(json_object_get(rule, "canary_pct"));
    if (!glob || !rules_match(glob, t->exe) || !rules_in_canary(t->pid, t->start_time, id, canary) ||
        store_rule_applied(r->store, id, t->process_id))
      continue;
    char client[32];
    snprintf(client, sizeof client, "rule:%lld", (long long)id);
    int status;
    json_t *res = push_config(r->store, t, json_object_get(rule, "config"), client, id, NULL, r->timeout_ms, &status);
    json_decref(res);
    if (status != 200)
      log_warn("rule %lld on pid %d (%s): HTTP-equivalent status %d", (long long)id, t->pid, t->exe, status);
    if (status == 504 || status == 502 || status == 202) return false;   /* 202: left pending, unanswered */
  }
  return true;
}

/* The state of uid (under lock); NULL if every entry is busy. */
static uid_state_t *uid_state(rules_t *r, uid_t uid) {
  uid_state_t *spare = NULL;
  for (int i = 0; i < RULES_UIDS; i++) {
    uid_state_t *u = &r->uids[i];
    if (u->used && u->uid == uid) return u;
    if (!spare && (!u->used || u->running == 0)) spare = u;
  }
  if (spare) *spare = (uid_state_t){.uid = uid, .used = true, .window_ms = mono_ms()};
  return spare;
}

static void *worker_main(void *arg) {
  job_t *job = arg;
  rules_t *r = job->r;
  json_t *rules = store_rules_json(r->store);
  bool answered = apply(r, &job->target, rules);
  json_decref(rules);
  pthread_mutex_lock(&r->s.lock);
  uid_state_t *u = uid_state(r, job->target.uid);   /* running > 0: still ours */
  u->running--;
  if (!answered) u->timeouts++;
  r->running--;
  pthread_cond_broadcast(&r->s.wake);
  pthread_mutex_unlock(&r->s.lock);
  free(job);
  return NULL;
}

/* A user over the budget of unanswered pushes: this process is skipped. */
static bool over_budget(rules_t *r, uid_state_t *u, const collector_target_t *t) {
  int64_t now = mono_ms();
  if (now - u->window_ms >= 60000) u->window_ms = now, u->timeouts = 0;
  if (u->timeouts < RULES_TIMEOUTS_PER_MIN) return false;
  r->suppressed++;
  if (now - u->logged_ms >= 60000) {
    log_warn("rules: uid %u left %u pushes unanswered within a minute: rules not pushed to its new processes (pid %d"
             " and others) until the minute ends", (unsigned)u->uid, u->timeouts, t->pid);
    u->logged_ms = now;
  }
  return true;
}

/* Start workers for the waiting processes that may go now (under lock). */
static void dispatch(rules_t *r) {
  size_t j = 0;
  for (size_t i = 0; i < r->nwaiting; i++) {
    collector_target_t *t = &r->waiting[i];
    uid_state_t *u = r->running < RULES_WORKERS ? uid_state(r, t->uid) : NULL;
    if (u && over_budget(r, u, t)) continue;
    job_t *job = u && u->running < RULES_PER_UID ? malloc(sizeof *job) : NULL;
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (job) *job = (job_t){r, *t};
    if (job && pthread_create(&th, &attr, worker_main, job) == 0) {
      u->running++;
      r->running++;
    } else {
      free(job);
      r->waiting[j++] = *t;   /* waits for a worker */
    }
    pthread_attr_destroy(&attr);
  }
  r->nwaiting = j;
}

/* Move the collector's new processes to the waiting list (under lock). */
static void take_new(rules_t *r) {
  for (;;) {
    if (r->nwaiting + 32 > r->cap) {
      size_t cap = r->cap ? 2 * r->cap : 64;
      collector_target_t *w = realloc(r->waiting, cap * sizeof *w);
      if (!w) return;
      r->waiting = w;
      r->cap = cap;
    }
    int n = collector_take_new(r->collector, r->waiting + r->nwaiting, 32);
    if (n <= 0) return;
    r->nwaiting += (size_t)n;
  }
}

static void *rules_main(void *arg) {
  rules_t *r = arg;
  pthread_mutex_lock(&r->s.lock);
  while (!r->s.stop) {
    if (r->s.kicked) take_new(r);
    r->s.kicked = false;
    dispatch(r);
    if (!r->s.kicked && !r->s.stop) pthread_cond_wait(&r->s.wake, &r->s.lock);
  }
  while (r->running) pthread_cond_wait(&r->s.wake, &r->s.lock);   /* each ends within the push timeout */
  pthread_mutex_unlock(&r->s.lock);
  return NULL;
}

uint64_t rules_suppressed(rules_t *r) {
  pthread_mutex_lock(&r->s.lock);
  uint64_t n = r->suppressed;
  pthread_mutex_unlock(&r->s.lock);
  return n;
}

rules_t *rules_start(store_t *store, collector_t *collector, unsigned push_timeout_ms) {
  rules_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->store = store;
  r->collector = collector;
  r->timeout_ms = push_timeout_ms;
  if (!sleeper_start(&r->s, rules_main, r)) {
    free(r);
    return NULL;
  }
  return r;
}

void rules_kick(rules_t *r) { sleeper_kick(&r->s); }

void rules_stop(rules_t *r) {
  if (!r) return;
  sleeper_stop(&r->s);
  free(r->waiting);
  free(r);
}

/* push.c - configuration changes to running processes.
 *
 * Values are checked here first (known knob, right JSON type, known mode
 * name) so that a typo gets a 400 without touching the process.  Then every
 * change is posted to the control area at once and the acknowledgements are
 * awaited together: the process answers all posted slots in one tick, so a
 * request costs one interval whatever its number of knobs.  The segment is
 * opened afresh and must still belong to the process's owner.
 *
 * A process that cannot act on a change now (its publisher has not
 * written for PUBLISHER_QUIET_MS and three intervals: stopped, frozen,
 * starved of CPU) is not waited for: the changes stay posted, the answer
 * is 202 "pending" at once, and push_follow_up records each outcome in the
 * audit log when the process acknowledges it, or withdraws it after
 * PENDING_MAX_MS (other writers may take a slot over after 60 s). */
#include "push.h"

#include "log.h"
#include "snapshot.h"

#include <alloc_shm_reader.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define MAX_CHANGES 16
#define PUBLISHER_QUIET_MS 2000   /* no snapshot for this long: the process cannot act now */
#define PENDING_MAX_MS 55000      /* then withdrawn, before other writers may take the slot */
#define PENDING_MAX 256           /* changes left pending at once */

static uint64_t next_id(void) {
  static _Atomic uint64_t counter;
  uint64_t expected = 0;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  /* ids from different runs of allocd differ: start from the clock */
  atomic_compare_exchange_strong(&counter, &expected, (uint64_t)ts.tv_sec << 20);
  return atomic_fetch_add(&counter, 1) + 1;
}

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The value as the text the process parses. */
static bool value_text(json_t *v, const char *kind, char *out, size_t size) {
  if (strcmp(kind, "BOOL") == 0) {
    if (!json_is_boolean(v)) return false;
    snprintf(out, size, "%s", json_is_true(v) ? "true" : "false");
  } else if (strcmp(kind, "ENUM") == 0) {
    if (!json_is_string(v)) return false;
    snprintf(out, size, "%s", json_string_value(v));
  } else if (strcmp(kind, "BYTES") == 0 && json_is_string(v)) {
    /* "512M", "cgroup": the process parses and checks it (EINVAL if bad) */
    const char *t = json_string_value(v);
    if (!*t || strlen(t) >= size || strpbrk(t, ",:")) return false;
    snprintf(out, size, "%s", t);
  } else {
    if (!json_is_integer(v)) return false;
    snprintf(out, size, "%lld", (long long)json_integer_value(v));
  }
  return true;
}

const char *push_validate(json_t *changes, char *buf, size_t size) {
  if (!json_is_object(changes)) return "the body must be a JSON object of knob: value";
  if (json_object_size(changes) == 0) return "no change given";
  if (json_object_size(changes) > MAX_CHANGES) return "too many changes in one request";
  const char *knob;
  json_t *v;
  json_object_foreach(changes, knob, v) {
    const char *kind;
    char text[96];
    if (!snap_config_knob(knob, &kind)) {
      snprintf(buf, size, "unknown knob '%.64s'", knob);
      return buf;
    }
    if (!value_text(v, kind, text, sizeof text)) {
      snprintf(buf, size, "%s needs %s", knob,
               strcmp(kind, "BOOL") == 0 ? "true or false" : strcmp(kind, "ENUM") == 0 ? "a mode name"
               : strcmp(kind, "BYTES") == 0 ? "a number of bytes or a word" : "an integer");
      return buf;
    }
    if (strcmp(kind, "ENUM") == 0) {
      bool known = false;
      for (int i = 0; !known && alloc_shm_enum_name(knob, i); i++) known = strcmp(text, alloc_shm_enum_name(knob, i)) == 0;
      if (!known) {
        snprintf(buf, size, "%s: unknown mode '%.32s'", knob, text);
        return buf;
      }
    }
  }
  return NULL;
}

typedef struct pending_s {
  const char *knob;
  char value[96], old[96];
  uint64_t id, slot;
  int err;   /* alloc_shm_err of submit/await */
  alloc_shm_request_t ack;
} pending_t;

/* A change left posted for push_follow_up. */
typedef struct followed_s {
  char path[600], knob[64], value[96];
  uid_t uid;
  int pid;
  uint64_t slot, id, expires_ms;
  int64_t audit_id;
} followed_t;

static pthread_mutex_t followed_lock = PTHREAD_MUTEX_INITIALIZER;
static followed_t followed[PENDING_MAX];
static int nfollowed;

static int status_of(const pending_t *p) {
  if (p->err == ALLOC_SHM_ERR_PENDING) return 202;
  if (p->err == ALLOC_SHM_ERR_TIMEOUT || p->err == ALLOC_SHM_ERR_INFLIGHT) return 504;
  if (p->err) return 502;
  if (p->ack.status == 0) return 200;
  return p->ack.status == EPERM ? 409 : 400;
}

static json_t *result_json(const pending_t *p) {
  json_t *o = json_object();
  json_object_set_new(o, "old", p->old[0] ? json_string(p->old) : json_null());
  json_object_set_new(o, "requested", json_string(p->value));
  if (p->err) {
    /* timeout: withdrawn, it will not apply; unknown: the process took it */
    const char *st = p->err == ALLOC_SHM_ERR_TIMEOUT    ? "timeout"
                     : p->err == ALLOC_SHM_ERR_INFLIGHT ? "unknown"
                     : p->err == ALLOC_SHM_ERR_PENDING  ? "pending"
                                                        : "error";
    json_object_set_new(o, "status", json_string(st));
    json_object_set_new(o, "message", json_string(alloc_shm_strerror(p->err)));
  } else {
    json_object_set_new(o, "status", json_string(p->ack.status == 0 ? "ok" : "rejected"));
    json_object_set_new(o, "message", json_string(p->ack.message));
    json_object_set_new(o, "effective", json_string(p->ack.effective));
  }
  return o;
}

static const char *failure_text(int status) {
  switch (status) {
  case 400: return "the process rejected a change";
  case 409: return "a knob cannot change while the process runs";
  case 202: return "pending: the process is not running its publisher (stopped?); the change applies at its next "
                   "tick, and the audit log records the outcome";
  case 504: return "the process did not acknowledge in time";
  default: return "the process's telemetry segment cannot be used";
  }
}

/* The changes as pending entries, before anything is sent. */
static int prepare_changes(const collector_target_t *target, json_t *changes, pending_t *pend) {
  int n = 0;
  const char *knob;
  json_t *v;
  json_object_foreach(changes, knob, v) {
    if (n == MAX_CHANGES) break;
    pending_t *p = &pend[n++];
    memset(p, 0, sizeof *p);
    const char *kind = "INT";
    snap_config_knob(knob, &kind);
    p->knob = knob;
    value_text(v, kind, p->value, sizeof p->value);
    if (target->have_config) snap_config_text(&target->config, knob, p->old, sizeof p->old);
    p->id = next_id();
  }
  return n;
}

/* Has the process's publisher written lately?  If not, nothing will take
 * a change until it runs again. */
static bool publisher_quiet(const alloc_shm_header_t *h) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
  uint64_t quiet_ms = h->interval_ms < PUBLISHER_QUIET_MS / 3 ? PUBLISHER_QUIET_MS : 3 * h->interval_ms;
  return h->heartbeat_ns < now && now - h->heartbeat_ns > quiet_ms * 1000000u;
}

/* Post every change, then await the acknowledgements together, unless the
 * process cannot act now: then they stay posted (ALLOC_SHM_ERR_PENDING). */
static void send_changes(const collector_target_t *target, pending_t *pend, int n, unsigned timeout_ms) {
  uint64_t deadline = mono_ms() + timeout_ms;
  alloc_shm_segment_t seg;
  int open_err = alloc_shm_open(&seg, AT_FDCWD, target->path, target->uid);
  bool leave = !open_err && publisher_quiet(&seg.header);
  for (int i = 0; i < n; i++)
    pend[i].err = open_err ? open_err
                           : alloc_shm_submit(&seg, pend[i].knob, pend[i].value, pend[i].id, timeout_ms, &pend[i].slot);
  for (int i = 0; i < n; i++)
    if (!pend[i].err)
      pend[i].err = leave ? ALLOC_SHM_ERR_PENDING
                          : alloc_shm_await(&seg, pend[i].slot, pend[i].id, deadline, &pend[i].ack);
  if (!open_err) alloc_shm_close(&seg);
}

/* Remember a change left posted; false if too many are (then withdrawn). */
static bool follow(const collector_target_t *target, const pending_t *p, int64_t audit_id) {
  pthread_mutex_lock(&followed_lock);
  bool room = nfollowed < PENDING_MAX;
  if (room) {
    followed_t *f = &followed[nfollowed++];
    snprintf(f->path, sizeof f->path, "%s", target->path);
    snprintf(f->knob, sizeof f->knob, "%s", p->knob);
    snprintf(f->value, sizeof f->value, "%s", p->value);
    f->uid = target->uid;
    f->pid = target->pid;
    f->slot = p->slot;
    f->id = p->id;
    f->audit_id = audit_id;
    f->expires_ms = mono_ms() + PENDING_MAX_MS;
  }
  pthread_mutex_unlock(&followed_lock);
  return room;
}

/* The outcome of a followed change, or NULL while it is still pending. */
static const char *follow_outcome(followed_t *f, alloc_shm_request_t *ack, bool *applied) {
  alloc_shm_segment_t seg;
  *applied = false;
  if (alloc_shm_open(&seg, AT_FDCWD, f->path, f->uid)) return "not applied: the process's segment is gone (exited?)";
  const char *outcome = NULL;
  int err = alloc_shm_check(&seg, f->slot, f->id, ack);
  if (err == ALLOC_SHM_OK) {
    *applied = ack->status == 0;
    outcome = ack->status == 0 ? "ok" : ack->message;
  } else if (err == ALLOC_SHM_ERR_PENDING && mono_ms() >= f->expires_ms) {
    if (alloc_shm_withdraw(&seg, f->slot, f->id)) outcome = "not applied: the process did not take it in time; withdrawn";
  } else if (err != ALLOC_SHM_ERR_PENDING) {
    outcome = alloc_shm_strerror(err);
  }
  alloc_shm_close(&seg);
  return outcome;
}

void push_follow_up(store_t *store) {
  pthread_mutex_lock(&followed_lock);
  for (int i = 0; i < nfollowed;) {
    followed_t *f = &followed[i];
    alloc_shm_request_t ack;
    bool applied;
    const char *outcome = follow_outcome(f, &ack, &applied);
    if (!outcome) {
      i++;
      continue;
    }
    if (!store_audit_end(store, f->audit_id, outcome, applied ? ack.effective : NULL)) {
      i++;   /* try to record it again next tick */
      continue;
    }
    log_info("pending config %s=%s for pid %d: %s", f->knob, f->value, f->pid, outcome);
    followed[i] = followed[--nfollowed];
  }
  pthread_mutex_unlock(&followed_lock);
}

/* Nothing was sent: the audit log could not record the change. */
static json_t *not_audited(const collector_target_t *target, const pending_t *pend, int n, const char *why,
                           int *status) {
  json_t *results = json_object();
  for (int i = 0; i < n; i++)
    json_object_set_new(results, pend[i].knob,
                        json_pack("{s:s?, s:s, s:s}", "old", pend[i].old[0] ? pend[i].old : NULL, "requested",
                                  pend[i].value, "status", "not_applied"));
  char msg[400];
  snprintf(msg, sizeof msg, "not applied: the audit log cannot record it (database: %s)", why);
  *status = 503;
  return json_pack("{s:i, s:s, s:o, s:{}, s:s}", "pid", target->pid, "exe", target->exe, "results", results,
                   "effective", "error", msg);
}

json_t *push_config(store_t *store, const collector_target_t *target, json_t *changes, const char *client,
                    int64_t rule_id, const char *reason, unsigned timeout_ms, int *http_status) {
  pending_t pend[MAX_CHANGES];
  store_change_t audit[MAX_CHANGES];
  int n = prepare_changes(target, changes, pend);
  for (int i = 0; i < n; i++)
    audit[i] = (store_change_t){pend[i].knob, pend[i].old[0] ? pend[i].old : NULL, pend[i].value, 0};
  store_audit_t who = {client, target->process_id, target->pid, target->exe, rule_id, reason};
  char why[256];
  if (!store_audit_begin(store, &who, audit, n, why, sizeof why)) return not_audited(target, pend, n, why, http_status);
  send_changes(target, pend, n, timeout_ms);

  json_t *results = json_object(), *effective = json_object();
  int status = 200;
  bool recorded = true;
  for (int i = 0; i < n; i++) {
    pending_t *p = &pend[i];
    if (p->err == ALLOC_SHM_ERR_PENDING && !follow(target, p, audit[i].audit_id)) {
      alloc_shm_segment_t seg;   /* too many left pending: this one is withdrawn */
      if (!alloc_shm_open(&seg, AT_FDCWD, target->path, target->uid)) {
        if (alloc_shm_withdraw(&seg, p->slot, p->id)) p->err = ALLOC_SHM_ERR_TIMEOUT;
        alloc_shm_close(&seg);
      }
    }
    int s = status_of(p);
    if (status == 200 || (status == 202 && s != 200) || s == 504) status = s;
    if (p->err == ALLOC_SHM_ERR_PENDING) {   /* recorded by push_follow_up */
      json_object_set_new(results, p->knob, result_json(p));
      log_info("config %s=%s for pid %d (%s) from %s: pending", p->knob, p->value, target->pid, target->exe, client);
      continue;
    }
    json_object_set_new(results, p->knob, result_json(p));
    if (!p->err && p->ack.effective[0]) json_object_set_new(effective, p->knob, json_string(p->ack.effective));
    const char *result = p->err ? alloc_shm_strerror(p->err) : p->ack.status == 0 ? "ok" : p->ack.message;
    recorded &= store_audit_end(store, audit[i].audit_id, result, p->err ? NULL : p->ack.effective);
    log_info("config %s=%s for pid %d (%s) from %s: %s", p->knob, p->value, target->pid, target->exe, client, result);
  }
  *http_status = status;
  json_t *body = json_pack("{s:i, s:s, s:o, s:o}", "pid", target->pid, "exe", target->exe, "results", results,
                           "effective", effective);
  if (status != 200) json_object_set_new(body, "error", json_string(failure_text(status)));
  if (!recorded) {   /* sent and audited as "pending", but its outcome could not be written */
    *http_status = 500;
    json_object_set_new(body, "error",
                        json_string("sent, but the audit log could not record the outcome: it says 'pending'"));
  }
  return body;
}

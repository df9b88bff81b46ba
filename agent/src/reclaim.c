/* reclaim.c - moving reclamation to where memory is needed (reclaim.h).
 *
 * A process's allocator keeps freed pages (dirty, then muzzy) until they
 * decay, which is cheap for the process and costly for its neighbours when
 * memory is short.  So, after each collection tick (at most every
 * RECLAIM_PASS_MS), this thread looks for pressure:
 *   - the host's: /proc/pressure/memory "some" over 10 s at or above
 *     --reclaim-psi;
 *   - a cgroup's: its usage at or above --reclaim-usage of its limit (or of
 *     memory.high, whichever is lower), or its own PSI above --reclaim-psi.
 * In each place under pressure it picks one process per pass, cheapest
 * first: idle ones (statistics unchanged for IDLE_MS) before busy ones,
 * then the one with the most free resident memory (dirty + muzzy), and
 * sets its decay times to 0, so it returns its free pages at once and
 * goes on returning what it frees.  One process per place, and then
 * nothing more there for SETTLE_MS, because the first may be enough: the
 * cgroup's usage is read once a second (pressure.h) and the process
 * publishes its smaller footprint a tick later, so the next look must
 * see figures taken after the change.  When
 * its place has been free of pressure for --reclaim-hold, the operator's
 * settings come back (unless someone changed them meanwhile: then they
 * are left alone).  Every change goes through push.c, so it is in the
 * audit log, with client "reclaim", the reason, and the bytes the process
 * returned (its `purged` counter after the change, less before); allocd
 * restores the settings it changed when it stops.
 * In dry-run mode nothing is sent: each action is logged and counted. */
#include "reclaim.h"

#include "log.h"
#include "push.h"
#include "sleeper.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RECLAIM_PASS_MS 500
#define IDLE_MS 5000                        /* no change in the statistics this long: idle */
#define MIN_FREE ((uint64_t)1 << 20)        /* less free memory than this is not worth a push */
#define CLIENT "reclaim"
#define SETTLE_MS (2 * CGROUP_READ_MS + 1000)   /* after a change in a place, wait for new figures */
#define PLACES 64                               /* places changed lately, remembered */

typedef struct proc_state_s {
  int64_t process_id;
  int pid;
  uint64_t activity[3];        /* allocated, large+huge allocations, tcache: a change is activity */
  int64_t active_ms;           /* when they last changed */
  bool squeezed;               /* running with our decay times */
  int64_t squeezed_at;         /* wall ms of the change */
  int64_t old_dirty, old_muzzy;   /* what it had before */
  uint64_t number_at, purged_at;  /* its snapshot number and `purged` then */
  bool returned_recorded;
  int64_t calm_ms;             /* its place free of pressure since (0: under pressure) */
  char place[300];             /* "host" or the cgroup's path */
  bool seen;
} proc_state_t;

struct reclaim_s {
  store_t *store;
  collector_t *collector;
  reclaim_config_t cfg;
  sleeper_t s;                 /* s.lock: the counters too */
  reclaim_counters_t counters;
  proc_state_t *procs;         /* this thread's own */
  size_t nprocs, cap;
  struct {
    char name[300];
    int64_t ms;
  } acted[PLACES];             /* where a process was squeezed lately, and when */
  int64_t last_pass_ms;
};

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static proc_state_t *state_for(reclaim_t *r, const collector_live_t *l, int64_t now) {
  for (size_t i = 0; i < r->nprocs; i++)
    if (r->procs[i].process_id == l->process_id) return &r->procs[i];
  if (r->nprocs == r->cap) {
    size_t cap = r->cap ? 2 * r->cap : 64;
    proc_state_t *p = realloc(r->procs, cap * sizeof *p);
    if (!p) return NULL;
    r->procs = p;
    r->cap = cap;
  }
  proc_state_t *s = &r->procs[r->nprocs++];
  *s = (proc_state_t){.process_id = l->process_id, .pid = l->pid, .active_ms = now};
  return s;
}

/* ---- where the pressure is ---------------------------------------------------- */

/* Is the process's place under pressure?  Its name into place, why into why. */
static bool pressured(const reclaim_t *r, const collector_live_t *l, const psi_t *host, char *place, size_t psize,
                      char *why, size_t wsize) {
  if (host->known && host->some[0] >= r->cfg.psi) {
    snprintf(place, psize, "host");
    snprintf(why, wsize, "host memory pressure %.0f%% (some, 10 s)", host->some[0] * 100);
    return true;
  }
  const cgroup_mem_t *cg = &l->cgroup;
  if (!cg->known) return false;
  snprintf(place, psize, "%s", cg->path);
  uint64_t cap = cg->limit;
  if (cg->high && (!cap || cg->high < cap)) cap = cg->high;
  if (cap && (double)cg->usage >= r->cfg.usage * (double)cap) {
    snprintf(why, wsize, "cgroup %.200s at %.0f%% of its %s", cg->path, 100.0 * (double)cg->usage / (double)cap,
             cap == cg->limit ? "limit" : "memory.high");
    return true;
  }
  if (cg->psi.known && cg->psi.some[0] >= r->cfg.psi) {
    snprintf(why, wsize, "cgroup %.200s memory pressure %.0f%% (some, 10 s)", cg->path, cg->psi.some[0] * 100);
    return true;
  }
  return false;
}

/* ---- changing a process ------------------------------------------------------- */

static bool push(reclaim_t *r, const collector_live_t *l, int64_t dirty, int64_t muzzy, const char *why) {
  collector_target_t t;
  if (!collector_lookup(r->collector, l->pid, &t) || t.process_id != l->process_id) return false;
  json_t *changes = json_pack("{s:I, s:I}", "dirty_decay_ms", (json_int_t)dirty, "muzzy_decay_ms", (json_int_t)muzzy);
  int status = 0;
  json_t *res = push_config(r->store, &t, changes, CLIENT, 0, why, r->cfg.push_timeout_ms, &status);
  json_decref(res);
  json_decref(changes);
  if (status != 200) log_warn("reclaim: pid %d (%s): the change was not applied (status %d)", l->pid, l->exe, status);
  return status == 200;
}

static void squeeze(reclaim_t *r, proc_state_t *s, const collector_live_t *l, const char *place, const char *why,
                    int64_t now) {
  const alloc_shm_snapshot_t *snap = l->snapshot;
  double free_mib = (double)(snap->stats.dirty + snap->stats.muzzy) / 1048576.0;
  if (r->cfg.mode == RECLAIM_DRY_RUN) {
    log_info("reclaim (dry run): would set dirty_decay_ms=0, muzzy_decay_ms=0 on pid %d (%s, %.1f MiB free): %s",
             l->pid, l->exe, free_mib, why);
    pthread_mutex_lock(&r->s.lock);
    r->counters.dry_run++;
    pthread_mutex_unlock(&r->s.lock);
    s->squeezed = true;   /* remembered so that it is logged once per episode */
  } else {
    log_info("reclaim: setting dirty_decay_ms=0, muzzy_decay_ms=0 on pid %d (%s, %.1f MiB free): %s", l->pid, l->exe,
             free_mib, why);
    if (!push(r, l, 0, 0, why)) return;
    pthread_mutex_lock(&r->s.lock);
    r->counters.squeezed++;
    pthread_mutex_unlock(&r->s.lock);
    s->squeezed = true;
  }
  s->squeezed_at = now;
  s->old_dirty = snap->config.dirty_decay_ms;
  s->old_muzzy = snap->config.muzzy_decay_ms;
  s->number_at = snap->number;
  s->purged_at = snap->stats.purged;
  s->returned_recorded = false;
  s->calm_ms = 0;
  snprintf(s->place, sizeof s->place, "%s", place);
}

/* Give back the settings; false if they could not be (try again later). */
static bool restore(reclaim_t *r, proc_state_t *s, const collector_live_t *l) {
  const alloc_shm_config_t *now = &l->snapshot->config;
  if (r->cfg.mode == RECLAIM_DRY_RUN) {
    log_info("reclaim (dry run): pressure ended; pid %d (%s) keeps its settings", l->pid, l->exe);
    return true;
  }
  if (now->dirty_decay_ms != 0 || now->muzzy_decay_ms != 0) {
    log_info("reclaim: pid %d (%s): its decay times were changed by someone else since; left as they are", l->pid,
             l->exe);
    return true;
  }
  log_info("reclaim: pressure ended: pid %d (%s) back to dirty_decay_ms=%lld, muzzy_decay_ms=%lld", l->pid, l->exe,
           (long long)s->old_dirty, (long long)s->old_muzzy);
  if (!push(r, l, s->old_dirty, s->old_muzzy, "pressure ended: the settings it had before")) return false;
  pthread_mutex_lock(&r->s.lock);
  r->counters.restored++;
  pthread_mutex_unlock(&r->s.lock);
  return true;
}

/* Once the process has published after the change: what it returned. */
static void record_returned(reclaim_t *r, proc_state_t *s, const collector_live_t *l) {
  const alloc_shm_snapshot_t *snap = l->snapshot;
  if (s->returned_recorded || r->cfg.mode != RECLAIM_ON || snap->number <= s->number_at) return;
  uint64_t bytes = snap->stats.purged > s->purged_at ? snap->stats.purged - s->purged_at : 0;
  store_audit_returned(r->store, l->process_id, CLIENT, s->squeezed_at, (int64_t)bytes);
  log_info("reclaim: pid %d (%s) returned %.1f MiB", l->pid, l->exe, (double)bytes / 1048576.0);
  pthread_mutex_lock(&r->s.lock);
  r->counters.returned_bytes += bytes;
  pthread_mutex_unlock(&r->s.lock);
  s->returned_recorded = true;
}

/* ---- a pass ------------------------------------------------------------------------- */

typedef struct candidate_s {
  const collector_live_t *l;
  proc_state_t *s;
  bool idle;
  uint64_t free;
  char place[300], why[300];
} candidate_t;

static int cheapest_first(const void *a, const void *b) {
  const candidate_t *x = a, *y = b;
  if (x->idle != y->idle) return x->idle ? -1 : 1;
  return x->free > y->free ? -1 : x->free < y->free;
}

static void note_activity(proc_state_t *s, const alloc_shm_snapshot_t *snap, int64_t now) {
  uint64_t a[3] = {snap->stats.allocated, snap->stats.large_nmalloc + snap->stats.huge_nmalloc, snap->stats.tcache};
  if (memcmp(a, s->activity, sizeof a)) {
    memcpy(s->activity, a, sizeof a);
    s->active_ms = now;
  }
}

/* A squeezed process: its returned bytes, and its settings back once its
 * place has been calm for hold_ms. */
static void follow_squeezed(reclaim_t *r, proc_state_t *s, const collector_live_t *l, bool under, int64_t now) {
  record_returned(r, s, l);
  if (under) {
    s->calm_ms = 0;
    return;
  }
  if (!s->calm_ms) s->calm_ms = now;
  if (now - s->calm_ms >= r->cfg.hold_ms && restore(r, s, l)) s->squeezed = false;
}

/* Was a process of this place squeezed less than SETTLE_MS ago? */
static bool settling(const reclaim_t *r, const char *place, int64_t now) {
  for (int i = 0; i < PLACES; i++)
    if (now - r->acted[i].ms < SETTLE_MS && strcmp(r->acted[i].name, place) == 0) return true;
  return false;
}

static void acted_in(reclaim_t *r, const char *place, int64_t now) {
  int oldest = 0;
  for (int i = 1; i < PLACES; i++)
    if (r->acted[i].ms < r->acted[oldest].ms) oldest = i;
  snprintf(r->acted[oldest].name, sizeof r->acted[oldest].name, "%s", place);
  r->acted[oldest].ms = now;
}

static void pass(reclaim_t *r) {
  int64_t now = wall_ms();
  collector_counters_t k;
  collector_counters(r->collector, &k);
  size_t n;
  collector_live_t *live = collector_live(r->collector, -1, &n, false);
  candidate_t *cand = live ? calloc(n ? n : 1, sizeof *cand) : NULL;
  if (!cand) {
    free(live);
    return;
  }
  size_t nc = 0;
  for (size_t i = 0; i < r->nprocs; i++) r->procs[i].seen = false;
  for (size_t i = 0; i < n; i++) {
    const collector_live_t *l = &live[i];
    proc_state_t *s = l->snapshot ? state_for(r, l, now) : NULL;
    if (!s) continue;
    s->seen = true;
    note_activity(s, l->snapshot, now);
    candidate_t *c = &cand[nc];
    bool under = pressured(r, l, &k.host_psi, c->place, sizeof c->place, c->why, sizeof c->why);
    if (s->squeezed) {
      follow_squeezed(r, s, l, under, now);
      continue;
    }
    const alloc_shm_stats_t *st = &l->snapshot->stats;
    const alloc_shm_config_t *cf = &l->snapshot->config;
    if (!under || st->dirty + st->muzzy < MIN_FREE || (cf->dirty_decay_ms == 0 && cf->muzzy_decay_ms == 0)) continue;
    c->l = l, c->s = s, c->free = st->dirty + st->muzzy, c->idle = now - s->active_ms >= IDLE_MS;
    nc++;
  }
  /* one process per place under pressure, the cheapest */
  qsort(cand, nc, sizeof *cand, cheapest_first);
  for (size_t i = 0; i < nc; i++)
    if (!settling(r, cand[i].place, now)) {
      squeeze(r, cand[i].s, cand[i].l, cand[i].place, cand[i].why, now);
      acted_in(r, cand[i].place, now);
    }
  /* processes gone */
  size_t kept = 0, squeezed = 0;
  for (size_t i = 0; i < r->nprocs; i++)
    if (r->procs[i].seen) {
      squeezed += r->procs[i].squeezed;
      r->procs[kept++] = r->procs[i];
    }
  r->nprocs = kept;
  pthread_mutex_lock(&r->s.lock);
  r->counters.squeezed_now = r->cfg.mode == RECLAIM_ON ? squeezed : 0;
  pthread_mutex_unlock(&r->s.lock);
  free(cand);
  free(live);
}

/* At shutdown: nobody would give them back later. */
static void restore_all(reclaim_t *r) {
  size_t n;
  collector_live_t *live = collector_live(r->collector, -1, &n, false);
  for (size_t i = 0; live && i < r->nprocs; i++) {
    proc_state_t *s = &r->procs[i];
    for (size_t j = 0; s->squeezed && j < n; j++)
      if (live[j].process_id == s->process_id && live[j].snapshot) restore(r, s, &live[j]);
  }
  free(live);
}

static void *reclaim_main(void *arg) {
  reclaim_t *r = arg;
  pthread_mutex_lock(&r->s.lock);
  while (!r->s.stop) {
    if (!r->s.kicked) pthread_cond_wait(&r->s.wake, &r->s.lock);
    if (r->s.stop) break;
    r->s.kicked = false;
    int64_t now = wall_ms();
    if (now - r->last_pass_ms < RECLAIM_PASS_MS) continue;
    r->last_pass_ms = now;
    pthread_mutex_unlock(&r->s.lock);
    pass(r);
    pthread_mutex_lock(&r->s.lock);
  }
  pthread_mutex_unlock(&r->s.lock);
  restore_all(r);
  return NULL;
}

reclaim_t *reclaim_start(store_t *store, collector_t *collector, const reclaim_config_t *cfg) {
  if (cfg->mode == RECLAIM_OFF) return NULL;
  reclaim_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->store = store;
  r->collector = collector;
  r->cfg = *cfg;
  if (!sleeper_start(&r->s, reclaim_main, r)) {
    free(r);
    return NULL;
  }
  log_info("reclaim%s: on memory pressure (host or cgroup PSI some >= %.0f%%, a cgroup at %.0f%% of its limit), "
           "settings back after %lld s without",
           cfg->mode == RECLAIM_DRY_RUN ? " (dry run)" : "", cfg->psi * 100, cfg->usage * 100,
           (long long)(cfg->hold_ms / 1000));
  return r;
}

void reclaim_kick(reclaim_t *r) {
  if (r) sleeper_kick(&r->s);
}

void reclaim_stop(reclaim_t *r) {
  if (!r) return;
  sleeper_stop(&r->s);
  free(r->procs);
  free(r);
}

void reclaim_counters(reclaim_t *r, reclaim_counters_t *out) {
  *out = (reclaim_counters_t){0};
  if (!r) return;
  pthread_mutex_lock(&r->s.lock);
  *out = r->counters;
  pthread_mutex_unlock(&r->s.lock);
}

/* rules.c - applying rules to processes as they appear.
 *
 * After each collection tick the collector has a list of processes seen
 * for the first time; this thread takes them, and for every rule whose glob
 * matches the executable (and whose canary share includes the process)
 * pushes the rule's config, recorded in the audit log as coming from
 * "rule:<id>".  Rules apply in id order, so a later rule wins a knob.  A
 * rule applies once per process: after an allocd restart (every process is
 * new to the collector then) the audit log says which already have it. */
#include "rules.h"

#include "log.h"
#include "push.h"

#include <fnmatch.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct rules_s {
  store_t *store;
  collector_t *collector;
  unsigned timeout_ms;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool kicked, stop;
};

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

static void apply(rules_t *r, const collector_target_t *t, json_t *rules) {
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
    json_t *res = push_config(r->store, t, json_object_get(rule, "config"), client, id, r->timeout_ms, &status);
    if (status != 200) log_warn("rule %lld on pid %d (%s): HTTP-equivalent status %d", (long long)id, t->pid, t->exe, status);
    json_decref(res);
  }
}

static void *rules_main(void *arg) {
  rules_t *r = arg;
  collector_target_t batch[32];
  pthread_mutex_lock(&r->lock);
  while (!r->stop) {
    while (!r->kicked && !r->stop) pthread_cond_wait(&r->cond, &r->lock);
    r->kicked = false;
    pthread_mutex_unlock(&r->lock);
    int n;
    while (!r->stop && (n = collector_take_new(r->collector, batch, 32)) > 0) {
      json_t *rules = store_rules_json(r->store);
      for (int i = 0; i < n && !r->stop; i++) apply(r, &batch[i], rules);
      json_decref(rules);
    }
    pthread_mutex_lock(&r->lock);
  }
  pthread_mutex_unlock(&r->lock);
  return NULL;
}

rules_t *rules_start(store_t *store, collector_t *collector, unsigned push_timeout_ms) {
  rules_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->store = store;
  r->collector = collector;
  r->timeout_ms = push_timeout_ms;
  pthread_mutex_init(&r->lock, NULL);
  pthread_cond_init(&r->cond, NULL);
  if (pthread_create(&r->thread, NULL, rules_main, r) != 0) {
    free(r);
    return NULL;
  }
  return r;
}

void rules_kick(rules_t *r) {
  pthread_mutex_lock(&r->lock);
  r->kicked = true;
  pthread_cond_signal(&r->cond);
  pthread_mutex_unlock(&r->lock);
}

void rules_stop(rules_t *r) {
  if (!r) return;
  pthread_mutex_lock(&r->lock);
  r->stop = true;
  pthread_cond_signal(&r->cond);
  pthread_mutex_unlock(&r->lock);
  pthread_join(r->thread, NULL);
  free(r);
}

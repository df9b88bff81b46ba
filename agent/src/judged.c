/* judged.c - the table of judged files (judged.h): open addressing with
 * linear probing, at most half full, rebuilt at each sweep (which is
 * O(table), once per tick, and leaves no tombstones). */
#include "judged.h"

#include <stdlib.h>
#include <string.h>

typedef struct entry_s {
  uint64_t ino;
  int64_t judged_ms;
  int32_t pid;
  uint8_t kind, used, present;
} entry_t;

struct judged_s {
  entry_t *slots;
  size_t cap, count;   /* cap: a power of two */
};

judged_t *judged_new(void) {
  judged_t *j = calloc(1, sizeof *j);
  if (!j) return NULL;
  j->cap = 1024;
  j->slots = calloc(j->cap, sizeof *j->slots);
  if (!j->slots) {
    free(j);
    return NULL;
  }
  return j;
}

void judged_free(judged_t *j) {
  if (!j) return;
  free(j->slots);
  free(j);
}

static size_t hash(enum judged_kind kind, int pid, uint64_t ino) {
  uint64_t h = (ino * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)(uint32_t)pid << 1 | (uint64_t)kind);
  h ^= h >> 31;
  h *= 0xbf58476d1ce4e5b9ull;
  return (size_t)(h ^ (h >> 29));
}

/* The slot holding this file, or the empty slot where it would go. */
static entry_t *slot_of(entry_t *slots, size_t cap, enum judged_kind kind, int pid, uint64_t ino) {
  for (size_t i = hash(kind, pid, ino) & (cap - 1);; i = (i + 1) & (cap - 1)) {
    entry_t *e = &slots[i];
    if (!e->used || (e->ino == ino && e->pid == pid && e->kind == kind)) return e;
  }
}

/* Move the entries wanted (present ones at a sweep, all when growing) into
 * a table of `cap` slots. */
static bool rebuild(judged_t *j, size_t cap, bool only_present) {
  entry_t *slots = calloc(cap, sizeof *slots);
  if (!slots) return false;
  size_t count = 0;
  for (size_t i = 0; i < j->cap; i++) {
    entry_t e = j->slots[i];
    if (!e.used || (only_present && !e.present)) continue;
    e.present = !only_present && e.present;
    *slot_of(slots, cap, e.kind, e.pid, e.ino) = e;
    count++;
  }
  free(j->slots);
  j->slots = slots;
  j->cap = cap;
  j->count = count;
  return true;
}

bool judged_fresh(judged_t *j, enum judged_kind kind, int pid, ino_t ino, int64_t now_ms) {
  entry_t *e = slot_of(j->slots, j->cap, kind, pid, (uint64_t)ino);
  if (!e->used) return false;
  e->present = 1;
  return now_ms - e->judged_ms < JUDGED_EXPIRE_MS;
}

bool judged_put(judged_t *j, enum judged_kind kind, int pid, ino_t ino, int64_t now_ms) {
  entry_t *e = slot_of(j->slots, j->cap, kind, pid, (uint64_t)ino);
  if (e->used) {
    e->judged_ms = now_ms;
    e->present = 1;
    return false;
  }
  /* Past JUDGED_MAX files (or out of memory) a file is not remembered: it
   * is judged again when its turn comes, and neither counted nor logged. */
  if (j->count >= JUDGED_MAX) return false;
  if (2 * (j->count + 1) > j->cap) {
    if (!rebuild(j, 2 * j->cap, false)) return false;
    e = slot_of(j->slots, j->cap, kind, pid, (uint64_t)ino);
  }
  *e = (entry_t){(uint64_t)ino, now_ms, pid, (uint8_t)kind, 1, 1};
  j->count++;
  return true;
}

void judged_sweep(judged_t *j) {
  size_t cap = j->cap;
  while (cap > 1024 && 8 * j->count < cap) cap /= 2;   /* shrink once the junk is gone */
  rebuild(j, cap, true);
}

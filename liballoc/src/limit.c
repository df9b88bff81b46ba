/* limit.c - memory_limit: the memory the process may use, and what
 * liballoc does near it.
 *
 * The limit is the option's number of bytes, or (`cgroup`, the default)
 * the tightest limit of the process's cgroups: v2 memory.max and
 * memory.high, v1 memory.limit_in_bytes, at every level from the process's
 * cgroup up to the root of the hierarchy (a parent's limit binds its
 * children).  The cgroups come from /proc/self/cgroup, the hierarchies'
 * mount points from /proc/self/mountinfo (containers and distributions do
 * not all mount them at /sys/fs/cgroup).  Anything unreadable, "max", a
 * number too large to be a limit (v1 says "unlimited" with a page-rounded
 * 2^63 - 4096) means no limit; a file that is not a number warns once.
 *
 * Nothing here is on a fast path.  The slow paths that map memory (a new
 * segment, arena.c; a new or growing huge block, huge.c) ask la_limit_check
 * first: one load when there is no limit, else an estimate of the
 * process's resident bytes (the kernel's RSS at its last reading plus what
 * liballoc mapped since) against the soft threshold, the limit less
 * max(5%, 8 MiB).  Near it, la_limit_reclaim (called without any allocator
 * lock) reads the RSS afresh and, if it is really near, returns every free
 * page liballoc holds (la_arenas_purge: dirty and muzzy units, emptied
 * abandoned slabs, wholly free segments; la_huge_purge: cached huge
 * mappings; the purger takes back idle thread caches) before the mapping
 * goes ahead, at most once per RECLAIM_INTERVAL_NS, so that a program
 * living near its limit does not purge on every slow path.  With
 * memory_limit_hard it then refuses a mapping that would still cross the
 * limit: the allocation fails with ENOMEM.
 *
 * The 5% (at least 8 MiB: two segments) is room for what the cgroup also
 * charges and liballoc cannot see between two readings (the page cache,
 * kernel memory, the program's own mmaps, other threads mapping at the same
 * time): the reclaim must happen before the kernel starts reclaiming (v2
 * memory.high throttles, v1 and memory.max kill).
 *
 * Discovery costs a few system calls, so a process does not pay it at
 * start-up: the publisher reads the cgroup limit at each tick (containers
 * get resized), and the slow paths do once liballoc has mapped
 * DISCOVER_AFTER bytes without it (telemetry:false, or within the first
 * tick). */
#include "alloc_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define HEADROOM_MIN ((size_t)8 << 20)
#define DISCOVER_AFTER ((size_t)32 << 20)
#define RECLAIM_INTERVAL_NS 10000000ull   /* 10 ms */
#define REDISCOVER_NS 1000000000ull       /* slow paths re-read the cgroup at most once a second */
#define LIMIT_NONE_FROM (1ull << 62)      /* a "limit" this large is none */

static pthread_mutex_t limit_lock = PTHREAD_MUTEX_INITIALIZER;   /* discovery, reclaim */
static atomic_size_t limit_bytes;      /* in force; 0: none */
static atomic_int limit_source;        /* enum la_limit_source */
static atomic_bool limit_known;        /* limit_bytes reflects the option in force */
static atomic_size_t rss_seen;         /* the kernel's RSS at the last reading */
static atomic_size_t mapped_since;     /* bytes the checks let map since that reading */
static uint64_t reclaim_at, discovered_at;   /* (limit_lock) ns */
static atomic_size_t limit_returned, limit_hits, limit_refused;
static atomic_size_t limit_reclaims;   /* times give_back ran (tests) */
static const char *cgroup_root = "";   /* prefix of every path read (tests: a fake tree) */

/* ---- discovery ------------------------------------------------------------ */

/* root + path into out; false if it does not fit. */
static bool join(char *out, size_t size, const char *root, const char *path, size_t pathlen) {
  size_t rl = strlen(root);
  if (rl + pathlen + 1 > size) return false;
  memcpy(out, root, rl);
  memcpy(out + rl, path, pathlen);
  out[rl + pathlen] = 0;
  return true;
}

static void warn_garbage(const char *path) {
  static atomic_bool warned;
  if (!atomic_exchange(&warned, true))
    la_warn("memory_limit: %s holds no number, ignored (further such files are ignored quietly)", path);
}

/* One limit file: its limit in bytes, 0 for none ("max", missing, too
 * large, garbage). */
static size_t read_limit_file(const char *path) {
  char buf[64];
  ssize_t n = la_os_read_file(path, buf, sizeof buf);
  if (n <= 0) return 0;
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) buf[--n] = 0;
  if (strcmp(buf, "max") == 0) return 0;
  unsigned long long v = 0;
  for (ssize_t i = 0; i < n; i++) {
    if (buf[i] < '0' || buf[i] > '9' || i >= 20) {
      warn_garbage(path);
      return 0;
    }
    if (v >= LIMIT_NONE_FROM) return 0;   /* v1's "unlimited", or more */
    v = v * 10 + (unsigned)(buf[i] - '0');
  }
  if (n == 0) return 0;
  return v >= LIMIT_NONE_FROM ? 0 : (size_t)v;
}

static size_t tighter(size_t a, size_t b) { return !a ? b : !b ? a : a < b ? a : b; }

/* The tightest limit from the directory `dir` (root + mount point +
 * cgroup path) up to the mount point (its first `mount_len` bytes). */
static size_t walk_up(char *dir, size_t mount_len, bool v2) {
  size_t best = 0;
  size_t len = strlen(dir);
  char path[LA_PATH_MAX + 64];
  for (;;) {
    while (len > mount_len && dir[len - 1] == '/') len--;   /* "a/b/" -> "a/b" */
    if (v2) {
      if (len + 13 < sizeof path) {
        memcpy(path, dir, len);
        memcpy(path + len, "/memory.max", 12);
        best = tighter(best, read_limit_file(path));
        memcpy(path + len, "/memory.high", 13);
        best = tighter(best, read_limit_file(path));
      }
    } else if (len + 23 < sizeof path) {
      memcpy(path, dir, len);
      memcpy(path + len, "/memory.limit_in_bytes", 23);
      best = tighter(best, read_limit_file(path));
    }
    if (len <= mount_len) break;
    while (len > mount_len && dir[len - 1] != '/') len--;   /* up one level */
  }
  return best;
}

/* mountinfo escapes spaces and such as \ooo: undo it in place. */
static void unescape(char *s) {
  char *o = s;
  for (char *p = s; *p; p++) {
    if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' && p[3] >= '0' && p[3] <= '7') {
      *o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
      p += 3;
    } else *o++ = *p;
  }
  *o = 0;
}

/* Does the comma-separated list hold `word`? */
static bool has_word(const char *list, size_t len, const char *word) {
  size_t wl = strlen(word);
  for (size_t i = 0; i < len;) {
    size_t j = i;
    while (j < len && list[j] != ',') j++;
    if (j - i == wl && memcmp(list + i, word, wl) == 0) return true;
    i = j + 1;
  }
  return false;
}

static char mountinfo[65536] LA_BULK;   /* (limit_lock) bounded: mounts past it are not seen */

/* What the last discovery found, so that the publisher's tick re-reads only
 * /proc/self/cgroup and the limit files, not the whole mountinfo (which
 * can be tens of KiB): the directories it walked, for the /proc/self/cgroup
 * it read.  limit_lock held. */
#define MAX_WALKS 4
typedef struct walk_s {
  char dir[LA_PATH_MAX + 64];
  size_t mount_len;
  bool v2;
} walk_t;
static walk_t walks[MAX_WALKS];
static unsigned nwalks;
static bool walks_full;          /* more than MAX_WALKS: no caching */
static char walked_cgroups[4096] LA_BULK;   /* the /proc/self/cgroup they came from; "" none */
/* /proc/self/cgroup as read now.  Static, like mountinfo, because discovery
 * runs on allocation slow paths, whose threads may have small stacks. */
static char cgroups_text[4096] LA_BULK;

/* The limit of the hierarchy mounted with `fstype` ("cgroup" with the
 * memory controller, or "cgroup2") for the process's cgroup path `cg`. */
static size_t hierarchy_limit(const char *root, const char *cg, bool v2) {
  char path[LA_PATH_MAX + 64];
  if (!join(path, sizeof path, root, "/proc/self/mountinfo", 20)) return 0;
  if (la_os_read_file(path, mountinfo, sizeof mountinfo) <= 0) return 0;
  size_t best = 0;
  for (char *line = mountinfo, *next; line && *line; line = next) {
    next = strchr(line, '\n');
    if (next) *next++ = 0;
    /* id parent major:minor root mount-point options [optional...] - fstype source super-options */
    char *field[6] = {0};
    char *p = line;
    for (int i = 0; i < 6 && p; i++) {
      field[i] = p;
      p = strchr(p, ' ');
      if (p) *p++ = 0;
    }
    char *dash = p ? strstr(p, " - ") : NULL;
    if (p && strncmp(p, "- ", 2) == 0) dash = p - 1;
    if (!field[4] || !dash) continue;
    char *fstype = dash + 3, *source = strchr(fstype, ' ');
    if (!source) continue;
    *source++ = 0;
    char *opts = strchr(source, ' ');
    opts = opts ? opts + 1 : source + strlen(source);
    if (v2 ? strcmp(fstype, "cgroup2") != 0
           : strcmp(fstype, "cgroup") != 0 || !has_word(opts, strlen(opts), "memory"))
      continue;
    char *mroot = field[3], *mpoint = field[4];
    unescape(mroot);
    unescape(mpoint);
    /* The mount shows the hierarchy from mroot down: the process's path
     * relative to it (a container that sees the host's path names). */
    const char *rel = cg;
    size_t rl = strlen(mroot);
    if (strcmp(mroot, "/") != 0 && strncmp(cg, mroot, rl) == 0 && (cg[rl] == '/' || cg[rl] == 0)) rel = cg + rl;
    char dir[LA_PATH_MAX + 64];
    size_t ml = strlen(root) + strlen(mpoint);
    if (ml + strlen(rel) + 1 > sizeof dir) continue;
    snprintf(dir, sizeof dir, "%s%s%s", root, mpoint, rel);
    if (nwalks < MAX_WALKS) {
      walk_t *w = &walks[nwalks++];
      memcpy(w->dir, dir, sizeof w->dir);
      w->mount_len = ml;
      w->v2 = v2;
    } else {
      walks_full = true;
    }
    best = tighter(best, walk_up(dir, ml, v2));
  }
  return best;
}

static la_limit_t discover_from(const char *root, char *cgroups);

/* The tightest memory limit of the cgroups of the process, reading every
 * file under `root` ("" for the real ones; a test points it at a fake
 * tree): bytes and source, {0, LA_LIMIT_NONE} if none.  Takes limit_lock's
 * buffer: called with limit_lock held, or from a single-threaded test. */
la_limit_t la_limit_discover(const char *root) {
  char path[LA_PATH_MAX + 64], *cgroups = cgroups_text;
  la_limit_t found = {0, LA_LIMIT_NONE};
  walked_cgroups[0] = 0;
  if (!join(path, sizeof path, root, "/proc/self/cgroup", 17) ||
      la_os_read_file(path, cgroups, sizeof cgroups_text) <= 0)
    return found;
  found = discover_from(root, cgroups);
  walked_cgroups[0] = 0;   /* a test's tree: not for the ticks' cache */
  return found;
}

/* The same, through the directories the last discovery walked if
 * /proc/self/cgroup has not changed since (the publisher's every tick). */
static la_limit_t discover_cached(const char *root) {
  char path[LA_PATH_MAX + 64], *cgroups = cgroups_text;
  la_limit_t found = {0, LA_LIMIT_NONE};
  if (!join(path, sizeof path, root, "/proc/self/cgroup", 17) ||
      la_os_read_file(path, cgroups, sizeof cgroups_text) <= 0) {
    walked_cgroups[0] = 0;
    return found;
  }
  if (!walked_cgroups[0] || strcmp(cgroups, walked_cgroups) != 0) return discover_from(root, cgroups);
  for (unsigned i = 0; i < nwalks; i++) {
    char dir[sizeof walks[i].dir];
    memcpy(dir, walks[i].dir, sizeof dir);
    size_t lim = walk_up(dir, walks[i].mount_len, walks[i].v2);
    if (lim && (!found.bytes || lim < found.bytes))
      found = (la_limit_t){lim, walks[i].v2 ? LA_LIMIT_CGROUP_V2 : LA_LIMIT_CGROUP_V1};
  }
  return found;
}

/* Discovery from the text of /proc/self/cgroup (modified: split into
 * lines); remembers the walks for discover_cached. */
static la_limit_t discover_from(const char *root, char *cgroups) {
  la_limit_t found = {0, LA_LIMIT_NONE};
  size_t len = strlen(cgroups);
  memcpy(walked_cgroups, cgroups, len + 1);
  nwalks = 0;
  walks_full = false;
  char *save = NULL;
  for (char *line = strtok_r(cgroups, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    /* "id:controllers:path": v1 "4:memory:/a/b", v2 "0::/a/b" */
    char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2 || c2[1] != '/') continue;
    bool v2 = c2 == c1 + 1 && c1 - line == 1 && line[0] == '0';
    if (!v2 && !has_word(c1 + 1, (size_t)(c2 - c1 - 1), "memory")) continue;
    size_t lim = hierarchy_limit(root, c2 + 1, v2);
    if (lim && (!found.bytes || lim < found.bytes)) {
      found.bytes = lim;
      found.source = v2 ? LA_LIMIT_CGROUP_V2 : LA_LIMIT_CGROUP_V1;
    }
  }
  if (walks_full) walked_cgroups[0] = 0;   /* too many to cache: read everything each time */
  return found;
}

/* Tests: read the cgroup files under `root` instead of /.  limit_lock
 * held by nobody (a test's single thread). */
void la_limit_set_cgroup_root(const char *root) {
  cgroup_root = root ? root : "";
  walked_cgroups[0] = 0;
}

/* Bring limit_bytes up to date with the option (and the cgroups, when it
 * says `cgroup`).  limit_lock held. */
static void refresh_locked(uint64_t now) {
  la_limit_t l = {0, LA_LIMIT_NONE};
  ssize_t opt = la_opt.memory_limit;
  if (opt > 0) l = (la_limit_t){(size_t)opt, LA_LIMIT_OPTION};
  else if (opt < 0) l = discover_cached(cgroup_root);
  atomic_store(&limit_bytes, l.bytes);
  atomic_store(&limit_source, l.source);
  atomic_store(&limit_known, true);
  discovered_at = now;
}

/* ---- near the limit --------------------------------------------------------- */

static size_t soft_threshold(size_t limit) {
  size_t room = limit / 20 > HEADROOM_MIN ? limit / 20 : HEADROOM_MIN;
  if (room > limit / 2) room = limit / 2;
  return limit - room;
}

static size_t read_rss(void) { return la_proc_rss(); }

/* Before the first refresh: a number of bytes (or 0) given in ALLOC_CONF is
 * in force at once, with no system call; false for `cgroup`, which needs
 * discovery. */
static bool settle_number(void) {
  ssize_t opt = la_opt.memory_limit;
  if (opt < 0) return false;
  atomic_store(&limit_bytes, (size_t)opt);
  atomic_store(&limit_source, opt ? LA_LIMIT_OPTION : LA_LIMIT_NONE);
  atomic_store(&limit_known, true);
  return true;
}

/* About to map `bytes` (a slow path, possibly with an arena lock held: no
 * system call here).  LA_LIMIT_OK: go ahead (counted); LA_LIMIT_NEAR: drop
 * every lock and call la_limit_reclaim first. */
enum la_limit_answer la_limit_check(size_t bytes) {
  if (!atomic_load_explicit(&limit_known, memory_order_acquire) && !settle_number()) {
    if (atomic_load_explicit(&mapped_since, memory_order_relaxed) + bytes >= DISCOVER_AFTER)
      return LA_LIMIT_NEAR;   /* la_limit_reclaim discovers the cgroup's */
  } else {
    size_t limit = atomic_load_explicit(&limit_bytes, memory_order_relaxed);
    if (!limit) return LA_LIMIT_OK;
    size_t usage = atomic_load_explicit(&rss_seen, memory_order_relaxed) +
                   atomic_load_explicit(&mapped_since, memory_order_relaxed) + bytes;
    if (usage >= soft_threshold(limit)) return LA_LIMIT_NEAR;
  }
  atomic_fetch_add_explicit(&mapped_since, bytes, memory_order_relaxed);
  return LA_LIMIT_OK;
}

/* Return every free page liballoc holds: the calling thread's sparse
 * slabs' free pages, the arenas' dirty and muzzy pages, the huge cache, and
 * (by the purger) idle threads' caches. */
static void give_back(void) {
  la_heap_trim_sparse_now();
  la_arenas_purge();
  la_huge_purge();
  la_purger_wake_for_caches();   /* idle threads' caches: the purger's job */
}

/* Near the limit: `rss` (just read) plus `bytes` is at or above the soft
 * threshold.  Give back free memory if not done within the interval (or
 * if a hard limit would refuse otherwise); returns the RSS after.
 * limit_lock held. */
static size_t reclaim_locked(size_t rss, size_t bytes, size_t limit, uint64_t now) {
  atomic_fetch_add_explicit(&limit_hits, 1, memory_order_relaxed);
  bool refuse = la_opt.memory_limit_hard && rss + bytes > limit;
  if (now - reclaim_at < RECLAIM_INTERVAL_NS && reclaim_at && !refuse) return rss;
  reclaim_at = now;
  atomic_fetch_add_explicit(&limit_reclaims, 1, memory_order_relaxed);
  give_back();
  /* What the kernel saw go: purge counts (la_arenas_purge's) include
   * pages never touched, and a segment both purged and unmapped. */
  size_t after = read_rss();
  if (after && after < rss)
    atomic_fetch_add_explicit(&limit_returned, rss - after, memory_order_relaxed);
  atomic_store(&rss_seen, after);
  return after ? after : rss;
}

/* After LA_LIMIT_NEAR, with no allocator lock held: settle the limit if
 * needed, read the RSS, give back free memory if it is really near.  True:
 * map the `bytes` (counted); false: memory_limit_hard refuses them
 * (counted; the caller fails with ENOMEM). */
bool la_limit_reclaim(size_t bytes) {
  uint64_t now = la_now_ns();
  pthread_mutex_lock(&limit_lock);
  if (!atomic_load(&limit_known) || (la_opt.memory_limit < 0 && now - discovered_at >= REDISCOVER_NS))
    refresh_locked(now);
  size_t limit = atomic_load(&limit_bytes);
  bool ok = true;
  if (limit) {
    size_t rss = read_rss();
    atomic_store(&rss_seen, rss);
    atomic_store(&mapped_since, 0);
    if (rss + bytes >= soft_threshold(limit)) rss = reclaim_locked(rss, bytes, limit, now);
    if (la_opt.memory_limit_hard && rss + bytes > limit) ok = false;
  }
  if (ok) atomic_fetch_add_explicit(&mapped_since, bytes, memory_order_relaxed);
  else atomic_fetch_add_explicit(&limit_refused, 1, memory_order_relaxed);
  pthread_mutex_unlock(&limit_lock);
  return ok;
}

/* Both steps, for a caller that holds no lock (huge.c). */
bool la_limit_before_map(size_t bytes) {
  return la_limit_check(bytes) == LA_LIMIT_OK || la_limit_reclaim(bytes);
}

/* The publisher's tick, with the RSS it has just read: re-read the cgroup
 * limit (containers get resized) and, near the limit, give back free
 * memory (the program's own growth, which no slow path of ours sees). */
void la_limit_tick(size_t kernel_rss) {
  uint64_t now = la_now_ns();
  pthread_mutex_lock(&limit_lock);
  refresh_locked(now);
  size_t limit = atomic_load(&limit_bytes);
  if (kernel_rss) {
    atomic_store(&rss_seen, kernel_rss);
    atomic_store(&mapped_since, 0);
  }
  if (limit && kernel_rss >= soft_threshold(limit)) reclaim_locked(kernel_rss, 0, limit, now);
  pthread_mutex_unlock(&limit_lock);
}

/* memory_limit changed (alloc_ctl, the control area): in force at once. */
int la_apply_memory_limit(void) {
  pthread_mutex_lock(&limit_lock);
  refresh_locked(la_now_ns());
  pthread_mutex_unlock(&limit_lock);
  return 0;
}

size_t la_limit_reclaim_passes(void) { return atomic_load(&limit_reclaims); }

void la_limit_stats(alloc_shm_stats_t *s) {
  if (!atomic_load(&limit_known)) settle_number();
  s->limit = atomic_load_explicit(&limit_bytes, memory_order_relaxed);
  s->limit_source = (uint64_t)atomic_load_explicit(&limit_source, memory_order_relaxed);
  s->limit_returned = atomic_load_explicit(&limit_returned, memory_order_relaxed);
  s->limit_hits = atomic_load_explicit(&limit_hits, memory_order_relaxed);
  s->limit_refused = atomic_load_explicit(&limit_refused, memory_order_relaxed);
}

/* fork: limit_lock comes after ctl_lock (la_apply_memory_limit) and before
 * the arena and huge locks (reclaim). */
void la_limit_fork_prepare(void) { pthread_mutex_lock(&limit_lock); }
void la_limit_fork_parent(void) { pthread_mutex_unlock(&limit_lock); }
void la_limit_fork_child(void) { pthread_mutex_init(&limit_lock, NULL); }

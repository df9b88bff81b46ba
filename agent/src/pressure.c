/* pressure.c - reading memory pressure and memory cgroups (pressure.h).
 *
 * Everything here is read from kernel files, but a process in a delegated
 * cgroup names its own sub-cgroups, so paths are cleaned text (text.h) and
 * every file read is bounded.  The cgroup path a process's
 * /proc/PID/cgroup gives is relative to the root of allocd's cgroup
 * namespace, and the hierarchy may be mounted from below its root (a
 * container's view): the mountinfo line says which part, and a cgroup
 * outside it cannot be read. */
#include "pressure.h"

#include "text.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define V1_UNLIMITED (UINT64_C(1) << 60)   /* v1 says "no limit" with a page-rounded LONG_MAX */

static ssize_t read_small(const char *path, char *buf, size_t size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, size - 1);
  close(fd);
  if (n >= 0) buf[n] = 0;
  return n;
}

/* ---- PSI -------------------------------------------------------------------- */

/* "some avg10=0.12 avg60=0.05 avg300=0.01 total=123456" */
static bool psi_line(const char *line, double avg[3], uint64_t *total) {
  unsigned long long t;
  if (sscanf(line, "%*s avg10=%lf avg60=%lf avg300=%lf total=%llu", &avg[0], &avg[1], &avg[2], &t) != 4) return false;
  for (int i = 0; i < 3; i++) {
    if (!(avg[i] >= 0 && avg[i] <= 100)) return false;
    avg[i] /= 100;   /* the kernel gives percent */
  }
  *total = t;
  return true;
}

bool psi_parse(const char *text, psi_t *out) {
  *out = (psi_t){0};
  const char *some = strncmp(text, "some ", 5) == 0 ? text : strstr(text, "\nsome ");
  const char *full = strstr(text, "\nfull ");
  if (!some || !psi_line(some + (some != text), out->some, &out->some_us)) return false;
  if (full) psi_line(full + 1, out->full, &out->full_us);   /* older kernels have no "full" for some files */
  out->known = true;
  return true;
}

bool psi_read(const char *path, psi_t *out) {
  char buf[512];
  *out = (psi_t){0};
  return read_small(path, buf, sizeof buf) > 0 && psi_parse(buf, out);
}

/* ---- where the hierarchies are -------------------------------------------- */

/* The n-th space-separated field of a mountinfo line into out. */
static bool field(const char *line, int n, char *out, size_t size) {
  for (int i = 0; i < n; i++) {
    line = strchr(line, ' ');
    if (!line) return false;
    line++;
  }
  size_t len = strcspn(line, " \n");
  if (len >= size) return false;
  memcpy(out, line, len);
  out[len] = 0;
  return true;
}

void cgroup_mounts_find(const char *mountinfo, cgroup_mounts_t *out) {
  *out = (cgroup_mounts_t){0};
  FILE *f = fopen(mountinfo, "re");
  if (!f) return;
  char line[1024];
  for (int lines = 0; lines < 10000 && fgets(line, sizeof line, f); lines++) {
    /* id parent major:minor root mountpoint options [tags] - fstype source superoptions */
    const char *dash = strstr(line, " - ");
    char root[256], point[256], fstype[32], super[512];
    if (!dash || !field(line, 3, root, sizeof root) || !field(line, 4, point, sizeof point) ||
        !field(dash + 3, 0, fstype, sizeof fstype) || !field(dash + 3, 2, super, sizeof super))
      continue;
    if (strcmp(fstype, "cgroup2") == 0 && !out->v2[0]) {
      snprintf(out->v2, sizeof out->v2, "%s", point);
      snprintf(out->v2_root, sizeof out->v2_root, "%s", root);
    } else if (strcmp(fstype, "cgroup") == 0 && !out->v1[0]) {
      for (char *opt = strtok(super, ","); opt; opt = strtok(NULL, ","))
        if (strcmp(opt, "memory") == 0) {
          snprintf(out->v1, sizeof out->v1, "%s", point);
          snprintf(out->v1_root, sizeof out->v1_root, "%s", root);
        }
    }
  }
  fclose(f);
}

/* ---- a process's cgroup ------------------------------------------------------ */

bool cgroup_of(const char *proc_cgroup, const cgroup_mounts_t *m, int *version, char *path, size_t size) {
  char buf[4096], v2[1024] = "";
  if (read_small(proc_cgroup, buf, sizeof buf) <= 0) return false;
  for (char *save, *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    /* hierarchy-id:controllers:path */
    char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2) continue;
    *c1 = *c2 = 0;
    const char *controllers = c1 + 1, *p = c2 + 1;
    if (strcmp(line, "0") == 0 && !*controllers) {
      snprintf(v2, sizeof v2, "%s", p);
      continue;
    }
    char list[256];
    snprintf(list, sizeof list, ",%s,", controllers);
    if (m->v1[0] && strstr(list, ",memory,")) {
      *version = 1;
      text_clean(p, strlen(p), path, size);
      return true;
    }
  }
  if (!m->v2[0] || !v2[0]) return false;
  *version = 2;
  text_clean(v2, strlen(v2), path, size);
  return true;
}

/* The directory of cgroup `path` under the mount, "" if it lies outside
 * the part of the hierarchy mounted (or its name is not plain text). */
static bool cgroup_dir(const char *mount, const char *root, const char *path, char *out, size_t size) {
  if (strstr(path, "/../") || strstr(path, "\\x") || path[0] != '/') return false;
  size_t rl = strcmp(root, "/") == 0 ? 0 : strlen(root);
  if (rl && (strncmp(path, root, rl) || (path[rl] && path[rl] != '/'))) return false;
  return (size_t)snprintf(out, size, "%s%s", mount, path + rl) < size;
}

/* A number file: "max" (no limit) is 0. */
static bool read_number(const char *dir, const char *name, uint64_t *out) {
  char path[600], buf[64];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  if (read_small(path, buf, sizeof buf) <= 0) return false;
  if (strncmp(buf, "max", 3) == 0) {
    *out = 0;
    return true;
  }
  char *end;
  errno = 0;
  unsigned long long v = strtoull(buf, &end, 10);
  if (errno || end == buf) return false;
  *out = v;
  return true;
}

/* "key value" lines (memory.events, memory.oom_control): the value of key. */
static uint64_t keyed(const char *dir, const char *name, const char *key) {
  char path[600], buf[1024];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  if (read_small(path, buf, sizeof buf) <= 0) return 0;
  size_t kl = strlen(key);
  for (char *line = buf; line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
    if (strncmp(line, key, kl) == 0 && line[kl] == ' ') return strtoull(line + kl + 1, NULL, 10);
  return 0;
}

bool cgroup_mem_read(const cgroup_mounts_t *m, int version, const char *cgroup, cgroup_mem_t *out) {
  char dir[600], path[sizeof out->path];
  snprintf(path, sizeof path, "%s", cgroup);   /* cgroup may be out->path */
  *out = (cgroup_mem_t){.version = version};
  snprintf(out->path, sizeof out->path, "%s", path);
  if (version == 2) {
    if (!cgroup_dir(m->v2, m->v2_root, path, dir, sizeof dir) || !read_number(dir, "memory.current", &out->usage))
      return false;
    read_number(dir, "memory.max", &out->limit);
    read_number(dir, "memory.high", &out->high);
    out->failures = keyed(dir, "memory.events", "max");
    out->oom_kills = keyed(dir, "memory.events", "oom_kill");
    char psi[700];
    snprintf(psi, sizeof psi, "%s/memory.pressure", dir);
    psi_read(psi, &out->psi);
  } else {
    if (!cgroup_dir(m->v1, m->v1_root, path, dir, sizeof dir) ||
        !read_number(dir, "memory.usage_in_bytes", &out->usage))
      return false;
    if (read_number(dir, "memory.limit_in_bytes", &out->limit) && out->limit >= V1_UNLIMITED) out->limit = 0;
    read_number(dir, "memory.failcnt", &out->failures);
    out->oom_kills = keyed(dir, "memory.oom_control", "oom_kill");
  }
  out->known = true;
  return true;
}

/* ---- the cache --------------------------------------------------------------- */

#define CACHE_SLOTS 256   /* cgroups remembered; the least recently used goes */

typedef struct slot_s {
  cgroup_mem_t mem;
  int64_t read_ms, used_ms;
} slot_t;

struct cgroup_cache_s {
  cgroup_mounts_t mounts;
  slot_t slots[CACHE_SLOTS];
};

cgroup_cache_t *cgroup_cache_new(const char *mountinfo) {
  cgroup_cache_t *cc = calloc(1, sizeof *cc);
  if (cc) cgroup_mounts_find(mountinfo, &cc->mounts);
  return cc;
}

void cgroup_cache_free(cgroup_cache_t *cc) { free(cc); }

static slot_t *slot_for(cgroup_cache_t *cc, int version, const char *path) {
  slot_t *lru = &cc->slots[0];
  for (int i = 0; i < CACHE_SLOTS; i++) {
    slot_t *s = &cc->slots[i];
    if (s->used_ms && s->mem.version == version && strcmp(s->mem.path, path) == 0) return s;
    if (s->used_ms < lru->used_ms) lru = s;
  }
  *lru = (slot_t){.mem = {.version = version}};
  snprintf(lru->mem.path, sizeof lru->mem.path, "%s", path);
  return lru;
}

void cgroup_cache_update(cgroup_cache_t *cc, int pid, int64_t now_ms, int *budget, int64_t *member_ms,
                         cgroup_mem_t *cg) {
  if (!cc || *budget <= 0) return;
  if (!cg->version || now_ms - *member_ms >= CGROUP_MEMBER_MS) {
    char file[64], path[256];
    int version = 0;
    snprintf(file, sizeof file, "/proc/%d/cgroup", pid);
    (*budget)--;
    *member_ms = now_ms;
    if (!cgroup_of(file, &cc->mounts, &version, path, sizeof path)) {
      *cg = (cgroup_mem_t){0};
      return;
    }
    if (version != cg->version || strcmp(path, cg->path)) {
      *cg = (cgroup_mem_t){.version = version};
      snprintf(cg->path, sizeof cg->path, "%s", path);
    }
  }
  slot_t *s = slot_for(cc, cg->version, cg->path);
  s->used_ms = now_ms;
  if ((!s->read_ms || now_ms - s->read_ms >= CGROUP_READ_MS) && *budget > 0) {
    (*budget)--;
    s->read_ms = now_ms;
    cgroup_mem_read(&cc->mounts, s->mem.version, s->mem.path, &s->mem);
  }
  *cg = s->mem;
}

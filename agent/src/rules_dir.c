/* rules_dir.c - rules from files, so a fleet distributes policy with the
 * tools it already has (configuration management, a Kubernetes ConfigMap
 * mounted on the directory) instead of calling each host's API.
 *
 * Each *.json file of the directory holds one rule or an array of rules,
 * in the API's form ({"exe_glob", "config", "canary_pct"}).  A file's rules
 * are rows of the rules table whose client is "file:<name>", so they are
 * applied, audited and listed like the API's; the API cannot delete them
 * (the file would bring them back).  A file is taken whole or not at all:
 * one that does not parse or holds a bad rule is reported (log, GET
 * /api/v1/rules, /metrics) and changes nothing, its last good version stays
 * in force.  A removed file's rules go.  Rules whose file is unchanged keep
 * their ids, so processes that have them do not get them again.
 *
 * Anyone who can write a rule file configures every process of the host,
 * so files (and the directory) owned by another user than root or allocd's,
 * or writable by group or others, are refused.  Names starting with '.'
 * are skipped (editors' temporaries, the ConfigMap's ..data links).
 *
 * The directory is looked at once a second from the main thread (a stat
 * per file; a file is read again only when its size, inode or change
 * time moved) and at once on SIGHUP, which re-reads every file. */
#include "rules_dir.h"

#include "log.h"
#include "rules.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_FILES 256            /* files taken from the directory, in name order */
#define MAX_NAMES 4096           /* directory entries looked at per poll */
#define MAX_FILE_BYTES 65536
#define MAX_RULES_PER_FILE 64
#define POLL_MS 1000

typedef struct file_s {
  char name[256];
  dev_t dev;                     /* what was last read: a change re-reads it */
  ino_t ino;
  off_t size;
  struct timespec ctime;         /* changes with the contents and with chmod/chown */
  int nrules;                    /* rules of its last good version in force */
  char error[200];               /* why the last reading was refused, "" if it was not */
} file_t;

struct rules_dir_s {
  store_t *store;
  char path[512];
  pthread_mutex_t lock;          /* everything below: the API reads the status */
  file_t *files;                 /* sorted by name */
  size_t nfiles;
  char error[200];               /* the directory's own problem, "" if none */
  int64_t last_poll_ms;
};

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

rules_dir_t *rules_dir_new(store_t *store, const char *path) {
  rules_dir_t *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  d->store = store;
  snprintf(d->path, sizeof d->path, "%s", path ? path : "");
  d->last_poll_ms = INT64_MIN / 2;
  pthread_mutex_init(&d->lock, NULL);
  return d;
}

void rules_dir_free(rules_dir_t *d) {
  if (!d) return;
  pthread_mutex_destroy(&d->lock);
  free(d->files);
  free(d);
}

/* ---- who may write rules ---------------------------------------------------- */

/* NULL if st belongs to root or allocd's user and only its owner can
 * write it, else why not (in buf). */
static const char *untrusted(const struct stat *st, char *buf, size_t size) {
  if (st->st_uid != 0 && st->st_uid != geteuid()) {
    snprintf(buf, size, "owned by uid %u, not by root or allocd's user: refused", (unsigned)st->st_uid);
    return buf;
  }
  if (st->st_mode & (S_IWGRP | S_IWOTH)) {
    snprintf(buf, size, "writable by group or others (mode %04o): refused", (unsigned)(st->st_mode & 07777));
    return buf;
  }
  return NULL;
}

/* ---- one file ---------------------------------------------------------------- */

/* The file's rules in a canonical form, [{exe_glob, config, canary_pct}],
 * or NULL with why in err. */
static json_t *parse_rules(const char *text, size_t len, char *err, size_t size) {
  json_error_t jerr;
  json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!doc) {
    snprintf(err, size, "invalid JSON at line %d: %.120s", jerr.line, jerr.text);
    return NULL;
  }
  if (!json_is_array(doc)) doc = json_pack("[o]", doc);
  if (json_array_size(doc) > MAX_RULES_PER_FILE) {
    snprintf(err, size, "%zu rules: at most %d per file", json_array_size(doc), MAX_RULES_PER_FILE);
    json_decref(doc);
    return NULL;
  }
  json_t *out = json_array();
  size_t i;
  json_t *rule;
  json_array_foreach(doc, i, rule) {
    char why[160];
    const char *bad = rules_validate(rule, why, sizeof why);
    if (bad) {
      snprintf(err, size, "rule %zu: %s", i + 1, bad);
      json_decref(out);
      json_decref(doc);
      return NULL;
    }
    json_t *canary = json_object_get(rule, "canary_pct");
    json_array_append_new(out, json_pack("{s:O, s:O, s:I}", "exe_glob", json_object_get(rule, "exe_glob"), "config",
                                         json_object_get(rule, "config"),
                                         "canary_pct", canary ? json_integer_value(canary) : (json_int_t)100));
  }
  json_decref(doc);
  return out;
}

/* The rows now in the table for `client`, in the same canonical form. */
static json_t *rows_of(json_t *all, const char *client) {
  json_t *out = json_array();
  size_t i;
  json_t *row;
  json_array_foreach(all, i, row) {
    if (strcmp(json_string_value(json_object_get(row, "client")) ?: "", client)) continue;
    json_array_append_new(out, json_pack("{s:O, s:O, s:O}", "exe_glob", json_object_get(row, "exe_glob"), "config",
                                         json_object_get(row, "config"), "canary_pct",
                                         json_object_get(row, "canary_pct")));
  }
  return out;
}

/* Read an open file whole (it is at most MAX_FILE_BYTES); NULL with why. */
static char *read_whole(int fd, const struct stat *st, size_t *len, char *err, size_t size) {
  if (st->st_size > MAX_FILE_BYTES) {
    snprintf(err, size, "%lld bytes: at most %d", (long long)st->st_size, MAX_FILE_BYTES);
    return NULL;
  }
  char *buf = malloc(MAX_FILE_BYTES + 1);
  size_t n = 0;
  ssize_t r = 0;
  while (buf && n <= MAX_FILE_BYTES && (r = pread(fd, buf + n, MAX_FILE_BYTES + 1 - n, (off_t)n)) > 0) n += (size_t)r;
  if (!buf || r < 0 || n > MAX_FILE_BYTES) {
    snprintf(err, size, "%s", !buf ? "out of memory" : r < 0 ? strerror(errno) : "grew past the size limit");
    free(buf);
    return NULL;
  }
  *len = n;
  return buf;
}

/* Make the table hold what the file says; false (err set) if the file is refused. */
static bool load_file(rules_dir_t *d, int fd, const struct stat *st, const char *client, json_t *all, int *nrules,
                      char *err, size_t size) {
  if (untrusted(st, err, size)) return false;
  size_t len;
  char *text = read_whole(fd, st, &len, err, size);
  json_t *rules = text ? parse_rules(text, len, err, size) : NULL;
  free(text);
  if (!rules) return false;
  json_t *now = rows_of(all, client);
  bool same = json_equal(rules, now);
  json_decref(now);
  bool ok = same || store_rules_replace(d->store, client, rules);
  if (!ok) snprintf(err, size, "the rules could not be stored: %s", store_error(d->store));
  *nrules = (int)json_array_size(rules);
  json_decref(rules);
  return ok;
}

static bool same_version(const file_t *f, const struct stat *st) {
  return f->dev == st->st_dev && f->ino == st->st_ino && f->size == st->st_size &&
         f->ctime.tv_sec == st->st_ctim.tv_sec && f->ctime.tv_nsec == st->st_ctim.tv_nsec;
}

/* Look at one file of the directory; `old` is what the last poll knew of it. */
static file_t look_at(rules_dir_t *d, int dfd, const char *name, const file_t *old, bool reread, json_t *all) {
  file_t f = {0};
  snprintf(f.name, sizeof f.name, "%s", name);
  if (old) f.nrules = old->nrules;
  char client[300];
  snprintf(client, sizeof client, RULES_DIR_CLIENT "%s", name);
  /* O_NONBLOCK: a FIFO named *.json must not stop the daemon */
  int fd = openat(dfd, name, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    snprintf(f.error, sizeof f.error, "%s", fd < 0 ? strerror(errno) : "not a regular file");
  } else if (old && !reread && same_version(old, &st)) {
    f = *old;
  } else {
    f.dev = st.st_dev, f.ino = st.st_ino, f.size = st.st_size, f.ctime = st.st_ctim;
    int n = 0;
    if (load_file(d, fd, &st, client, all, &n, f.error, sizeof f.error)) {
      if (!old || old->nrules != n || old->error[0] || reread)
        log_info("rules: %s/%s: %d rule%s in force", d->path, name, n, n == 1 ? "" : "s");
      f.nrules = n;
    } else {
      log_warn("rules: %s/%s: %s; its rules stay as they were", d->path, name, f.error);
    }
  }
  if (fd >= 0) close(fd);
  return f;
}

/* ---- the directory ------------------------------------------------------------ */

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool wanted(const char *name) {
  size_t n = strlen(name);
  return name[0] != '.' && n > 5 && n < 250 && strcmp(name + n - 5, ".json") == 0;
}

/* The directory's *.json names, sorted, at most MAX_FILES (*more set if
 * there were more); NULL with err set if the directory cannot be used. */
static char **list_names(int dfd, size_t *n, bool *more, char *err, size_t size) {
  DIR *dir = fdopendir(dup(dfd));
  char **names = calloc(MAX_NAMES, sizeof *names);
  if (!dir || !names) {
    snprintf(err, size, "%s", strerror(errno ? errno : ENOMEM));
    if (dir) closedir(dir);
    free(names);
    return NULL;
  }
  *n = 0;
  *more = false;
  struct dirent *e;
  for (size_t looked = 0; (e = readdir(dir)) && looked < MAX_NAMES; looked++)
    if (wanted(e->d_name) && (names[*n] = strdup(e->d_name))) (*n)++;
  closedir(dir);
  qsort(names, *n, sizeof *names, by_name);
  if (*n > MAX_FILES) {
    for (size_t i = MAX_FILES; i < *n; i++) free(names[i]);
    *n = MAX_FILES;
    *more = true;
  }
  return names;
}

/* Remove the rows of files that are no longer there (nor refused: a refused
 * file keeps its last good rules). */
static void drop_rows_of_missing(rules_dir_t *d, const file_t *files, size_t nfiles, json_t *all) {
  size_t i;
  json_t *row;
  json_t *gone = json_object();
  json_array_foreach(all, i, row) {
    const char *client = json_string_value(json_object_get(row, "client")) ?: "";
    if (strncmp(client, RULES_DIR_CLIENT, strlen(RULES_DIR_CLIENT))) continue;
    const char *name = client + strlen(RULES_DIR_CLIENT);
    bool present = false;
    for (size_t k = 0; k < nfiles && !present; k++) present = strcmp(files[k].name, name) == 0;
    if (!present) json_object_set_new(gone, client, json_true());
  }
  const char *client;
  json_t *v;
  json_t *none = json_array();
  json_object_foreach(gone, client, v) {
    if (store_rules_replace(d->store, client, none))
      log_info("rules: %s: file gone, its rules removed", client + strlen(RULES_DIR_CLIENT));
  }
  json_decref(none);
  json_decref(gone);
}

static const file_t *known(const rules_dir_t *d, const char *name) {
  for (size_t i = 0; i < d->nfiles; i++)
    if (strcmp(d->files[i].name, name) == 0) return &d->files[i];
  return NULL;
}

static void set_error(rules_dir_t *d, const char *why) {
  pthread_mutex_lock(&d->lock);
  if (why[0] && strcmp(d->error, why)) log_warn("rules: %s: %s", d->path, why);
  snprintf(d->error, sizeof d->error, "%s", why);
  pthread_mutex_unlock(&d->lock);
}

void rules_dir_poll(rules_dir_t *d, bool now) {
  int64_t t = mono_ms();
  if (!d || (!now && t - d->last_poll_ms < POLL_MS)) return;
  d->last_poll_ms = t;
  json_t *all = store_rules_json(d->store);
  char err[200] = "";
  int dfd = d->path[0] ? open(d->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
  struct stat st;
  if (dfd < 0 && d->path[0] && errno != ENOENT) {
    snprintf(err, sizeof err, "%s: its rules stay as they were", strerror(errno));
  } else if (dfd >= 0 && (fstat(dfd, &st) != 0 || untrusted(&st, err, sizeof err))) {
    if (!err[0]) snprintf(err, sizeof err, "%s", strerror(errno));
  } else {
    /* no directory (or none configured): no file rules */
    size_t n = 0;
    bool more = false;
    char **names = dfd >= 0 ? list_names(dfd, &n, &more, err, sizeof err) : NULL;
    if (dfd < 0 || names) {
      file_t *files = calloc(n ? n : 1, sizeof *files);
      for (size_t i = 0; files && i < n; i++) files[i] = look_at(d, dfd, names[i], known(d, names[i]), now, all);
      if (files) {
        drop_rows_of_missing(d, files, n, all);
        pthread_mutex_lock(&d->lock);
        free(d->files);
        d->files = files;
        d->nfiles = n;
        pthread_mutex_unlock(&d->lock);
      }
      if (more) snprintf(err, sizeof err, "more than %d *.json files: the rest are ignored", MAX_FILES);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
  }
  set_error(d, err);
  if (dfd >= 0) close(dfd);
  json_decref(all);
}

json_t *rules_dir_status_json(rules_dir_t *d) {
  if (!d) return json_pack("{s:s, s:n, s:[]}", "dir", "", "error", "files");
  pthread_mutex_lock(&d->lock);
  json_t *files = json_array();
  for (size_t i = 0; i < d->nfiles; i++) {
    const file_t *f = &d->files[i];
    json_array_append_new(files, json_pack("{s:s, s:i, s:o}", "name", f->name, "rules", f->nrules, "error",
                                           f->error[0] ? json_string(f->error) : json_null()));
  }
  json_t *o = json_pack("{s:s, s:o, s:o}", "dir", d->path, "error", d->error[0] ? json_string(d->error) : json_null(),
                        "files", files);
  pthread_mutex_unlock(&d->lock);
  return o;
}

unsigned rules_dir_errors(rules_dir_t *d) {
  if (!d) return 0;
  pthread_mutex_lock(&d->lock);
  unsigned n = d->error[0] != 0;
  for (size_t i = 0; i < d->nfiles; i++) n += d->files[i].error[0] != 0;
  pthread_mutex_unlock(&d->lock);
  return n;
}

/* allocctl - the command-line client of allocd's HTTP API.
 *
 *   allocctl [options] ps [--all]
 *   allocctl [options] show PID
 *   allocctl [options] history PID|host METRIC [--from T] [--to T] [--step S] [--source raw|1m|1h] [--exe PATH]
 *   allocctl [options] set PID knob=value...
 *   allocctl [options] rules [list] | rules add GLOB knob=value... [--canary PCT] | rules rm ID
 *   allocctl [options] audit [--limit N]
 *   allocctl [options] profile PID [--pinned] [--top N]
 * options: --url http://HOST:PORT (default http://127.0.0.1:9470, or
 * $ALLOCCTL_URL), --token-file FILE (default: allocd's), --json.
 *
 * Tables by default, the API's JSON with --json.  Exit status: 0 done,
 * 1 refused (400, 409, 413), 2 usage, 3 allocd unreachable, 4 not found,
 * 5 timed out (504), 6 unauthorized (401), 7 other server error.
 *
 * It speaks just enough HTTP/1.1 over a TCP socket (Connection: close),
 * which is all a loopback agent needs. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include "statedir.h"
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { EX_OK, EX_REFUSED, EX_USAGE, EX_UNREACHABLE, EX_NOTFOUND, EX_TIMEOUT, EX_UNAUTHORIZED, EX_SERVER };

static char host[256] = "127.0.0.1", port[16] = "9470", token_file[512];
static bool as_json;

/* ---- HTTP ---------------------------------------------------------------- */

typedef struct response_s {
  int status;
  char *body;
} response_t;

static bool send_all(int fd, const char *p, size_t len) {
  while (len) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n <= 0) return false;
    p += n;
    len -= (size_t)n;
  }
  return true;
}

/* One request; false if allocd cannot be reached. */
static bool http(const char *method, const char *path, const char *body, const char *token, response_t *r) {
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
  if (getaddrinfo(host, port, &hints, &res) != 0) return false;
  int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
  bool ok = fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) == 0;
  freeaddrinfo(res);
  if (!ok) {
    if (fd >= 0) close(fd);
    return false;
  }
  char head[1024];
  size_t blen = body ? strlen(body) : 0;
  int n = snprintf(head, sizeof head,
                   "%s %s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\nAccept: application/json\r\n%s%s%s"
                   "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                   method, path, host, port, token ? "Authorization: Bearer " : "", token ? token : "",
                   token ? "\r\n" : "", blen);
  ok = n > 0 && (size_t)n < sizeof head && send_all(fd, head, (size_t)n) && (!blen || send_all(fd, body, blen));
  size_t len = 0, cap = 65536;
  char *buf = malloc(cap + 1);
  while (ok && buf) {
    if (len == cap) {
      char *b = realloc(buf, 2 * cap + 1);
      if (!b) break;
      buf = b;
      cap *= 2;
    }
    ssize_t got = recv(fd, buf + len, cap - len, 0);
    if (got <= 0) break;
    len += (size_t)got;
  }
  close(fd);
  if (!ok || !buf) {
    free(buf);
    return false;
  }
  buf[len] = 0;
  char *sep = strstr(buf, "\r\n\r\n");
  if (strncmp(buf, "HTTP/1.", 7) != 0 || !sep) {
    free(buf);
    return false;
  }
  r->status = atoi(buf + 9);
  r->body = strdup(sep + 4);
  free(buf);
  return r->body != NULL;
}

static int exit_code(int status) {
  if (status < 300) return EX_OK;
  switch (status) {
  case 400: case 409: case 413: return EX_REFUSED;
  case 401: return EX_UNAUTHORIZED;
  case 404: return EX_NOTFOUND;
  case 504: return EX_TIMEOUT;
  default: return EX_SERVER;
  }
}

static const char *token(void) {
  static char t[256];
  FILE *f = fopen(token_file, "r");
  if (!f) {
    fprintf(stderr, "allocctl: cannot read the token file %s: %s\n", token_file, strerror(errno));
    exit(EX_UNAUTHORIZED);
  }
  if (!fgets(t, sizeof t, f)) t[0] = 0;
  fclose(f);
  t[strcspn(t, "\r\n ")] = 0;
  return t;
}

/* Do a request; on success return the parsed JSON (or exit with a message). */
static json_t *call(const char *method, const char *path, json_t *body, bool auth, int *code) {
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  response_t r = {0};
  if (!http(method, path, text, auth ? token() : NULL, &r)) {
    fprintf(stderr, "allocctl: cannot reach allocd at %s:%s\n", host, port);
    exit(EX_UNREACHABLE);
  }
  free(text);
  json_t *v = json_loads(r.body, 0, NULL);
  *code = exit_code(r.status);
  if (*code != EX_OK && !as_json) {
    json_t *err = json_object_get(v, "error");
    fprintf(stderr, "allocctl: %d: %s\n", r.status, json_is_string(err) ? json_string_value(err) : r.body);
  }
  free(r.body);
  return v ? v : json_object();
}

static void print_json(json_t *v) {
  char *s = json_dumps(v, JSON_INDENT(2) | JSON_SORT_KEYS);
  if (s) puts(s);
  free(s);
}

/* --json, or a failed request: print the API's answer as is (JSON mode),
 * release it, and return the exit code. */
static int finish(json_t *v, int code) {
  if (as_json) print_json(v);
  json_decref(v);
  return code;
}

/* ---- formatting ---------------------------------------------------------- */

static const char *bytes(json_t *v, char *buf, size_t size) {
  double b = json_number_value(v);
  const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) b /= 1024, u++;
  snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", b, units[u]);
  return buf;
}

static const char *stat_bytes(json_t *proc, const char *name, char *buf, size_t size) {
  return bytes(json_object_get(json_object_get(proc, "stats"), name), buf, size);
}

static const char *config_text(json_t *proc, const char *knob, char *buf, size_t size) {
  json_t *v = json_object_get(json_object_get(proc, "config"), knob);
  if (json_is_string(v)) snprintf(buf, size, "%s", json_string_value(v));
  else if (json_is_boolean(v)) snprintf(buf, size, "%s", json_is_true(v) ? "true" : "false");
  else if (json_is_integer(v)) snprintf(buf, size, "%lld", (long long)json_integer_value(v));
  else snprintf(buf, size, "-");
  return buf;
}

static const char *when(double t, char *buf, size_t size) {
  time_t s = (time_t)t;
  struct tm tm;
  localtime_r(&s, &tm);
  strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

/* ---- commands ------------------------------------------------------------ */

static int cmd_ps(int argc, char **argv) {
  bool all = argc > 1 && strcmp(argv[1], "--all") == 0;
  int code;
  json_t *v = call("GET", all ? "/api/v1/processes" : "/api/v1/processes?alive=1", NULL, false, &code);
  if (as_json || code) return finish(v, code);
  printf("%-8s %-5s %10s %10s %10s %6s %7s %-8s %s\n", "PID", "ALIVE", "ALLOCATED", "RESIDENT", "RSS", "FRAG",
         "DECAY", "THP", "EXE");
  size_t i;
  json_t *p;
  json_array_foreach(json_object_get(v, "processes"), i, p) {
    char a[32], r[32], k[32], d[32], t[32];
    printf("%-8lld %-5s %10s %10s %10s %5.1f%% %7s %-8s %s\n", (long long)json_integer_value(json_object_get(p, "pid")),
           json_is_true(json_object_get(p, "alive")) ? "yes" : "no", stat_bytes(p, "allocated", a, sizeof a),
           stat_bytes(p, "resident", r, sizeof r), stat_bytes(p, "kernel_rss", k, sizeof k),
           100 * json_number_value(json_object_get(p, "fragmentation")), config_text(p, "dirty_decay_ms", d, sizeof d),
           config_text(p, "thp", t, sizeof t), json_string_value(json_object_get(p, "exe")));
  }
  json_decref(v);
  return EX_OK;
}

static bool valid_pid(const char *s) {
  return s && *s && strspn(s, "0123456789") == strlen(s) && strlen(s) < 10;
}

static int cmd_show(int argc, char **argv) {
  if (argc != 2 || !valid_pid(argv[1])) return fprintf(stderr, "usage: allocctl show PID\n"), EX_USAGE;
  char path[64];
  snprintf(path, sizeof path, "/api/v1/processes/%s", argv[1]);
  int code;
  json_t *v = call("GET", path, NULL, false, &code);
  if (as_json || code) return finish(v, code);
  char b[32];
  printf("pid %lld  %s  (%s)\n", (long long)json_integer_value(json_object_get(v, "pid")),
         json_string_value(json_object_get(v, "exe")), json_is_true(json_object_get(v, "alive")) ? "alive" : "exited");
  const char *key;
  json_t *x;
  json_object_foreach(json_object_get(v, "stats"), key, x) {
    if (json_is_real(x)) printf("  %-20s %.3f\n", key, json_real_value(x));
    else if (strstr(key, "allocated") || strstr(key, "kernel_") || !strcmp(key, "active") || !strcmp(key, "resident") ||
             !strcmp(key, "mapped") || !strcmp(key, "dirty") || !strcmp(key, "muzzy") || !strcmp(key, "retained") ||
             !strcmp(key, "metadata") || !strcmp(key, "tcache") || !strcmp(key, "purged"))
      printf("  %-20s %s\n", key, bytes(x, b, sizeof b));
    else printf("  %-20s %lld\n", key, (long long)json_integer_value(x));
  }
  printf("config:");
  json_object_foreach(json_object_get(v, "config"), key, x) printf(" %s=%s", key, config_text(v, key, b, sizeof b));
  printf("\n%10s %10s %10s %12s %12s %6s\n", "SIZE", "SLABS", "LIVE", "NMALLOC", "NFREE", "UTIL");
  size_t i;
  json_array_foreach(json_object_get(v, "classes"), i, x)
    printf("%10lld %10lld %10lld %12lld %12lld %5.1f%%\n", (long long)json_integer_value(json_object_get(x, "size")),
           (long long)json_integer_value(json_object_get(x, "slabs")), (long long)json_integer_value(json_object_get(x, "live")),
           (long long)json_integer_value(json_object_get(x, "nmalloc")),
           (long long)json_integer_value(json_object_get(x, "nfree")),
           100 * json_number_value(json_object_get(x, "utilisation")));
  json_decref(v);
  return EX_OK;
}

/* Append "&name=value" to the query at path[*n], the value percent-encoded
 * (an executable's path may hold any byte). */
static void add_param(char *path, size_t size, int *n, const char *name, const char *value) {
  *n += snprintf(path + *n, size - (size_t)*n, "&%s=", name);
  for (const unsigned char *v = (const unsigned char *)value; *v && (size_t)*n < size; v++)
    *n += snprintf(path + *n, size - (size_t)*n, isalnum(*v) || strchr("/._-~", *v) ? "%c" : "%%%02X", *v);
}

static int cmd_history(int argc, char **argv) {
  bool host = argc >= 2 && strcmp(argv[1], "host") == 0;
  if (argc < 3 || (!host && !valid_pid(argv[1])))
    return fprintf(stderr, "usage: allocctl history PID|host METRIC [--from T] [--to T] [--step S] [--source raw|1m|1h]"
                           " [--exe PATH]\n"), EX_USAGE;
  char path[1024];
  int n = host ? snprintf(path, sizeof path, "/api/v1/host/history?metric=%s", argv[2])
               : snprintf(path, sizeof path, "/api/v1/processes/%s/history?metric=%s", argv[1], argv[2]);
  for (int i = 3; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--from") && strcmp(argv[i], "--to") && strcmp(argv[i], "--step") && strcmp(argv[i], "--source") &&
        (!host || strcmp(argv[i], "--exe")))
      return fprintf(stderr, "allocctl: unknown option %s\n", argv[i]), EX_USAGE;
    add_param(path, sizeof path, &n, argv[i] + 2, argv[i + 1]);
  }
  if (strspn(argv[2], "abcdefghijklmnopqrstuvwxyz_0123456789") != strlen(argv[2]) || (size_t)n >= sizeof path)
    return fprintf(stderr, "allocctl: bad metric name\n"), EX_USAGE;
  int code;
  json_t *v = call("GET", path, NULL, false, &code);
  if (as_json || code) return finish(v, code);
  size_t i;
  json_t *p;
  char t[32];
  printf("%-19s %s (%s)\n", "TIME", argv[2], json_string_value(json_object_get(v, "source")));
  json_array_foreach(json_object_get(v, "points"), i, p) {
    double x = json_number_value(json_array_get(p, 1));
    printf(x == (double)(long long)x ? "%-19s %.0f\n" : "%-19s %.6g\n", when(json_number_value(json_array_get(p, 0)), t, sizeof t), x);
  }
  json_decref(v);
  return EX_OK;
}

/* knob=value arguments as a JSON object: integers, booleans, else strings. */
static json_t *changes(int argc, char **argv) {
  json_t *o = json_object();
  for (int i = 0; i < argc; i++) {
    char *eq = strchr(argv[i], '=');
    if (!eq || eq == argv[i]) {
      json_decref(o);
      return NULL;
    }
    *eq = 0;
    const char *val = eq + 1;
    char *end;
    long long x = strtoll(val, &end, 10);
    json_t *v = *val && !*end ? json_integer(x) : !strcmp(val, "true") ? json_true() : !strcmp(val, "false") ? json_false() : json_string(val);
    json_object_set_new(o, argv[i], v);
  }
  return o;
}

static int cmd_set(int argc, char **argv) {
  json_t *body = argc >= 3 && valid_pid(argv[1]) ? changes(argc - 2, argv + 2) : NULL;
  if (!body) return fprintf(stderr, "usage: allocctl set PID knob=value...\n"), EX_USAGE;
  char path[64];
  snprintf(path, sizeof path, "/api/v1/processes/%s/config", argv[1]);
  int code;
  json_t *v = call("POST", path, body, true, &code);
  json_decref(body);
  if (as_json) return finish(v, code);
  const char *knob;
  json_t *r;
  json_object_foreach(json_object_get(v, "results"), knob, r) {
    json_t *old = json_object_get(r, "old"), *eff = json_object_get(r, "effective");
    if (json_is_string(eff) && !json_string_length(eff)) eff = NULL;
    printf("%-22s %s -> %s  %s%s%s\n", knob, json_is_string(old) ? json_string_value(old) : "?",
           json_is_string(eff) ? json_string_value(eff) : json_string_value(json_object_get(r, "requested")),
           json_string_value(json_object_get(r, "status")), strcmp(json_string_value(json_object_get(r, "status")), "ok") ? ": " : "",
           strcmp(json_string_value(json_object_get(r, "status")), "ok") ? json_string_value(json_object_get(r, "message")) : "");
  }
  json_decref(v);
  return code;
}

static int cmd_rules(int argc, char **argv) {
  int code;
  if (argc == 1 || !strcmp(argv[1], "list")) {
    json_t *v = call("GET", "/api/v1/rules", NULL, false, &code);
    if (as_json || code) return finish(v, code);
    printf("%-5s %-24s %-7s %-20s %s\n", "ID", "EXE GLOB", "CANARY", "FROM", "CONFIG");
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(v, "rules"), i, r) {
      char *cfg = json_dumps(json_object_get(r, "config"), JSON_COMPACT | JSON_SORT_KEYS);
      printf("%-5lld %-24s %6lld%% %-20s %s\n", (long long)json_integer_value(json_object_get(r, "id")),
             json_string_value(json_object_get(r, "exe_glob")), (long long)json_integer_value(json_object_get(r, "canary_pct")),
             json_string_value(json_object_get(r, "client")) ?: "", cfg);
      free(cfg);
    }
    /* rule files that were refused: their last good version is what is listed */
    json_t *files = json_object_get(v, "files");
    const char *dir_error = json_string_value(json_object_get(files, "error"));
    if (dir_error) fprintf(stderr, "rules directory %s: %s\n", json_string_value(json_object_get(files, "dir")), dir_error);
    json_array_foreach(json_object_get(files, "files"), i, r) {
      const char *err = json_string_value(json_object_get(r, "error"));
      if (err) fprintf(stderr, "rule file %s: %s\n", json_string_value(json_object_get(r, "name")), err);
    }
    json_decref(v);
    return EX_OK;
  }
  if (!strcmp(argv[1], "rm") && argc == 3) {
    char path[64];
    snprintf(path, sizeof path, "/api/v1/rules/%.20s", argv[2]);
    json_t *v = call("DELETE", path, NULL, true, &code);
    return finish(v, code);
  }
  if (!strcmp(argv[1], "add") && argc >= 4) {
    int canary = 100, nargs = argc - 3;
    if (argc >= 6 && !strcmp(argv[argc - 2], "--canary")) canary = atoi(argv[argc - 1]), nargs -= 2;
    json_t *cfg = changes(nargs, argv + 3);
    if (!cfg) return fprintf(stderr, "usage: allocctl rules add GLOB knob=value... [--canary PCT]\n"), EX_USAGE;
    json_t *body = json_pack("{s:s, s:o, s:i}", "exe_glob", argv[2], "config", cfg, "canary_pct", canary);
    json_t *v = call("POST", "/api/v1/rules", body, true, &code);
    json_decref(body);
    if (!as_json && !code) printf("rule %lld created\n", (long long)json_integer_value(json_object_get(v, "id")));
    return finish(v, code);
  }
  fprintf(stderr, "usage: allocctl rules [list] | rules add GLOB knob=value... [--canary PCT] | rules rm ID\n");
  return EX_USAGE;
}

static int cmd_audit(int argc, char **argv) {
  char path[64] = "/api/v1/audit";
  if (argc == 3 && !strcmp(argv[1], "--limit") && valid_pid(argv[2])) snprintf(path, sizeof path, "/api/v1/audit?limit=%s", argv[2]);
  else if (argc != 1) return fprintf(stderr, "usage: allocctl audit [--limit N]\n"), EX_USAGE;
  int code;
  json_t *v = call("GET", path, NULL, false, &code);
  if (as_json || code) return finish(v, code);
  printf("%-19s %-15s %-8s %-20s %-10s %-10s %s\n", "TIME", "CLIENT", "PID", "KNOB", "OLD", "NEW", "RESULT");
  size_t i;
  json_t *a;
  char t[32];
  json_array_foreach(json_object_get(v, "audit"), i, a) {
    json_t *old = json_object_get(a, "old_value");
    printf("%-19s %-15s %-8lld %-20s %-10s %-10s %s\n", when(json_number_value(json_object_get(a, "time")), t, sizeof t),
           json_string_value(json_object_get(a, "client")), (long long)json_integer_value(json_object_get(a, "pid")),
           json_string_value(json_object_get(a, "knob")), json_is_string(old) ? json_string_value(old) : "-",
           json_string_value(json_object_get(a, "new_value")), json_string_value(json_object_get(a, "result")));
  }
  json_decref(v);
  return EX_OK;
}

/* What other decay times would have done (GET .../advice, docs/tuning.md). */
static int cmd_advice(int argc, char **argv) {
  const char *window = NULL, *try = NULL;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--window")) window = argv[i + 1];
    else if (!strcmp(argv[i], "--try")) try = argv[i + 1];
    else argc = 0;
  }
  if (argc < 2 || argc % 2 || !valid_pid(argv[1]) || (window && strspn(window, "0123456789smhd") != strlen(window)) ||
      (try && strspn(try, "0123456789,-") != strlen(try)))
    return fprintf(stderr, "usage: allocctl advice PID [--window D] [--try MS,MS...]\n"), EX_USAGE;
  char path[256];
  snprintf(path, sizeof path, "/api/v1/processes/%s/advice?window=%.16s%s%.100s", argv[1], window ? window : "1h",
           try ? "&dirty_decay_ms=" : "", try ? try : "");
  int code;
  json_t *v = call("GET", path, NULL, false, &code);
  if (as_json || code) return finish(v, code);
  json_t *cur = json_object_get(v, "current"), *obs = json_object_get(cur, "observed");
  printf("now dirty_decay_ms=%lld: %.1f MiB dirty on average, %.1f madvise/s (over %.0f s, %lld snapshots)\n",
         (long long)json_integer_value(json_object_get(cur, "dirty_decay_ms")),
         json_number_value(json_object_get(obs, "dirty_mean_bytes")) / 1048576,
         json_number_value(json_object_get(obs, "madvise_per_s")),
         json_number_value(json_object_get(v, "to")) - json_number_value(json_object_get(v, "from")),
         (long long)json_integer_value(json_object_get(v, "samples")));
  printf("%-15s %18s %16s %20s\n", "DIRTY_DECAY_MS", "RESIDENT (MiB)", "MADVISE/S", "REFAULTED (MiB/s)");
  size_t i;
  json_t *s;
  json_array_foreach(json_object_get(v, "settings"), i, s)
    printf("%-15lld %+18.1f %+16.1f %+20.1f\n", (long long)json_integer_value(json_object_get(s, "dirty_decay_ms")),
           json_number_value(json_object_get(s, "resident_change_bytes")) / 1048576,
           json_number_value(json_object_get(s, "madvise_per_s_change")),
           json_number_value(json_object_get(s, "refault_bytes_per_s_change")) / 1048576);
  json_array_foreach(json_object_get(v, "warnings"), i, s) fprintf(stderr, "note: %s\n", json_string_value(s));
  json_decref(v);
  return EX_OK;
}

/* The top call sites of a live process's heap profile, by in-use bytes
 * (or pinned bytes), each with its innermost frame's function and
 * file:line, then the caller that brought it there. */
static int cmd_profile(int argc, char **argv) {
  bool pinned = false;
  const char *top = "10";
  int i = 2;
  for (; argc >= 2 && i < argc; i++) {
    if (!strcmp(argv[i], "--pinned")) pinned = true;
    else if (!strcmp(argv[i], "--top") && i + 1 < argc && valid_pid(argv[i + 1])) top = argv[++i];
    else break;
  }
  if (argc < 2 || !valid_pid(argv[1]) || i != argc)
    return fprintf(stderr, "usage: allocctl profile PID [--pinned] [--top N]\n"), EX_USAGE;
  char path[128];
  snprintf(path, sizeof path, "/api/v1/processes/%s/profile/heap?format=json&top=%s&sort=%s", argv[1], top,
           pinned ? "pinned_space" : "inuse_space");
  int code;
  json_t *v = call("GET", path, NULL, false, &code);
  if (as_json || code) return finish(v, code);
  json_t *totals = json_object_get(v, "totals");
  char a[32], b[32], c[32], d[32];
  printf("pid %s heap profile: in use %s, pinned %s, allocated %s since sampling started (sampling every %s)\n",
         argv[1], bytes(json_object_get(totals, "inuse_space"), a, sizeof a),
         bytes(json_object_get(totals, "pinned_space"), b, sizeof b),
         bytes(json_object_get(totals, "alloc_space"), c, sizeof c),
         bytes(json_object_get(v, "sample_bytes"), d, sizeof d));
  printf("%10s %10s %10s %10s  %s\n", pinned ? "PINNED" : "INUSE", pinned ? "INUSE" : "PINNED", "OBJECTS", "ALLOCATED",
         "CALL SITE (CALLER)");
  size_t k;
  json_t *site;
  json_array_foreach(json_object_get(v, "sites"), k, site) {
    char x[32], y[32], z[32], where[600], caller[600] = "";
    json_t *fn = json_object_get(site, "function"), *file = json_object_get(site, "file");
    snprintf(where, sizeof where, "%s", json_is_string(fn) ? json_string_value(fn) : json_string_value(json_object_get(site, "address")));
    if (json_is_string(file))
      snprintf(where + strlen(where), sizeof where - strlen(where), " %s:%lld", json_string_value(file),
               (long long)json_integer_value(json_object_get(site, "line")));
    json_t *up = json_array_get(json_object_get(site, "stack"), 1);
    if (up) {
      json_t *ufn = json_object_get(up, "function");
      snprintf(caller, sizeof caller, " (%s)", json_is_string(ufn) ? json_string_value(ufn) : json_string_value(json_object_get(up, "address")));
    }
    printf("%10s %10s %10lld %10s  %s%s\n", bytes(json_object_get(site, pinned ? "pinned_space" : "inuse_space"), x, sizeof x),
           bytes(json_object_get(site, pinned ? "inuse_space" : "pinned_space"), y, sizeof y),
           (long long)json_integer_value(json_object_get(site, "inuse_objects")),
           bytes(json_object_get(site, "alloc_space"), z, sizeof z), where, caller);
  }
  if (json_is_string(json_object_get(v, "unsymbolized_reason")))
    printf("(some addresses not symbolized: %s)\n", json_string_value(json_object_get(v, "unsymbolized_reason")));
  json_decref(v);
  return EX_OK;
}

/* ---- options ------------------------------------------------------------- */

static void usage(void) {
  fprintf(stderr,
          "usage: allocctl [--url http://HOST:PORT] [--token-file FILE] [--json] COMMAND\n"
          "  ps [--all]                      processes (--all: with exited ones)\n"
          "  show PID                        statistics, configuration, size classes\n"
          "  history PID|host METRIC [--from T] [--to T] [--step S] [--source raw|1m|1h] [--exe PATH]\n"
          "  set PID knob=value...           change live configuration\n"
          "  rules [list] | rules add GLOB knob=value... [--canary PCT] | rules rm ID\n"
          "  audit [--limit N]               configuration changes\n"
          "  advice PID [--window D] [--try MS,MS...]  what other dirty_decay_ms would have done\n"
          "  profile PID [--pinned] [--top N] top call sites of the heap profile (by in-use or pinned bytes)\n"
          "exit status: 0 ok, 1 refused, 2 usage, 3 unreachable, 4 not found, 5 timed out,\n"
          "             6 unauthorized, 7 server error\n");
}

static bool set_url(const char *url) {
  if (strncmp(url, "http://", 7) == 0) url += 7;
  const char *colon = strrchr(url, ':');
  size_t hlen = colon ? (size_t)(colon - url) : strcspn(url, "/");
  if (!hlen || hlen >= sizeof host) return false;
  memcpy(host, url, hlen);
  host[hlen] = 0;
  if (colon) snprintf(port, sizeof port, "%.*s", (int)strcspn(colon + 1, "/"), colon + 1);
  return port[0] != 0;
}

int main(int argc, char **argv) {
  char state[400];
  allocd_state_dir(state, sizeof state);
  snprintf(token_file, sizeof token_file, "%s/token", state);
  if (getenv("ALLOCCTL_URL") && !set_url(getenv("ALLOCCTL_URL"))) return fprintf(stderr, "allocctl: bad ALLOCCTL_URL\n"), EX_USAGE;
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    if (!strcmp(argv[i], "--json")) as_json = true;
    else if (!strcmp(argv[i], "--url") && i + 1 < argc) {
      if (!set_url(argv[++i])) return fprintf(stderr, "allocctl: bad --url\n"), EX_USAGE;
    } else if (!strcmp(argv[i], "--token-file") && i + 1 < argc) snprintf(token_file, sizeof token_file, "%s", argv[++i]);
    else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return usage(), EX_OK;
    else return usage(), EX_USAGE;
  }
  if (i >= argc) return usage(), EX_USAGE;
  const char *cmd = argv[i];
  argc -= i, argv += i;
  if (!strcmp(cmd, "ps")) return cmd_ps(argc, argv);
  if (!strcmp(cmd, "show")) return cmd_show(argc, argv);
  if (!strcmp(cmd, "history")) return cmd_history(argc, argv);
  if (!strcmp(cmd, "set")) return cmd_set(argc, argv);
  if (!strcmp(cmd, "rules")) return cmd_rules(argc, argv);
  if (!strcmp(cmd, "audit")) return cmd_audit(argc, argv);
  if (!strcmp(cmd, "advice")) return cmd_advice(argc, argv);
  if (!strcmp(cmd, "profile")) return cmd_profile(argc, argv);
  usage();
  return EX_USAGE;
}

/* main.c - allocd: options, start-up checks, the collection loop, shutdown.
 *
 * The main thread collects (one tick per --interval-ms), looks at the rules
 * directory, and handles SIGTERM/SIGINT with sigtimedwait, so a stop
 * request ends the wait at once (SIGHUP re-reads the rule files): the tick in progress finishes, the rollups in progress are written,
 * the HTTP server stops, the database is closed.  Start-up refuses with a
 * clear message when the port is taken, the database cannot be opened or
 * migrated, or the token file is unusable. */
#include "api.h"
#include "collector.h"
#include "duration.h"
#include "log.h"
#include "push.h"
#include "profile.h"
#include "reclaim.h"
#include "rules.h"
#include "rules_dir.h"
#include "statedir.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_ALLOW_HOSTS 16

typedef struct options_s {
  char listen[300];
  char db[512], token_file[512], shm_dir[512], static_dir[512], rules_dir[512];
  const char *allow_hosts[MAX_ALLOW_HOSTS];
  size_t nallow_hosts;
  long interval_ms, push_timeout_ms, max_connections, request_timeout_s;
  int64_t raw_ms, minute_ms, hour_ms, process_minute_ms, process_hour_ms, max_db_bytes;
  reclaim_config_t reclaim;
  int64_t profile_interval_ms;
  enum log_level level;
} options_t;

static void usage(FILE *f) {
  fprintf(f,
          "usage: allocd [options]\n"
          "  --listen HOST:PORT     address to serve on (default 127.0.0.1:9470)\n"
          "  --db FILE              SQLite database (default <state>/allocd.db)\n"
          "  --token-file FILE      bearer token for writes, created 0600 if missing (default <state>/token)\n"
          "  --shm-dir DIR          where processes publish their segments (default /dev/shm)\n"
          "  --interval-ms N        collection interval (default 1000)\n"
          "  --retention-raw D      keep raw samples D (default 2h; units s, m, h, d)\n"
          "  --retention-1m D       keep the host's and executables' 1-minute rollups D (default 7d)\n"
          "  --retention-1h D       keep the host's and executables' 1-hour rollups D (default 90d)\n"
          "  --process-retention-1m D  keep each process's 1-minute rollups D (default 12h)\n"
          "  --process-retention-1h D  keep each process's 1-hour rollups and exited processes D (default 7d)\n"
          "  --max-db-mb N          keep the database below N MiB (default 1024)\n"
          "  --push-timeout-ms N    how long a config change waits for the process (default 5000)\n"
          "  --profile-interval D   store each process's heap profile at most every D (default 10m; 0: never)\n"
          "  --reclaim MODE         off, dry-run or on: under memory pressure, make the processes with the most\n"
          "                         free memory return it (default off)\n"
          "  --reclaim-psi F        host or cgroup PSI (some, 10 s) that is pressure (default 0.10)\n"
          "  --reclaim-usage F      a cgroup at this share of its limit is under pressure (default 0.90)\n"
          "  --reclaim-hold D       settings restored after D without pressure (default 30s)\n"
          "  --rules-dir DIR        rules from the *.json files of DIR, re-read on change and SIGHUP\n"
          "                         (default " RULES_DIR_DEFAULT "; '' for none)\n"
          "  --max-connections N    concurrent HTTP connections (default 4096)\n"
          "  --request-timeout-s N  reading one HTTP request may take N s in all (default 10)\n"
          "  --allow-host NAME      also answer requests whose Host is NAME (repeatable; by default\n"
          "                         only the --listen address, localhost, 127.0.0.1 and [::1])\n"
          "  --static-dir DIR       files of the dashboard served at / (default: the installed ones,\n"
          "                         " ALLOCD_WWW_FROM_EXE " from allocd's own directory)\n"
          "  --log-level LEVEL      debug, info, warn or error (default info)\n"
          "<state> is /var/lib/allocd for root, else $XDG_STATE_HOME/allocd or ~/.local/state/allocd.\n");
}

static bool parse_long(const char *s, long min, long max, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < min || v > max) return false;
  *out = v;
  return true;
}

/* A share: a number in (0, 1]. */
static bool parse_share(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !(v > 0 && v <= 1)) return false;
  *out = v;
  return true;
}

/* mkdir -p with mode 0700 for the parts we create. */
static bool make_dirs(const char *path) {
  char tmp[512];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return false;
    *p = '/';
  }
  return mkdir(tmp, 0700) == 0 || errno == EEXIST;
}

static bool parse_options(int argc, char **argv, options_t *o) {
  char state[400];
  allocd_state_dir(state, sizeof state);
  memset(o, 0, sizeof *o);
  snprintf(o->listen, sizeof o->listen, "127.0.0.1:9470");
  snprintf(o->db, sizeof o->db, "%s/allocd.db", state);
  snprintf(o->token_file, sizeof o->token_file, "%s/token", state);
  snprintf(o->shm_dir, sizeof o->shm_dir, "/dev/shm");
  snprintf(o->rules_dir, sizeof o->rules_dir, RULES_DIR_DEFAULT);
  o->interval_ms = 1000;
  o->push_timeout_ms = 5000;
  o->profile_interval_ms = 600000;
  o->max_connections = 4096;
  o->request_timeout_s = 10;
  o->raw_ms = 2 * 3600000LL;
  o->minute_ms = 7 * 86400000LL;
  o->hour_ms = 90 * 86400000LL;
  o->process_minute_ms = 12 * 3600000LL;
  o->process_hour_ms = 7 * 86400000LL;
  o->max_db_bytes = 1024LL << 20;
  o->level = LOG_INFO;
  o->reclaim = (reclaim_config_t){RECLAIM_OFF, 0.10, 0.90, 30000, 0};
  static const struct option longopts[] = {
    {"listen", 1, 0, 'l'}, {"db", 1, 0, 'd'}, {"token-file", 1, 0, 't'}, {"shm-dir", 1, 0, 's'},
    {"interval-ms", 1, 0, 'i'}, {"retention-raw", 1, 0, 'R'}, {"retention-1m", 1, 0, 'M'},
    {"retention-1h", 1, 0, 'H'}, {"process-retention-1m", 1, 0, 'm'}, {"process-retention-1h", 1, 0, 'o'},
    {"max-db-mb", 1, 0, 'B'}, {"push-timeout-ms", 1, 0, 'p'}, {"profile-interval", 1, 0, 'I'},
    {"max-connections", 1, 0, 'c'}, {"request-timeout-s", 1, 0, 'T'}, {"allow-host", 1, 0, 'A'},
    {"static-dir", 1, 0, 'S'}, {"rules-dir", 1, 0, 'r'}, {"reclaim", 1, 0, 'x'},
    {"reclaim-psi", 1, 0, 'P'}, {"reclaim-usage", 1, 0, 'U'}, {"reclaim-hold", 1, 0, 'D'}, {"log-level", 1, 0, 'L'}, {"help", 0, 0, 'h'},
    {0, 0, 0, 0}};
  int ch, idx = 0;
  long v;
  while ((ch = getopt_long(argc, argv, "", longopts, &idx)) != -1) {
    bool ok = true;
    switch (ch) {
    case 'l': ok = snprintf(o->listen, sizeof o->listen, "%s", optarg) < (int)sizeof o->listen; break;
    case 'd': ok = snprintf(o->db, sizeof o->db, "%s", optarg) < (int)sizeof o->db; break;
    case 't': ok = snprintf(o->token_file, sizeof o->token_file, "%s", optarg) < (int)sizeof o->token_file; break;
    case 's': ok = snprintf(o->shm_dir, sizeof o->shm_dir, "%s", optarg) < (int)sizeof o->shm_dir; break;
    case 'S': ok = snprintf(o->static_dir, sizeof o->static_dir, "%s", optarg) < (int)sizeof o->static_dir; break;
    case 'r': ok = snprintf(o->rules_dir, sizeof o->rules_dir, "%s", optarg) < (int)sizeof o->rules_dir; break;
    case 'i': ok = parse_long(optarg, 10, 3600000, &o->interval_ms); break;
    case 'p': ok = parse_long(optarg, 10, 600000, &o->push_timeout_ms); break;
    case 'I':
      o->profile_interval_ms = 0;
      ok = strcmp(optarg, "0") == 0 || (parse_duration(optarg, &o->profile_interval_ms) && o->profile_interval_ms >= 1000);
      break;
    case 'c': ok = parse_long(optarg, 1, 1000000, &o->max_connections); break;
    case 'T': ok = parse_long(optarg, 1, 3600, &o->request_timeout_s); break;
    case 'A':
      ok = o->nallow_hosts < MAX_ALLOW_HOSTS && *optarg && strlen(optarg) < 250 && !strpbrk(optarg, "/ \t");
      if (ok) o->allow_hosts[o->nallow_hosts++] = optarg;
      break;
    case 'R': ok = parse_duration(optarg, &o->raw_ms); break;
    case 'x':
      if (strcmp(optarg, "off") == 0) o->reclaim.mode = RECLAIM_OFF;
      else if (strcmp(optarg, "dry-run") == 0) o->reclaim.mode = RECLAIM_DRY_RUN;
      else if (strcmp(optarg, "on") == 0) o->reclaim.mode = RECLAIM_ON;
      else ok = false;
      break;
    case 'P': ok = parse_share(optarg, &o->reclaim.psi); break;
    case 'U': ok = parse_share(optarg, &o->reclaim.usage); break;
    case 'D': ok = parse_duration(optarg, &o->reclaim.hold_ms); break;
    case 'M': ok = parse_duration(optarg, &o->minute_ms); break;
    case 'H': ok = parse_duration(optarg, &o->hour_ms); break;
    case 'm': ok = parse_duration(optarg, &o->process_minute_ms); break;
    case 'o': ok = parse_duration(optarg, &o->process_hour_ms); break;
    case 'B': ok = parse_long(optarg, 1, 1 << 24, &v), o->max_db_bytes = (int64_t)v << 20; break;
    case 'L':
      if (strcmp(optarg, "debug") == 0) o->level = LOG_DEBUG;
      else if (strcmp(optarg, "info") == 0) o->level = LOG_INFO;
      else if (strcmp(optarg, "warn") == 0) o->level = LOG_WARN;
      else if (strcmp(optarg, "error") == 0) o->level = LOG_ERROR;
      else ok = false;
      break;
    case 'h': usage(stdout); exit(0);
    default: usage(stderr); return false;
    }
    if (!ok) {
      fprintf(stderr, "allocd: invalid value '%s' for --%s\n", optarg, longopts[idx].name);
      usage(stderr);
      return false;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "allocd: unexpected argument '%s'\n", argv[optind]);
    return false;
  }
  return true;
}

/* The dashboard's files: --static-dir, else ALLOCD_WWW_FROM_EXE (the path
 * from the install's sbindir to ${datadir}/allocd/www, set by CMake)
 * resolved against the directory allocd runs from (/proc/self/exe).  So an
 * installed allocd serves its own prefix's files wherever the tree was put
 * (cmake --install --prefix, a package, a moved tree), and one in the build
 * tree (build/agent/) the build's (build/share/allocd/www).  NULL when that
 * directory has no index.html (the dashboard was not built): / then says
 * so.  An explicit --static-dir that cannot be opened stops start-up. */
static const char *dashboard_dir(options_t *o) {
  if (o->static_dir[0]) return o->static_dir;
  char exe[400], guess[512];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0 || n >= (ssize_t)sizeof exe - 1) return NULL;
  exe[n] = 0;
  *strrchr(exe, '/') = 0;   /* the kernel's path is absolute */
  snprintf(guess, sizeof guess, "%s/%s/index.html", exe, ALLOCD_WWW_FROM_EXE);
  char *found = access(guess, R_OK) == 0 ? realpath(guess, NULL) : NULL;
  if (!found || strlen(found) >= sizeof o->static_dir) {
    log_info("no dashboard at %s (not built or not installed): / answers with an error; --static-dir DIR "
             "serves one", guess);
    free(found);
    return NULL;
  }
  *strrchr(found, '/') = 0;
  snprintf(o->static_dir, sizeof o->static_dir, "%s", found);
  free(found);
  log_info("serving the dashboard from %s", o->static_dir);
  return o->static_dir;
}

/* ---- the token ----------------------------------------------------------------- */

static bool create_token(const char *path) {
  unsigned char raw[32];
  if (getrandom(raw, sizeof raw, 0) != sizeof raw) return false;
  char hex[sizeof raw * 2 + 2];
  for (size_t i = 0; i < sizeof raw; i++) snprintf(hex + 2 * i, 3, "%02x", raw[i]);
  strcat(hex, "\n");
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  bool ok = write(fd, hex, strlen(hex)) == (ssize_t)strlen(hex);
  close(fd);
  if (ok) log_info("created token file %s (mode 0600)", path);
  return ok;
}

static bool load_token(const char *path, char *token, size_t size) {
  char dir[512];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash && slash != dir) *slash = 0, make_dirs(dir);
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT && create_token(path)) fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    log_error("cannot open the token file %s: %s", path, strerror(errno));
    return false;
  }
  struct stat st;
  if (fstat(fd, &st) == 0 && (st.st_mode & 077)) log_warn("token file %s is readable by others (mode %03o)", path, st.st_mode & 0777);
  ssize_t n = read(fd, token, size - 1);
  close(fd);
  if (n < 0) n = 0;
  token[n] = 0;
  while (n > 0 && (token[n - 1] == '\n' || token[n - 1] == '\r' || token[n - 1] == ' ')) token[--n] = 0;
  if (n < 16) {
    log_error("the token in %s is shorter than 16 characters", path);
    return false;
  }
  return true;
}

/* ---- the listening socket ------------------------------------------------------- */

/* Bind and listen on HOST:PORT; the host part is left in host[256] (the
 * Host header naming it is accepted). */
static int listen_on(const char *addr, char *host) {
  const char *port;
  if (addr[0] == '[') {   /* [v6]:port */
    const char *close_br = strchr(addr, ']');
    if (!close_br || close_br[1] != ':') return -1;
    snprintf(host, 256, "%.*s", (int)(close_br - addr - 1), addr + 1);
    port = close_br + 2;
  } else {
    const char *colon = strrchr(addr, ':');
    if (!colon) return -1;
    snprintf(host, 256, "%.*s", (int)(colon - addr), addr);
    port = colon + 1;
  }
  struct addrinfo hints = {.ai_flags = AI_PASSIVE | AI_NUMERICSERV, .ai_socktype = SOCK_STREAM}, *res;
  int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
  if (rc) {
    log_error("cannot listen on %s: %s", addr, gai_strerror(rc));
    return -1;
  }
  int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
  int one = 1;
  if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
    log_error("cannot listen on %s: %s%s", addr, strerror(errno),
              errno == EADDRINUSE ? " (is another allocd running?)" : "");
    if (fd >= 0) close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  return fd;
}

/* Every HTTP connection holds a descriptor: raise the soft limit to the
 * hard one, and serve at most what it leaves room for (the database, the
 * segments being read and the listening socket need some too). */
static unsigned connection_limit(long wanted) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return (unsigned)wanted;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  long room = rl.rlim_cur == RLIM_INFINITY ? wanted : (long)rl.rlim_cur - 128;
  if (room < wanted) {
    log_warn("serving at most %ld HTTP connections, not %ld: the descriptor limit is %llu", room < 1 ? 1 : room,
             wanted, (unsigned long long)rl.rlim_cur);
    return (unsigned)(room < 1 ? 1 : room);
  }
  return (unsigned)wanted;
}

/* ---- main ------------------------------------------------------------------------- */

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv) {
  options_t o;
  if (!parse_options(argc, argv, &o)) return 2;
  log_set_level(o.level);
  signal(SIGPIPE, SIG_IGN);
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop, NULL);   /* before any thread: only sigtimedwait sees them */

  char token[256];
  if (!load_token(o.token_file, token, sizeof token)) return 1;
  char host[256] = "";
  int lfd = listen_on(o.listen, host);
  if (lfd < 0) return 1;
  char dbdir[512], err[512] = "";
  snprintf(dbdir, sizeof dbdir, "%s", o.db);
  char *slash = strrchr(dbdir, '/');
  if (slash && slash != dbdir) *slash = 0, make_dirs(dbdir);
  store_limits_t limits = {o.raw_ms, o.minute_ms, o.hour_ms, o.process_minute_ms, o.process_hour_ms, o.max_db_bytes};
  store_t *store = store_open(o.db, &limits, err, sizeof err);
  if (!store) {
    log_error("database: %s", err);
    return 1;
  }
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  store_mark_all_exited(store, (int64_t)now.tv_sec * 1000);   /* the collector finds the live ones again */
  collector_t *collector = collector_new(store, o.shm_dir);
  if (collector) collector_set_budget(collector, o.interval_ms / 2);   /* the rest is for the database and rules */
  rules_t *rules = rules_start(store, collector, (unsigned)o.push_timeout_ms);
  rules_dir_t *rules_dir = rules_dir_new(store, o.rules_dir);
  rules_dir_poll(rules_dir, true);   /* before the first process is found */
  o.reclaim.push_timeout_ms = (unsigned)o.push_timeout_ms;
  reclaim_t *reclaim = collector ? reclaim_start(store, collector, &o.reclaim) : NULL;
  api_config_t cfg = {lfd, token, (unsigned)o.push_timeout_ms, connection_limit(o.max_connections), 30,
                      (unsigned)o.request_timeout_s, dashboard_dir(&o), host, o.allow_hosts, o.nallow_hosts, rules_dir, reclaim};
  api_t *api = collector && rules && rules_dir ? api_start(&cfg, store, collector, rules, err, sizeof err) : NULL;
  if (!api) {
    log_error("cannot start: %s", err[0] ? err : "out of memory");
    return 1;
  }
  log_info("allocd %s listening on %s, collecting %s every %ld ms, database %s", ALLOCD_VERSION, o.listen,
           o.shm_dir, o.interval_ms, o.db);
  profile_keeper_t *keeper = profile_keeper_start(store, collector, o.profile_interval_ms, (unsigned)o.push_timeout_ms);

  /* Ticks start at a fixed rate (a slow pass shortens the wait, it does not
   * add to it); retention runs every 10 ticks, or every tick while it
   * still has a full batch to delete. */
  int sig = 0;
  bool behind = false;
  int64_t next = mono_ms();
  for (unsigned long tick = 0;; tick++) {
    rules_dir_poll(rules_dir, false);
    collector_tick(collector);
    push_follow_up(store);
    rules_kick(rules);
    reclaim_kick(reclaim);
    if (tick % 10 == 0 || behind) {
      clock_gettime(CLOCK_REALTIME, &now);
      behind = store_retain(store, (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000);
    }
    next += o.interval_ms;
    int64_t left = next - mono_ms();
    if (left < 0) {   /* the pass took longer than the interval: start the next one now */
      next = mono_ms();
      left = 0;
    }
    for (;;) {
      struct timespec wait = {(time_t)(left / 1000), (long)(left % 1000) * 1000000L};
      sig = sigtimedwait(&stop, NULL, &wait);
      if (sig != SIGHUP) break;
      log_info("received SIGHUP: re-reading the rules directory");
      rules_dir_poll(rules_dir, true);
      left = next - mono_ms();   /* then wait out the rest of the interval */
      if (left < 0) left = 0;
    }
    if (sig > 0) break;
  }
  log_info("received %s: stopping", strsignal(sig));
  api_stop(api);
  profile_keeper_stop(keeper);   /* within one push timeout */
  rules_stop(rules);
  reclaim_stop(reclaim);   /* gives back the settings it changed */
  rules_dir_free(rules_dir);
  collector_tick(collector);   /* the last batch */
  collector_flush(collector);
  collector_free(collector);
  store_close(store);
  log_info("stopped");
  return 0;
}

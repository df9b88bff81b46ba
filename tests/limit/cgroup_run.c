/* cgroup_run.c - run a program inside a fresh cgroup v1 memory cgroup with
 * a limit, and check how it ended (issue 20's container case, for real).
 *
 *   cgroup_run [--preload LIB] [--conf ALLOC_CONF] [--stats] --limit MIB
 *              --expect ok|enomem|oom -- PROGRAM ARGS...
 *
 * The cgroup is made under the memory hierarchy's mount point (found in
 * /proc/self/mountinfo), named liballoc-test.<pid>, given
 * memory.limit_in_bytes; the child moves itself in (cgroup.procs) before
 * it execs PROGRAM with LD_PRELOAD and ALLOC_CONF as given (this runner
 * itself runs under no preload).  The cgroup is removed on every exit path
 * of the runner, including SIGTERM/SIGINT (ctest's timeout).
 *
 * Checks: --expect ok: exit 0, and the cgroup's peak
 * (memory.max_usage_in_bytes) below the limit; enomem: exit 3 (the
 * program's clean ENOMEM path, tests/limit/limit_workload.c), not killed;
 * oom: killed by SIGKILL (the OOM killer; memory.oom_control's oom_kill
 * grew).  With --stats, the program writes alloc_stats_print's JSON to a
 * file (its last argument), and the limit must have been seen: limit =
 * the cgroup's, limit_source 2 (cgroup v1).  Prints one line of figures.
 * Exit 0 pass, 1 fail, 77 skipped (not root, no v1 memory controller). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char cg[4096];   /* the cgroup's directory, "" when none */
static pid_t child;

static void cleanup(void) {
  if (!cg[0]) return;
  if (child > 0) kill(child, SIGKILL), waitpid(child, NULL, 0);
  for (int i = 0; i < 100 && rmdir(cg) != 0 && errno == EBUSY; i++) usleep(20000);
  cg[0] = 0;
}

static void on_signal(int sig) {
  cleanup();
  signal(sig, SIG_DFL);
  raise(sig);
}

static int skip(const char *why) {
  printf("cgroup_run: skipped: %s\n", why);
  return 77;
}

/* The mount point of the v1 memory hierarchy, from mountinfo. */
static int memory_mount(char *out, size_t size) {
  FILE *f = fopen("/proc/self/mountinfo", "r");
  char line[4096];
  int found = 0;
  while (f && !found && fgets(line, sizeof line, f)) {
    char mpoint[1024], fstype[64], opts[1024];
    const char *dash = strstr(line, " - ");
    if (!dash || sscanf(line, "%*s %*s %*s %*s %1023s", mpoint) != 1 ||
        sscanf(dash + 3, "%63s %*s %1023s", fstype, opts) != 2)
      continue;
    if (strcmp(fstype, "cgroup") != 0) continue;
    for (char *t = strtok(opts, ","); t; t = strtok(NULL, ","))
      if (strcmp(t, "memory") == 0) found = 1;
    if (found) snprintf(out, size, "%s", mpoint);
  }
  if (f) fclose(f);
  return found;
}

static int write_file(const char *dir, const char *name, const char *text) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  int fd = open(path, O_WRONLY);
  if (fd < 0) return -1;
  ssize_t n = write(fd, text, strlen(text));
  close(fd);
  return n == (ssize_t)strlen(text) ? 0 : -1;
}

static long long read_number(const char *dir, const char *name, const char *key) {
  char path[4200], line[256];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "r");
  long long v = -1;
  while (f && fgets(line, sizeof line, f)) {
    if (!key) {
      v = atoll(line);
      break;
    }
    size_t kl = strlen(key);
    if (strncmp(line, key, kl) == 0 && line[kl] == ' ') v = atoll(line + kl + 1);
  }
  if (f) fclose(f);
  return v;
}

/* "key":number in the JSON file, or -1. */
static long long json_number(const char *path, const char *key) {
  static char buf[1 << 16];
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char pat[96];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = strstr(buf, pat);
  return p ? atoll(p + strlen(pat)) : -1;
}

int main(int argc, char **argv) {
  const char *preload = NULL, *conf = NULL, *expect = NULL;
  long long limit_mib = 0;
  int stats = 0, i;
  for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
    if (strcmp(argv[i], "--preload") == 0 && i + 1 < argc) preload = argv[++i];
    else if (strcmp(argv[i], "--conf") == 0 && i + 1 < argc) conf = argv[++i];
    else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc) limit_mib = atoll(argv[++i]);
    else if (strcmp(argv[i], "--expect") == 0 && i + 1 < argc) expect = argv[++i];
    else if (strcmp(argv[i], "--stats") == 0) stats = 1;
    else break;
  }
  if (i >= argc || strcmp(argv[i], "--") != 0 || i + 1 >= argc || !expect || limit_mib <= 0) {
    fprintf(stderr, "usage: cgroup_run [--preload LIB] [--conf CONF] [--stats] --limit MIB --expect ok|enomem|oom -- PROGRAM ARGS...\n");
    return 2;
  }
  char **prog = argv + i + 1;
  int nprog = argc - i - 1;
  if (geteuid() != 0) return skip("not root: cannot create a memory cgroup");
  char mount[1024];
  if (!memory_mount(mount, sizeof mount)) return skip("no cgroup v1 memory controller mounted");

  snprintf(cg, sizeof cg, "%s/liballoc-test.%d", mount, (int)getpid());
  if (mkdir(cg, 0755) != 0) {
    cg[0] = 0;
    return skip("cannot create a cgroup under the memory hierarchy");
  }
  atexit(cleanup);
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  long long limit = limit_mib << 20;
  char text[64];
  snprintf(text, sizeof text, "%lld", limit);
  if (write_file(cg, "memory.limit_in_bytes", text) != 0) {
    printf("cgroup_run: cannot set memory.limit_in_bytes: %s\n", strerror(errno));
    return 1;
  }
  write_file(cg, "memory.swappiness", "0");   /* no swap here anyway: the OOM killer decides */

  int pipefd[2];
  if (pipe(pipefd) != 0) return 1;
  child = fork();
  if (child < 0) return 1;
  if (child == 0) {
    close(pipefd[0]);
    char pid[32];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    if (write_file(cg, "cgroup.procs", pid) != 0) _exit(120);
    if (preload) setenv("LD_PRELOAD", preload, 1);
    else unsetenv("LD_PRELOAD");
    if (conf) setenv("ALLOC_CONF", conf, 1);
    else unsetenv("ALLOC_CONF");
    execv(prog[0], prog);
    _exit(127);
  }
  close(pipefd[1]);
  close(pipefd[0]);
  int status;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
  child = 0;
  long long peak = read_number(cg, "memory.max_usage_in_bytes", NULL);
  long long failcnt = read_number(cg, "memory.failcnt", NULL);
  long long oom_kills = read_number(cg, "memory.oom_control", "oom_kill");
  cleanup();

  int killed = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  printf("cgroup_run: limit %lld MiB, %s, peak %.1f MiB, failcnt %lld, oom_kill %lld\n", limit_mib,
         killed ? (killed == SIGKILL ? "killed (SIGKILL)" : "killed by a signal") : code == 0 ? "completed" : "exited",
         peak / 1048576.0, failcnt, oom_kills);
  int ok = 1;
  if (strcmp(expect, "ok") == 0) {
    if (killed || code != 0) printf("FAIL: expected completion, got %s %d\n", killed ? "signal" : "exit", killed ? killed : code), ok = 0;
    else if (peak >= limit) printf("FAIL: peak %lld >= limit %lld\n", peak, limit), ok = 0;
  } else if (strcmp(expect, "enomem") == 0) {
    if (killed || code != 3) printf("FAIL: expected the program's ENOMEM exit (3), got %s %d\n", killed ? "signal" : "exit", killed ? killed : code), ok = 0;
  } else if (strcmp(expect, "oom") == 0) {
    if (killed != SIGKILL) printf("FAIL: expected an OOM kill, got %s %d\n", killed ? "signal" : "exit", killed ? killed : code), ok = 0;
  } else {
    return 2;
  }
  if (stats && !killed) {
    const char *file = prog[nprog - 1];
    long long seen = json_number(file, "limit"), source = json_number(file, "limit_source");
    printf("cgroup_run: liballoc saw limit %lld (source %lld), hits %lld, returned %.1f MiB, refused %lld\n", seen, source,
           json_number(file, "limit_hits"), json_number(file, "limit_returned") / 1048576.0, json_number(file, "limit_refused"));
    /* unless ALLOC_CONF sets memory_limit itself (memory_limit:0: none) */
    bool own = conf && strstr(conf, "memory_limit:") && !strstr(conf, "memory_limit:cgroup");
    if (!own && (seen != limit || source != 2)) printf("FAIL: liballoc did not see the cgroup v1 limit\n"), ok = 0;
    if (own && source == 2) printf("FAIL: liballoc took the cgroup's limit against ALLOC_CONF\n"), ok = 0;
    unlink(file);
  }
  return ok ? 0 : 1;
}

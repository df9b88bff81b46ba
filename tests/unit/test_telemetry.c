/* test_telemetry.c - the writer of the telemetry segment (telemetry.c), in
 * a directory of its own (la_opt.telemetry_dir), with the real publisher
 * thread on a 10 ms interval:
 *   - the segment appears with a valid header (magic, version, sizes, pid,
 *     mode 0600, our owner) and snapshots advance `published`;
 *   - the temporary name it is built under cannot be predicted: the old
 *     fixed name .liballoc.<pid>.tmp, planted with junk beforehand, is
 *     never touched, and each creation uses a new name (inotify sees them);
 *   - a segment removed by someone else is created again; a file someone
 *     put in its place (another inode), or a symlink to a file the process
 *     could write, is never written through and is replaced;
 *   - with /proc unreadable no segment is made (it would lack the start
 *     time and pid namespace allocd checks), until it can be read;
 *   - a refused open or write (the OS layer's fault hook) warns once, and
 *     publishing resumes when the calls work again;
 *   - at exit the segment is removed (a child process of this binary,
 *     exiting normally), but not a file put in its place (last test: once
 *     la_telemetry_exit ran, this process publishes no more).
 * Every wait polls for up to 5 s; nothing asserts how long anything took. */
#include "unit.h"

#include <alloc.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define CHILD_FLAG "--exit-child"

static char dir[] = "/tmp/test_telemetry.XXXXXX";
static char seg_path[PATH_MAX];     /* <dir>/liballoc.<pid> */
static char fixed_tmp[PATH_MAX];    /* <dir>/.liballoc.<pid>.tmp, planted */
static struct stat fixed_tmp_st;

/* ---- reading the segment as a reader would ---------------------------------- */

/* The header of the file at `path` and the file's stat; false if there is
 * no such file or it is shorter than a header. */
static bool read_header(const char *path, alloc_shm_header_t *h, struct stat *st) {
  int fd = open(path, O_RDONLY | O_NOFOLLOW);
  if (fd < 0) return false;
  bool ok = fstat(fd, st) == 0 && pread(fd, h, sizeof *h, 0) == (ssize_t)sizeof *h;
  close(fd);
  return ok;
}

static uint64_t published_in(const char *path) {
  alloc_shm_header_t h;
  struct stat st;
  return read_header(path, &h, &st) && h.magic == ALLOC_SHM_MAGIC ? h.published : 0;
}

static void pause_ms(long ms) {
  struct timespec ts = {0, ms * 1000000};
  nanosleep(&ts, NULL);
}

/* Poll up to 5 s for a segment at `path` whose `published` passed `than`
 * and whose inode is not `not_ino` (0: any); its stat, or fail. */
static struct stat wait_for_segment(const char *path, uint64_t than, ino_t not_ino) {
  alloc_shm_header_t h;
  struct stat st;
  for (int i = 0; i < 500; i++) {
    if (read_header(path, &h, &st) && h.magic == ALLOC_SHM_MAGIC && h.published > than && st.st_ino != not_ino)
      return st;
    pause_ms(10);
  }
  fail_msg("no segment at %s published past %llu within 5 s", path, (unsigned long long)than);
  return st;
}

/* Poll up to 5 s for the fault hook to have refused `n` calls of a kind. */
static void wait_for_refusals(enum la_os_call call, uint64_t n) {
  for (int i = 0; i < 500 && la_os_fault_injected(call) < n; i++) pause_ms(10);
  assert_true(la_os_fault_injected(call) >= n);
}

/* A file of `size` bytes of `junk`, mode 0600, at `path`. */
static void make_junk_file(const char *path, size_t size, int junk) {
  char buf[4096];
  memset(buf, junk, sizeof buf);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(fd >= 0);
  for (size_t off = 0; off < size; off += sizeof buf) {
    size_t n = size - off < sizeof buf ? size - off : sizeof buf;
    assert_int_equal(pwrite(fd, buf, n, (off_t)off), (ssize_t)n);
  }
  close(fd);
}

static bool file_is_all(int fd, size_t size, int junk) {
  unsigned char buf[4096];
  for (size_t off = 0; off < size; off += sizeof buf) {
    size_t n = size - off < sizeof buf ? size - off : sizeof buf;
    if (pread(fd, buf, n, (off_t)off) != (ssize_t)n) return false;
    for (size_t i = 0; i < n; i++)
      if (buf[i] != junk) return false;
  }
  return true;
}

/* ---- set-up ------------------------------------------------------------------ */

/* Runs long before the process's first second is over, so the quiet start
 * (init.c) never starts a publisher in /dev/shm: the tests start it here. */
static int setup(void **state) {
  (void)state;
  la_ensure_init();
  la_opt.telemetry = false;
  if (!mkdtemp(dir)) return -1;
  snprintf(seg_path, sizeof seg_path, "%s/" ALLOC_SHM_PREFIX "%d", dir, (int)getpid());
  snprintf(fixed_tmp, sizeof fixed_tmp, "%s/." ALLOC_SHM_PREFIX "%d.tmp", dir, (int)getpid());
  make_junk_file(fixed_tmp, 1000, 'J');   /* a squatter (we run as root: owned by root) */
  return stat(fixed_tmp, &fixed_tmp_st);
}

/* ---- the segment ------------------------------------------------------------- */

static void segment_appears_with_a_valid_header(void **state) {
  (void)state;
  snprintf(la_opt.telemetry_dir, sizeof la_opt.telemetry_dir, "%s", dir);
  la_opt.stats_interval_ms = 10;
  la_opt.telemetry = true;
  la_telemetry_start();
  struct stat st = wait_for_segment(seg_path, 0, 0);
  alloc_shm_header_t h;
  assert_true(read_header(seg_path, &h, &st));
  assert_true(S_ISREG(st.st_mode));
  assert_int_equal(st.st_mode & 07777, 0600);
  assert_int_equal(st.st_uid, geteuid());
  assert_int_equal(h.magic, ALLOC_SHM_MAGIC);
  assert_int_equal(h.version, ALLOC_SHM_VERSION);
  assert_int_equal(h.header_size, ALLOC_SHM_HEADER_SIZE);
  assert_int_equal(h.ring_offset, ALLOC_SHM_HEADER_SIZE);
  assert_int_equal(h.ring_slots, ALLOC_SHM_RING_SLOTS);
  assert_int_equal(h.slot_size, sizeof(alloc_shm_snapshot_t));
  assert_int_equal(h.control_offset, h.ring_offset + h.ring_slots * h.slot_size);
  assert_int_equal(h.control_slots, ALLOC_SHM_CONTROL_SLOTS);
  assert_int_equal(h.request_size, sizeof(alloc_shm_request_t));
  assert_true(h.profile_offset >= h.control_offset + h.control_slots * h.request_size);
  assert_int_equal(h.profile_offset % 4096, 0);
  assert_int_equal(h.profile_size, ALLOC_SHM_PROFILE_SIZE);
  assert_int_equal(h.file_size, (uint64_t)h.profile_offset + h.profile_size);
  assert_int_equal(h.file_size, (uint64_t)st.st_size);
  assert_int_equal(h.nstats, ALLOC_SHM_NSTATS);
  assert_int_equal(h.nconfig, ALLOC_SHM_NCONFIG);
  assert_int_equal(h.nclasses, LA_NCLASSES);
  assert_int_equal(h.pid, getpid());
  assert_int_equal(h.interval_ms, 10);
  assert_string_equal(h.version_str, ALLOC_VERSION_STRING);
  char exe[sizeof h.exe] = {0};
  assert_true(readlink("/proc/self/exe", exe, sizeof exe - 1) > 0);
  assert_string_equal(h.exe, exe);
}

/* The newest snapshot, read as a reader does (seq, number, checksum),
 * retried while the writer laps it. */
static alloc_shm_snapshot_t read_newest_snapshot(void) {
  static alloc_shm_snapshot_t snap;
  for (int i = 0; i < 500; i++) {
    alloc_shm_header_t h;
    struct stat st;
    int fd = open(seg_path, O_RDONLY);
    assert_true(fd >= 0);
    assert_true(read_header(seg_path, &h, &st));
    uint64_t n = h.published;
    uint64_t off = h.ring_offset + ((n - 1) % h.ring_slots) * (uint64_t)h.slot_size;
    bool whole = pread(fd, &snap, sizeof snap, (off_t)off) == (ssize_t)sizeof snap;
    close(fd);
    if (whole && snap.number == n && snap.seq == 2 * n && snap.checksum == alloc_shm_snapshot_checksum(&snap))
      return snap;
    pause_ms(1);
  }
  fail_msg("no complete snapshot could be read");
  return snap;
}

static void snapshots_advance_published(void **state) {
  (void)state;
  void *huge = la_malloc(6 << 20);   /* something the snapshots must show */
  uint64_t before = published_in(seg_path);
  wait_for_segment(seg_path, before + 3, 0);
  alloc_shm_snapshot_t s = read_newest_snapshot();
  assert_true(s.number > before + 3);
  assert_true(s.stats.huge_blocks >= 1);
  assert_true(s.stats.huge_allocated >= (6u << 20));
  assert_int_equal(s.config.stats_interval_ms, 10);
  assert_int_equal(s.nclasses, LA_NCLASSES);
  la_free(huge);
}

/* ---- temporary names ---------------------------------------------------------- */

static void fixed_temporary_name_is_never_used(void **state) {
  (void)state;
  struct stat st;
  assert_int_equal(stat(fixed_tmp, &st), 0);
  assert_int_equal(st.st_ino, fixed_tmp_st.st_ino);
  assert_int_equal(st.st_size, 1000);
  assert_int_equal(st.st_mtim.tv_sec, fixed_tmp_st.st_mtim.tv_sec);
  assert_int_equal(st.st_mtim.tv_nsec, fixed_tmp_st.st_mtim.tv_nsec);
  int fd = open(fixed_tmp, O_RDONLY);
  assert_true(fd >= 0);
  assert_true(file_is_all(fd, 1000, 'J'));
  close(fd);
}

/* Names of files created in `dir` that look like the writer's temporary
 * files, from an inotify descriptor; returns how many were stored. */
static int created_temporary_names(int ino_fd, char names[][NAME_MAX + 1], int max) {
  char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
  int count = 0;
  ssize_t len;
  while ((len = read(ino_fd, buf, sizeof buf)) > 0)
    for (char *p = buf; p < buf + len;) {
      struct inotify_event *ev = (struct inotify_event *)p;
      if (ev->len && strncmp(ev->name, "." ALLOC_SHM_PREFIX, strlen("." ALLOC_SHM_PREFIX)) == 0 && count < max)
        snprintf(names[count++], NAME_MAX + 1, "%s", ev->name);
      p += sizeof *ev + ev->len;
    }
  return count;
}

/* A segment removed by someone else comes back at a later tick, built
 * under a new temporary name each time. */
static void removed_segment_is_created_again(void **state) {
  (void)state;
  int ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  assert_true(ino_fd >= 0);
  assert_true(inotify_add_watch(ino_fd, dir, IN_CREATE) >= 0);
  for (int round = 0; round < 3; round++) {
    assert_int_equal(unlink(seg_path), 0);
    wait_for_segment(seg_path, 0, 0);
  }
  char names[8][NAME_MAX + 1];
  int n = created_temporary_names(ino_fd, names, 8);
  close(ino_fd);
  assert_int_equal(n, 3);
  char prefix[64];
  snprintf(prefix, sizeof prefix, "." ALLOC_SHM_PREFIX "%d.", (int)getpid());
  for (int i = 0; i < n; i++) {
    assert_true(strncmp(names[i], prefix, strlen(prefix)) == 0);
    assert_true(strlen(names[i]) > strlen(prefix) + strlen(".tmp"));   /* more than the pid */
    for (int j = 0; j < i; j++) assert_string_not_equal(names[i], names[j]);
  }
  fixed_temporary_name_is_never_used(state);
}

/* Someone renames a file of their own over the segment: the publisher
 * sees another inode, never writes it, and puts a segment of its own back. */
static void file_put_in_its_place_is_never_written(void **state) {
  (void)state;
  alloc_shm_header_t h;
  struct stat st;
  assert_true(read_header(seg_path, &h, &st));
  char planted[PATH_MAX];
  snprintf(planted, sizeof planted, "%s/planted", dir);
  make_junk_file(planted, h.file_size, 0xEE);
  int fd = open(planted, O_RDONLY);
  assert_true(fd >= 0);
  struct stat planted_st;
  assert_int_equal(fstat(fd, &planted_st), 0);
  assert_int_equal(rename(planted, seg_path), 0);
  wait_for_segment(seg_path, 0, planted_st.st_ino);   /* replaced */
  assert_true(file_is_all(fd, h.file_size, 0xEE));
  close(fd);
}

/* A symlink put in its place, to a file the process could write: the
 * publisher does not follow it, and replaces the link itself. */
static void symlink_put_in_its_place_is_not_followed(void **state) {
  (void)state;
  alloc_shm_header_t h;
  struct stat st;
  assert_true(read_header(seg_path, &h, &st));
  char victim[PATH_MAX];
  snprintf(victim, sizeof victim, "%s/victim", dir);
  make_junk_file(victim, h.file_size, 'V');   /* the right size: only the link gives it away */
  int fd = open(victim, O_RDONLY);
  assert_true(fd >= 0);
  char link_path[PATH_MAX];
  snprintf(link_path, sizeof link_path, "%s/link", dir);
  assert_int_equal(symlink(victim, link_path), 0);
  assert_int_equal(rename(link_path, seg_path), 0);
  for (int i = 0; i < 500 && (lstat(seg_path, &st) != 0 || S_ISLNK(st.st_mode)); i++) pause_ms(10);
  assert_int_equal(lstat(seg_path, &st), 0);
  assert_true(S_ISREG(st.st_mode));   /* the link was replaced */
  wait_for_segment(seg_path, 0, 0);
  assert_true(file_is_all(fd, h.file_size, 'V'));
  close(fd);
  unlink(victim);
}

/* ---- refusals ------------------------------------------------------------------ */

static int stderr_saved = -1;
static char stderr_log[PATH_MAX];

static void capture_stderr(void) {
  snprintf(stderr_log, sizeof stderr_log, "%s/stderr.log", dir);
  int fd = open(stderr_log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(fd >= 0);
  fflush(stderr);
  stderr_saved = dup(STDERR_FILENO);
  dup2(fd, STDERR_FILENO);
  close(fd);
}

/* Stop capturing; what was written meanwhile (also passed on to stderr). */
static const char *stop_capturing_stderr(void) {
  dup2(stderr_saved, STDERR_FILENO);
  close(stderr_saved);
  static char text[65536];
  int fd = open(stderr_log, O_RDONLY);
  ssize_t n = fd >= 0 ? read(fd, text, sizeof text - 1) : -1;
  if (fd >= 0) close(fd);
  unlink(stderr_log);
  text[n > 0 ? n : 0] = 0;
  fputs(text, stderr);
  return text;
}

static int occurrences(const char *text, const char *what) {
  int count = 0;
  for (const char *p = text; (p = strstr(p, what)); p += strlen(what)) count++;
  return count;
}

static void refused_open_and_write_warn_once_and_recover(void **state) {
  (void)state;
  capture_stderr();
  /* Every open refused, the segment gone: it cannot be created. */
  la_os_fault_set(LA_OS_OPEN, 0, 1000000, EACCES);
  assert_int_equal(unlink(seg_path), 0);
  wait_for_refusals(LA_OS_OPEN, 10);
  assert_int_not_equal(access(seg_path, F_OK), 0);
  la_os_fault_clear();
  wait_for_segment(seg_path, 0, 0);
  /* Every write refused: nothing is published (once a tick that was
   * already writing when the refusals began is over). */
  la_os_fault_set(LA_OS_WRITE, 0, 1000000, ENOSPC);
  wait_for_refusals(LA_OS_WRITE, 10);
  uint64_t published = published_in(seg_path);
  wait_for_refusals(LA_OS_WRITE, 20);
  assert_int_equal(published_in(seg_path), published);
  la_os_fault_clear();
  wait_for_segment(seg_path, published, 0);
  const char *said = stop_capturing_stderr();
  assert_int_equal(occurrences(said, "telemetry: cannot create"), 1);
  assert_int_equal(occurrences(said, "telemetry: cannot write"), 1);
  assert_int_equal(occurrences(said, "telemetry:"), 2);
}

/* /proc unreadable (every read refused): no segment without the start time
 * and pid namespace allocd checks, where one was made with zeros, which
 * allocd refused as another namespace's and left in the directory for
 * good (the fault runs of stress_fork left dozens in /dev/shm).  Made,
 * with both, once reads work again. */
static void unreadable_identity_makes_no_segment(void **state) {
  (void)state;
  capture_stderr();
  la_os_fault_set(LA_OS_READ, 0, 1000000, EIO);
  assert_int_equal(unlink(seg_path), 0);
  wait_for_refusals(LA_OS_READ, 20);   /* several ticks, each reading /proc/self/stat */
  assert_int_not_equal(access(seg_path, F_OK), 0);
  la_os_fault_clear();
  wait_for_segment(seg_path, 0, 0);
  alloc_shm_header_t h;
  struct stat st;
  assert_true(read_header(seg_path, &h, &st));
  assert_true(h.start_time != 0);
  struct stat ns;
  assert_int_equal(stat("/proc/self/ns/pid", &ns), 0);
  assert_int_equal(h.pidns_ino, (uint64_t)ns.st_ino);
  const char *said = stop_capturing_stderr();
  assert_int_equal(occurrences(said, "telemetry: cannot read the process's start time"), 1);
}

/* ---- exit ----------------------------------------------------------------------- */

/* The child: publish into ALLOC_CONF's telemetry_dir, then exit normally;
 * the destructor must remove the segment. */
static int run_exit_child(void) {
  la_ensure_init();
  la_telemetry_start();
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/" ALLOC_SHM_PREFIX "%d", la_opt.telemetry_dir, (int)getpid());
  for (int i = 0; i < 500 && published_in(path) == 0; i++) pause_ms(10);
  return published_in(path) > 0 ? 0 : 3;
}

/* This process's environment (ASAN_OPTIONS and all), with `conf` for
 * ALLOC_CONF. */
static char **environment_with(char *conf) {
  static char *envp[512];
  size_t n = 0;
  for (char **e = environ; *e && n < 510; e++)
    if (strncmp(*e, "ALLOC_CONF=", 11) != 0) envp[n++] = *e;
  envp[n++] = conf;
  envp[n] = NULL;
  return envp;
}

static void exit_removes_the_segment_it_created(void **state) {
  (void)state;
  char conf[PATH_MAX + 64];
  snprintf(conf, sizeof conf, "ALLOC_CONF=telemetry_dir:%s,stats_interval_ms:10", dir);
  char *argv[] = {"/proc/self/exe", CHILD_FLAG, NULL};
  pid_t pid;
  assert_int_equal(posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, environment_with(conf)), 0);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);   /* it published */
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/" ALLOC_SHM_PREFIX "%d", dir, (int)pid);
  assert_int_not_equal(access(path, F_OK), 0);   /* and removed it at exit */
}

/* The last test: once la_telemetry_exit has run, this process no longer
 * publishes.  Opens are refused so that the publisher cannot put its own
 * segment back before the exit looks. */
static void exit_leaves_a_file_put_in_its_place(void **state) {
  (void)state;
  alloc_shm_header_t h;
  struct stat st;
  assert_true(read_header(seg_path, &h, &st));
  la_os_fault_set(LA_OS_OPEN, 0, 1000000, EACCES);
  char planted[PATH_MAX];
  snprintf(planted, sizeof planted, "%s/planted", dir);
  make_junk_file(planted, h.file_size, 0xEE);
  struct stat planted_st;
  assert_int_equal(stat(planted, &planted_st), 0);
  assert_int_equal(rename(planted, seg_path), 0);
  wait_for_refusals(LA_OS_OPEN, 2);   /* the publisher looked, and could not */
  la_telemetry_exit();
  la_os_fault_clear();
  assert_int_equal(stat(seg_path, &st), 0);
  assert_int_equal(st.st_ino, planted_st.st_ino);
  int fd = open(seg_path, O_RDONLY);
  assert_true(file_is_all(fd, h.file_size, 0xEE));
  close(fd);
}

/* Everything the tests left in the directory, then the directory. */
static int teardown(void **state) {
  (void)state;
  DIR *d = opendir(dir);
  if (!d) return 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlinkat(dirfd(d), e->d_name, 0);
  closedir(d);
  rmdir(dir);
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], CHILD_FLAG) == 0) return run_exit_child();
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(segment_appears_with_a_valid_header),
    cmocka_unit_test(snapshots_advance_published),
    cmocka_unit_test(fixed_temporary_name_is_never_used),
    cmocka_unit_test(removed_segment_is_created_again),
    cmocka_unit_test(file_put_in_its_place_is_never_written),
    cmocka_unit_test(symlink_put_in_its_place_is_not_followed),
    cmocka_unit_test(unreadable_identity_makes_no_segment),
    cmocka_unit_test(refused_open_and_write_warn_once_and_recover),
    cmocka_unit_test(exit_removes_the_segment_it_created),
    cmocka_unit_test(exit_leaves_a_file_put_in_its_place),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

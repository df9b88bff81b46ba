/* test_same_file.c - remove_if_same (same_file.h) racing a writer.
 *
 * allocd judges the file under a segment's name (a squatter, a stale
 * segment) and then removes it; meanwhile the process that owns the name
 * may publish its real segment there, by renaming a new file over it.
 * The real file must never be deleted, and must stay under the name where
 * the collector finds it.
 *
 * Each iteration puts a judged file under the name, makes the real file
 * under a temporary name, and lets a second thread rename the real file
 * over the name while this one calls remove_if_same for the judged file.
 * The rename comes a varying number of spins after the call starts,
 * swept over twice the call's measured duration, so that it lands at
 * every point of the call (before the file is looked at, between looking
 * and unlinking, after) many times over; the times of both are taken, and
 * the test checks that the rename did land inside the call often enough
 * for the check to mean something.  An unlink by name after a check of
 * the name (or without one) deletes the real file in some of those
 * iterations: the real file is held open, and its link count says whether
 * it was deleted.  Real files, a real directory, real threads; no timing
 * is asserted, only what happened to the files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "same_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ITERATIONS 20000
#define MORE_TRIES_NS (60 * 1000000000ll)   /* a loaded machine may need more tries to land enough renames */
#define MIN_OVERLAPS 100   /* renames that must land inside a call */
#define NAME "liballoc.4242"
#define REAL_TMP ".liballoc.4242.0123456789abcdef.tmp"

typedef struct race_s {
  int dirfd;
  atomic_int go, done;        /* the iteration the racer may run, and the one it finished */
  atomic_bool stop;
  int delay;                  /* spins before the rename, set before go */
  int64_t renamed_ns;         /* when the rename returned, read after done */
} race_t;

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void spin(int n) {
  for (volatile int k = 0; k < n; k++) {
  }
}

/* Wait for *v to reach `want` (or stop), yielding now and then: others
 * build on this machine, and a waiting thread must not hold a core. */
static void await(atomic_int *v, int want, atomic_bool *stop) {
  for (unsigned k = 1; atomic_load(v) < want && !(stop && atomic_load(stop)); k++)
    if (k % 1024 == 0) sched_yield();
}

static void *racer(void *arg) {
  race_t *r = arg;
  for (int i = 1;; i++) {
    await(&r->go, i, &r->stop);
    if (atomic_load(&r->stop)) return NULL;
    spin(r->delay);
    if (renameat(r->dirfd, REAL_TMP, r->dirfd, NAME) != 0) abort();
    r->renamed_ns = mono_ns();
    atomic_store(&r->done, i);
  }
}

static ino_t make_file(int dirfd, const char *name, int *keep_fd) {
  int fd = openat(dirfd, name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
  assert_true(fd >= 0);
  struct stat st;
  assert_int_equal(fstat(fd, &st), 0);
  if (keep_fd) *keep_fd = fd;
  else close(fd);
  return st.st_ino;
}

/* Spins that take about as long as `ns`. */
static int spins_for(int64_t ns) {
  int64_t t0 = mono_ns();
  spin(1000000);
  int64_t per_million = mono_ns() - t0;
  return (int)(ns * 1000000 / (per_million > 0 ? per_million : 1));
}

/* How long remove_if_same takes when nothing races it. */
static int64_t call_ns(int dirfd, dev_t dev) {
  int64_t total = 0;
  for (int i = 0; i < 200; i++) {
    ino_t ino = make_file(dirfd, NAME, NULL);
    int64_t t0 = mono_ns();
    assert_true(remove_if_same(dirfd, NAME, dev, ino));
    total += mono_ns() - t0;
  }
  return total / 200;
}

/* Entries of the directory other than "." and "..". */
static int entries(const char *dir) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  for (struct dirent *de; (de = readdir(d));) n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
  closedir(d);
  return n;
}

static void real_file_renamed_over_the_judged_one(void **state) {
  (void)state;
  char dir[] = "/tmp/test_same_file.XXXXXX";
  assert_non_null(mkdtemp(dir));
  race_t r = {.dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  assert_true(r.dirfd >= 0);
  struct stat dst;
  assert_int_equal(fstat(r.dirfd, &dst), 0);
  dev_t dev = dst.st_dev;   /* tmpfs or not, every file here is on the directory's device */
  int sweep = 2 * spins_for(call_ns(r.dirfd, dev)) + 16;
  pthread_t thread;
  assert_int_equal(pthread_create(&thread, NULL, racer, &r), 0);
  int lost = 0, misplaced = 0, overlaps = 0, i;
  int64_t start = mono_ns();
  for (i = 1; i <= ITERATIONS || (overlaps < MIN_OVERLAPS && mono_ns() - start < MORE_TRIES_NS); i++) {
    unlinkat(r.dirfd, NAME, 0);   /* the last iteration's real file */
    if (i % ITERATIONS == 0 && overlaps < MIN_OVERLAPS)   /* the machine's speed changed: measure again */
      sweep = 2 * spins_for(call_ns(r.dirfd, dev)) + 16;
    ino_t judged = make_file(r.dirfd, NAME, NULL);
    int real_fd;
    ino_t real = make_file(r.dirfd, REAL_TMP, &real_fd);
    r.delay = i % sweep;
    int64_t t0 = mono_ns();
    atomic_store(&r.go, i);
    remove_if_same(r.dirfd, NAME, dev, judged);
    int64_t t1 = mono_ns();
    await(&r.done, i, NULL);
    overlaps += r.renamed_ns >= t0 && r.renamed_ns <= t1;
    struct stat st;
    assert_int_equal(fstat(real_fd, &st), 0);
    lost += st.st_nlink == 0;
    misplaced += st.st_nlink != 0 && (fstatat(r.dirfd, NAME, &st, AT_SYMLINK_NOFOLLOW) != 0 || st.st_ino != real);
    close(real_fd);
  }
  atomic_store(&r.stop, true);
  pthread_join(thread, NULL);
  printf("%d iterations, sweep of %d spins: the rename landed inside the call %d times; real file deleted %d "
         "times, not under its name %d times\n",
         i - 1, sweep, overlaps, lost, misplaced);
  assert_true(overlaps >= MIN_OVERLAPS);   /* else the race was not run, and the rest proves nothing */
  assert_int_equal(lost, 0);
  assert_int_equal(misplaced, 0);
  assert_int_equal(entries(dir), 1);   /* the real file, nothing left aside */
  unlinkat(r.dirfd, NAME, 0);
  close(r.dirfd);
  rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(real_file_renamed_over_the_judged_one),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

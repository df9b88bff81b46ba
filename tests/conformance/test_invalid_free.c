/* test_invalid_free.c - what liballoc does with frees that are wrong: a
 * double free (with ALLOC_CONF=detect_double_free:true), a pointer into the
 * middle of a block, a pointer it never handed out.  With
 * abort_on_invalid_free:true the process must abort with a message naming
 * the mistake; without it the free is ignored with one warning and the heap
 * stays sound.  A free that only looks like a double free (a block freed,
 * handed out again and freed again, its old mark still in place) must pass.
 *
 * Each case runs in a child: this program again (/proc/self/exe) with
 * --invalid-free CASE SIZE and its own ALLOC_CONF, so that the options are
 * read at start-up as in a real process, and so that an abort is observed
 * from outside. */
#include "conformance.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the child: one mistake, then proof that the heap still works -------- */

static void *volatile shared_block;

static void *free_shared(void *arg) {
  (void)arg;
  free(shared_block);
  return NULL;
}

static void free_on_other_thread(void *p) {
  pthread_t t;
  shared_block = p;
  if (pthread_create(&t, NULL, free_shared, NULL) != 0) exit(10);
  pthread_join(t, NULL);
}

/* Two blocks of the size, written and checked: a free list that holds a
 * block twice would hand it out twice. */
static int heap_still_sound(size_t size) {
  unsigned char *a = malloc(size), *b = malloc(size);
  if (!a || !b || a == b) return 3;
  fill_pattern(a, size, 1);
  fill_pattern(b, size, 2);
  if (find_pattern_mismatch(a, size, 1) != SIZE_MAX) return 3;
  free(a);
  free(b);
  return 0;
}

static int child_main(const char *what, size_t size) {
  unsigned char *p = malloc(size);
  if (!p) return 11;
  fill_pattern(p, size, 7);
  if (strcmp(what, "twice") == 0) {
    free(p);
    free(p);
  } else if (strcmp(what, "twice_remote") == 0) {
    free_on_other_thread(p);
    free_on_other_thread(p);
  } else if (strcmp(what, "remote_then_owner") == 0) {
    free_on_other_thread(p);
    free(p);
  } else if (strcmp(what, "freed_reused_freed") == 0) {
    free(p);
    unsigned char *q = malloc(size);   /* the same block, its mark still inside */
    if (q != p && size < 1000000) return 4;   /* (a large block may come from elsewhere) */
    free(q);
  } else if (strcmp(what, "interior") == 0) {
    free(p + 16);
    free(p);
  } else if (strcmp(what, "foreign") == 0) {
    static long not_from_malloc[4];
    free(not_from_malloc);
  } else {
    return 12;
  }
  return heap_still_sound(size);
}

/* ---- the parent: run a case, look at how the child ended ----------------- */

typedef struct {
  int status;        /* from waitpid */
  char err[4096];    /* what the child wrote to stderr */
} child_result_t;

static void run_child(const char *what, size_t size, const char *alloc_conf, child_result_t *r) {
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  char size_text[32];
  snprintf(size_text, sizeof size_text, "%zu", size);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    dup2(fds[1], 2);
    close(fds[0]);
    close(fds[1]);
    setenv("ALLOC_CONF", alloc_conf, 1);
    execl("/proc/self/exe", "conformance", "--invalid-free", what, size_text, (char *)NULL);
    _exit(13);
  }
  close(fds[1]);
  size_t n = 0;
  ssize_t got;
  while ((got = read(fds[0], r->err + n, sizeof r->err - 1 - n)) > 0) n += (size_t)got;
  r->err[n] = '\0';
  close(fds[0]);
  assert_int_equal(waitpid(pid, &r->status, 0), pid);
}

static void expect_abort(const char *what, size_t size, const char *alloc_conf, const char *message) {
  child_result_t r;
  run_child(what, size, alloc_conf, &r);
  if (!WIFSIGNALED(r.status) || WTERMSIG(r.status) != SIGABRT)
    fail_msg("%s of %zu bytes with %s: expected an abort, got status %#x; stderr: %s", what, size,
             alloc_conf, r.status, r.err);
  if (!strstr(r.err, message))
    fail_msg("%s of %zu bytes: the message lacks \"%s\": %s", what, size, message, r.err);
}

/* Exit 0 (the heap sound afterwards); `warning` NULL means stderr stays empty. */
static void expect_survival(const char *what, size_t size, const char *alloc_conf, const char *warning) {
  child_result_t r;
  run_child(what, size, alloc_conf, &r);
  if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0)
    fail_msg("%s of %zu bytes with %s: status %#x; stderr: %s", what, size, alloc_conf, r.status, r.err);
  if (warning ? !strstr(r.err, warning) : r.err[0] != '\0')
    fail_msg("%s of %zu bytes with %s: stderr \"%s\", expected %s", what, size, alloc_conf, r.err,
             warning ? warning : "nothing");
}

/* No thread of liballoc's own: the purger's start would allocate between the
 * two frees and could be handed the block freed first (a double free of a
 * block in use again is no longer detectable). */
#define QUIET "telemetry:false,background_thread:false"
#define DETECT "detect_double_free:true," QUIET
#define DETECT_ABORT "detect_double_free:true,abort_on_invalid_free:true," QUIET

/* Sizes: the smallest class (8 bytes normally, 16 when checking), small
 * and bigger slab classes (100000 bytes: four blocks per slab), and a large
 * block (one per slab). */
static const size_t sizes[] = {1, 8, 16, 100, 3000, 100000, 1000000};

static void double_free_aborts(void **state) {
  (void)state;
  conf_need_liballoc();
  for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
    expect_abort("twice", sizes[i], DETECT_ABORT, "double free");
    expect_abort("twice_remote", sizes[i], DETECT_ABORT, "double free");
    expect_abort("remote_then_owner", sizes[i], DETECT_ABORT, "double free");
  }
}

static void double_free_ignored_with_a_warning(void **state) {
  (void)state;
  conf_need_liballoc();
  for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
    expect_survival("twice", sizes[i], DETECT, "ignored");
    expect_survival("twice_remote", sizes[i], DETECT, "ignored");
  }
}

static void block_freed_reused_freed_is_no_double_free(void **state) {
  (void)state;
  conf_need_liballoc();
  for (size_t i = 0; i < ARRAY_LEN(sizes); i++) expect_survival("freed_reused_freed", sizes[i], DETECT_ABORT, NULL);
}

/* A large block (one per slab) is always checked; a small one when checking. */
static void interior_pointer(void **state) {
  (void)state;
  conf_need_liballoc();
  expect_abort("interior", 1000000, "abort_on_invalid_free:true," QUIET, "not a live large block");
  expect_survival("interior", 1000000, QUIET, "ignored");
  expect_abort("interior", 100, DETECT_ABORT, "interior pointer");
  expect_abort("interior", 100000, DETECT_ABORT, "interior pointer");
  expect_survival("interior", 3000, DETECT, "ignored");
}

static void pointer_not_from_malloc_aborts_when_asked(void **state) {
  (void)state;
  conf_need_liballoc();
  expect_abort("foreign", 16, "abort_on_invalid_free:true," QUIET, "not allocated by liballoc");
}

int conf_invalid_free_child(const char *what, const char *size) {
  return child_main(what, strtoull(size, NULL, 10));
}

int conf_run_invalid_free_tests(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(double_free_aborts),
    cmocka_unit_test(double_free_ignored_with_a_warning),
    cmocka_unit_test(block_freed_reused_freed_is_no_double_free),
    cmocka_unit_test(interior_pointer),
    cmocka_unit_test(pointer_not_from_malloc_aborts_when_asked),
  };
  return cmocka_run_group_tests_name("invalid frees", tests, NULL, NULL);
}

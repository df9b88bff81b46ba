/* test_unwind.c - unwind.c's stack walk against GCC's own unwinder
 * (libgcc_s's _Unwind_Backtrace) on the same stacks: built without frame
 * pointers, through every frame shape x86-64 compilers emit (plain rsp
 * frames, rbp frames for variable-length arrays, realigned stacks whose
 * CFA is an expression), across libc (qsort's callback), on the main
 * thread and on a new one.  Both must give the same return addresses,
 * frame for frame, to the end of the stack. */
#include "alloc_internal.h"

#include <dlfcn.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unwind.h>
#include <cmocka.h>

#define MAX_FRAMES 128

typedef struct walks_s {
  uintptr_t ours[MAX_FRAMES], ref[MAX_FRAMES];
  unsigned n_ours, n_ref;
} walks_t;

static _Unwind_Reason_Code ref_frame(struct _Unwind_Context *ctx, void *arg) {
  walks_t *w = arg;
  uintptr_t ip = (uintptr_t)_Unwind_GetIP(ctx);
  if (!ip || w->n_ref == MAX_FRAMES) return _URC_END_OF_STACK;
  w->ref[w->n_ref++] = ip;
  return _URC_NO_REASON;
}

/* Both walks from here; their first frames are this function's two call
 * sites, so they are compared from the second on. */
__attribute__((noinline)) static void take_both(walks_t *w) {
  w->n_ours = la_unwind(w->ours, MAX_FRAMES);
  w->n_ref = 0;
  _Unwind_Backtrace(ref_frame, w);
  __asm__ volatile("" ::: "memory");   /* no tail call */
}

static void assert_same_walks(const walks_t *w, unsigned at_least) {
  assert_true(w->n_ref >= at_least);
  assert_int_equal(w->n_ours, w->n_ref);
  for (unsigned i = 1; i < w->n_ref; i++) {
    if (w->ours[i] != w->ref[i]) fail_msg("frame %u: ours %#lx, libgcc_s's %#lx", i, (unsigned long)w->ours[i], (unsigned long)w->ref[i]);
  }
}

/* Frame shapes, called in turn down a recursion. */
static volatile int sink;
static void descend(walks_t *w, int depth);

__attribute__((noinline)) static void plain_frame(walks_t *w, int depth) {
  volatile char buf[40];
  buf[depth % 40] = 1;
  descend(w, depth - 1);
  sink += buf[0];
}

__attribute__((noinline)) static void vla_frame(walks_t *w, int depth) {
  volatile char buf[depth * 8 + 1];   /* rbp holds the frame */
  buf[0] = 1;
  descend(w, depth - 1);
  sink += buf[0];
}

/* An aligned local and a variable-length array: GCC realigns through r10
 * (DRAP), and the CFA is the expression *(rbp - 8). */
__attribute__((noinline)) static void realigned_frame(walks_t *w, int depth) {
  volatile char buf[64] __attribute__((aligned(64)));
  volatile char more[depth + 1];
  buf[depth % 64] = 1;
  more[0] = 2;
  descend(w, depth - 1);
  sink += buf[1] + more[0];
}

static walks_t *sorting;   /* qsort's comparator takes the walks once */
static int compare_and_walk(const void *a, const void *b) {
  if (sorting) {
    descend(sorting, 3);
    sorting = NULL;
  }
  return *(const int *)a - *(const int *)b;
}

__attribute__((noinline)) static void through_libc(walks_t *w, int depth) {
  (void)depth;
  int v[8] = {5, 3, 7, 1, 8, 2, 6, 4};
  sorting = w;
  qsort(v, 8, sizeof v[0], compare_and_walk);
  sink += v[0];
}

static void descend(walks_t *w, int depth) {
  if (depth <= 0) {
    take_both(w);
    return;
  }
  switch (depth % 3) {
  case 0: plain_frame(w, depth); break;
  case 1: vla_frame(w, depth); break;
  default: realigned_frame(w, depth); break;
  }
  sink++;
}

static void same_stack_as_libgcc(void **state) {
  (void)state;
  walks_t w;
  descend(&w, 30);
  assert_same_walks(&w, 30);
}

static void same_stack_through_libc(void **state) {
  (void)state;
  walks_t w = {0};
  through_libc(&w, 0);
  assert_true(w.n_ref > 0);
  assert_same_walks(&w, 6);
}

static void *walk_in_thread(void *arg) {
  descend(arg, 12);
  return NULL;
}

static void same_stack_on_another_thread(void **state) {
  (void)state;
  walks_t w;
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, walk_in_thread, &w), 0);
  pthread_join(t, NULL);
  assert_same_walks(&w, 12);
}

/* A return address's rules are kept (unwind.c's rule_cache), but not past
 * its object: a library unloaded, and another loaded at its place whose
 * code at the same address keeps a bigger frame, is walked by its own
 * rules.  (If the loader put the second elsewhere, nothing is shown.) */
static walks_t *lib_walks;
static void walk_from_lib(void) { take_both(lib_walks); }

typedef void (*lib_call_fn)(void (*)(void));

static lib_call_fn open_lib_call(const char *path, void **handle) {
  *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  assert_non_null(*handle);
  lib_call_fn call = (lib_call_fn)dlsym(*handle, "lib_call");
  assert_non_null(call);
  return call;
}

static void unloaded_objects_leave_no_rules(void **state) {
  (void)state;
  walks_t w;
  lib_walks = &w;
  void *a, *b;
  lib_call_fn call = open_lib_call(UNWIND_FRAME24, &a);
  call(walk_from_lib);
  assert_same_walks(&w, 4);
  uintptr_t where = (uintptr_t)call;
  assert_int_equal(dlclose(a), 0);
  call = open_lib_call(UNWIND_FRAME40, &b);
  if ((uintptr_t)call != where) {
    dlclose(b);
    skip();
  }
  call(walk_from_lib);
  assert_same_walks(&w, 4);
  dlclose(b);
}

/* A walk is cut at `max` frames. */
static void walk_bounded_by_max(void **state) {
  (void)state;
  walks_t w;
  descend(&w, 20);
  uintptr_t few[4];
  assert_int_equal(la_unwind(few, 4), 4);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(same_stack_as_libgcc),
      cmocka_unit_test(same_stack_through_libc),
      cmocka_unit_test(same_stack_on_another_thread),
      cmocka_unit_test(unloaded_objects_leave_no_rules),
      cmocka_unit_test(walk_bounded_by_max),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* demo_service.c - a long-running program with an allocation pattern worth
 * watching, from call sites worth profiling: it fills its heap with one
 * size range, frees most of it at random (fragmentation), idles (decay
 * returns the free pages), then moves to another size range, forever.
 * Each phase's blocks come from a function of their own, so the heap
 * profile (scripts/demo runs the first copy with prof:true) has something
 * to say:
 *   cache_entry_new     small blocks, 15% of which live on: they pin their
 *                       slabs (pinned_space);
 *   render_buffer_new   medium blocks, the same;
 *   intern_string       string-sized blocks, the same;
 *   format_response     a temporary per slot, freed at once (alloc_space);
 *   audit_log_append    a slow leak: 256 KiB more every phase, up to 64 MiB
 *                       (inuse_space grows from one profile to the next).
 * scripts/demo runs it with liballoc preloaded beside allocd.
 * usage: demo_service [seed] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A call site as its own frame, under its own name (GCC would otherwise
 * clone it as name.constprop.0). */
#if defined(__GNUC__) && !defined(__clang__)
#define NOINLINE __attribute__((noinline, noclone))
#else
#define NOINLINE __attribute__((noinline))
#endif

enum { SLOTS = 200000 };
enum { AUDIT_RECORD = 512, AUDIT_PER_PHASE = 512, AUDIT_MAX = 128 * 1024 };   /* 256 KiB a phase, 64 MiB */

typedef void *make_fn(size_t size, unsigned tag);

/* The block's first bytes are written, as a program would: the pages are
 * resident and the call is not a tail call (the caller's frame stays).
 * Each call site fills with a byte of its own, so that no two of them
 * compile to the same code (which the compiler would fold into one). */
static inline __attribute__((always_inline)) void *filled(size_t size, unsigned tag) {
  void *p = malloc(size);
  if (p) memset(p, (int)tag, size < 64 ? size : 64);
  return p;
}

static NOINLINE void *cache_entry_new(size_t size, unsigned tag) { return filled(size, tag | 1); }
static NOINLINE void *render_buffer_new(size_t size, unsigned tag) { return filled(size, tag | 2); }
static NOINLINE void *intern_string(size_t size, unsigned tag) { return filled(size, tag | 4); }

/* A response built and sent: allocated and freed at once. */
static NOINLINE void format_response(size_t size, unsigned tag) {
  char *volatile buf = filled(size, tag | 8);
  free(buf);
}

/* Records nobody frees: the leak to find. */
struct audit_record {
  struct audit_record *next;
  char text[AUDIT_RECORD - sizeof(void *)];
};
static struct audit_record *audit_log;
static unsigned audit_count;

static NOINLINE void audit_log_append(unsigned tag) {
  for (int i = 0; i < AUDIT_PER_PHASE && audit_count < AUDIT_MAX; i++, audit_count++) {
    struct audit_record *r = malloc(sizeof *r);
    if (!r) return;
    snprintf(r->text, sizeof r->text, "phase %u record %u", tag, audit_count);
    r->next = audit_log;
    audit_log = r;
  }
}

static NOINLINE void phase(void **slot, unsigned *seed, size_t lo, size_t hi, const char *name, make_fn *make) {
  static unsigned number;
  printf("demo_service %d: %s (%zu-%zu bytes)\n", (int)getpid(), name, lo, hi);
  fflush(stdout);
  for (int i = 0; i < SLOTS; i++) {   /* fill */
    free(slot[i]);
    size_t size = lo + (size_t)rand_r(seed) % (hi - lo + 1);
    slot[i] = make(size, (unsigned)i);
    format_response(512 + size % 1024, (unsigned)i);
  }
  audit_log_append(++number);
  sleep(5);
  for (int i = 0; i < SLOTS; i++)     /* free 85% at random: the survivors pin their pages */
    if (rand_r(seed) % 100 < 85) {
      free(slot[i]);
      slot[i] = NULL;
    }
  sleep(15);                           /* idle: decay gives the free pages back */
}

int main(int argc, char **argv) {
  unsigned seed = argc > 1 ? (unsigned)atoi(argv[1]) : (unsigned)time(NULL);
  void **slot = calloc(SLOTS, sizeof *slot);
  if (!slot) return 1;
  for (;;) {
    phase(slot, &seed, 16, 256, "small objects", cache_entry_new);
    phase(slot, &seed, 1024, 8192, "medium objects", render_buffer_new);
    phase(slot, &seed, 200, 600, "strings", intern_string);
  }
}

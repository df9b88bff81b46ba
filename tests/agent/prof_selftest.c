/* prof_selftest - real addresses for allocd's symbolizer and pprof tests,
 * before liballoc writes profiles itself: built like a distribution binary
 * (-O2 -fomit-frame-pointer, with -g), it prints on one JSON line its
 * modules as dl_iterate_phdr sees them (the profile area's module records)
 * and, for three known call sites, the return addresses a profiler would
 * record there (innermost first) and the line of each call; then it waits
 * until its stdin closes.  The test writes a profile area from these into
 * a segment it forges for this process (tests/agent/test_profile.py).
 *
 * Not linked with liballoc, and not preloaded with it. */
#define _GNU_SOURCE
#include <elf.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

typedef struct site_s {
  const char *name;
  void *frames[2];   /* the return address into the function, then into main */
  int lines[2];      /* the lines of those two calls */
} site_t;

static site_t sites[4];
static int inlined_call_line;
static volatile int sink;

/* Where the allocator would be called from: its return address is inside
 * the caller, on the caller's line. */
static NOINLINE void *allocation_point(void) {
  void *ret = __builtin_return_address(0);
  __asm__ volatile("" ::: "memory");
  return ret;
}

static NOINLINE void keep_64mib(site_t *s) {
  s->frames[0] = allocation_point(); s->lines[0] = __LINE__;
  s->frames[1] = __builtin_return_address(0);
  sink++;
}

static NOINLINE void churn(site_t *s) {
  s->frames[0] = allocation_point(); s->lines[0] = __LINE__;
  s->frames[1] = __builtin_return_address(0);
  sink++;
}

static NOINLINE void fill_small(site_t *s) {
  s->frames[0] = allocation_point(); s->lines[0] = __LINE__;
  s->frames[1] = __builtin_return_address(0);
  sink++;
}

/* A call site inside code inlined into its caller: a symbolizer reports
 * the inlined function and line, then its caller at the line of the call. */
static inline __attribute__((always_inline)) void inlined_helper(site_t *s) {
  s->frames[0] = allocation_point(); s->lines[0] = __LINE__;
}

static NOINLINE void calls_inlined(site_t *s) {
  inlined_helper(s); inlined_call_line = __LINE__;
  s->frames[1] = __builtin_return_address(0);
  sink++;
}

static int module(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  int *first = arg;
  uint64_t start = UINT64_MAX, end = 0, offset = 0;
  const unsigned char *id = NULL;
  unsigned idlen = 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type == PT_LOAD) {
      uint64_t s = info->dlpi_addr + ph->p_vaddr, e = s + ph->p_memsz;
      if (s < start) start = s, offset = ph->p_offset;
      if (e > end) end = e;
    } else if (ph->p_type == PT_NOTE) {
      const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr), *pe = p + ph->p_memsz;
      while (p + sizeof(ElfW(Nhdr)) <= pe) {
        const ElfW(Nhdr) *n = (const ElfW(Nhdr) *)p;
        const char *name = p + sizeof *n, *desc = name + ((n->n_namesz + 3) & ~3u);
        if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 && memcmp(name, "GNU", 4) == 0 && n->n_descsz <= 32)
          id = (const unsigned char *)desc, idlen = n->n_descsz;
        p = desc + ((n->n_descsz + 3) & ~3u);
      }
    }
  }
  if (start == UINT64_MAX) return 0;
  printf("%s{\"path\":\"%s\",\"start\":%llu,\"end\":%llu,\"offset\":%llu,\"bias\":%llu,\"main\":%d,\"build_id\":\"",
         *first ? "" : ",", info->dlpi_name, (unsigned long long)start, (unsigned long long)end,
         (unsigned long long)offset, (unsigned long long)info->dlpi_addr, *first);
  for (unsigned i = 0; i < idlen; i++) printf("%02x", id[i]);
  printf("\"}");
  *first = 0;
  return 0;
}

int main(void) {
  sites[0].name = "keep_64mib";
  keep_64mib(&sites[0]); sites[0].lines[1] = __LINE__;
  sites[1].name = "churn";
  churn(&sites[1]); sites[1].lines[1] = __LINE__;
  sites[2].name = "fill_small";
  fill_small(&sites[2]); sites[2].lines[1] = __LINE__;
  sites[3].name = "inlined_helper";
  calls_inlined(&sites[3]); sites[3].lines[1] = __LINE__;
  printf("{\"pid\":%d,\"modules\":[", (int)getpid());
  int first = 1;
  dl_iterate_phdr(module, &first);
  printf("],\"inlined_call_line\":%d,\"sites\":[", inlined_call_line);
  for (int i = 0; i < 4; i++)
    printf("%s{\"name\":\"%s\",\"frames\":[%llu,%llu],\"lines\":[%d,%d]}", i ? "," : "", sites[i].name,
           (unsigned long long)(uintptr_t)sites[i].frames[0], (unsigned long long)(uintptr_t)sites[i].frames[1],
           sites[i].lines[0], sites[i].lines[1]);
  printf("]}\n");
  fflush(stdout);
  char buf[64];
  while (read(0, buf, sizeof buf) > 0) {
  }
  return 0;
}

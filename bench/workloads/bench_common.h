/* bench_common.h - helpers shared by the benchmark workloads in this folder.
 *
 * The workloads are plain programs that use only the standard malloc API, so
 * that bench/run can run the very same binary under every allocator via
 * LD_PRELOAD.  They must do identical work under every allocator and prove
 * that they did: so randomness is seeded (splitmix64, not rand(), whose
 * sequence depends on the libc), and every object carries marks that are
 * checked when it is freed and folded into a checksum that the workload
 * prints.  A corrupted or lost object changes the checksum or stops the run.
 * stdout is that proof and must be the same under every allocator; anything
 * that may differ (memory a workload measures about itself) goes to stderr
 * as "metric NAME VALUE" lines, which bench/run collects.  No timing here:
 * bench/run measures from outside.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Page size in KiB, for turning /proc/self/statm's pages into KiB. */
static inline long sysconf_page_kib(void)
{
    return sysconf(_SC_PAGESIZE) / 1024;
}

/* ---- errors and arguments ---------------------------------------------- */

__attribute__((noreturn, format(printf, 1, 2)))
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

/* A decimal count in [min, max] from argv, or die naming the argument. */
static inline uint64_t parse_count(const char *text, const char *name, uint64_t min, uint64_t max)
{
    char *end;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno || end == text || *end || value < min || value > max)
        die("%s must be an integer in [%llu, %llu], got '%s'", name,
            (unsigned long long)min, (unsigned long long)max, text);
    return value;
}

/* ---- deterministic randomness (splitmix64) ----------------------------- */

struct rng {
    uint64_t state;
};

static inline uint64_t rng_next(struct rng *rng)
{
    uint64_t z = (rng->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, n); the modulo bias is irrelevant for a benchmark. */
static inline uint64_t rng_below(struct rng *rng, uint64_t n)
{
    return rng_next(rng) % n;
}

static inline size_t rng_size_between(struct rng *rng, size_t lo, size_t hi)
{
    return lo + (size_t)rng_below(rng, hi - lo + 1);
}

/* ---- object marks -------------------------------------------------------
 * An object of `size` >= 8 bytes holds its unique tag in its first 8 bytes
 * and, when size >= 16, a value derived from tag and size in its last 8.
 * Writing only the ends keeps the benchmark about the allocator rather than
 * about memset, while still touching the first and the last cache line.   */

#define MIN_OBJECT_SIZE 8

static inline uint64_t tail_mark(uint64_t tag, size_t size)
{
    return ~tag ^ ((uint64_t)size * 0x9e3779b97f4a7c15ull);
}

static inline void mark_object(void *p, size_t size, uint64_t tag)
{
    memcpy(p, &tag, sizeof tag);
    if (size >= 16) {
        uint64_t tail = tail_mark(tag, size);
        memcpy((char *)p + size - 8, &tail, sizeof tail);
    }
}

/* Die unless p still holds the marks written for (tag, size). */
static inline void check_object(const void *p, size_t size, uint64_t tag, const char *where)
{
    uint64_t head, tail;
    memcpy(&head, p, sizeof head);
    if (head != tag)
        die("%s: object %p of %zu bytes lost its head mark (tag %#llx, found %#llx)",
            where, p, size, (unsigned long long)tag, (unsigned long long)head);
    if (size >= 16) {
        memcpy(&tail, (const char *)p + size - 8, sizeof tail);
        if (tail != tail_mark(tag, size))
            die("%s: object %p of %zu bytes lost its tail mark (tag %#llx)",
                where, p, size, (unsigned long long)tag);
    }
}

/* What a freed object adds to the checksum.  Sums of these do not depend on
 * the order of frees, so a multi-threaded run has a reproducible checksum. */
static inline uint64_t object_value(uint64_t tag, size_t size)
{
    uint64_t x = tag * 0xff51afd7ed558ccdull + size;
    return x ^ (x >> 29);
}

static inline void *checked_malloc(size_t size)
{
    void *p = malloc(size);
    if (!p)
        die("malloc(%zu) failed", size);
    return p;
}

/* ---- memory the process holds ------------------------------------------
 * Read from /proc/self so that the number is the kernel's view, the same for
 * every allocator, not what an allocator says about itself.              */

/* Resident set size now, in KiB (/proc/self/statm's second field). */
static inline uint64_t current_rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size_pages = 0, resident_pages = 0;
    if (!f || fscanf(f, "%llu %llu", &size_pages, &resident_pages) != 2)
        die("cannot read /proc/self/statm");
    fclose(f);
    return resident_pages * (uint64_t)sysconf_page_kib();
}

/* Peak resident set size so far, in KiB (VmHWM in /proc/self/status). */
static inline uint64_t peak_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    unsigned long long kib = 0;
    if (!f)
        die("cannot read /proc/self/status");
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %llu kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* One "metric NAME VALUE" line on stderr: a number bench/run records beside
 * the wall time and peak RSS it measures itself (see the header comment). */
static inline void report_metric(const char *name, double value)
{
    fprintf(stderr, "metric %s %.6g\n", name, value);
}

/* The CPU time (user + system) of the whole process so far, as a "metric
 * cpu_s" line.  On a machine shared with other jobs the wall time bench/run
 * measures includes waiting for a CPU; this does not. */
static inline void report_cpu_seconds(void)
{
    struct rusage usage;
    if (getrusage(RUSAGE_SELF, &usage))
        die("getrusage failed");
    double user = usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6;
    double sys = usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
    report_metric("cpu_s", user + sys);
}

#endif /* BENCH_COMMON_H */

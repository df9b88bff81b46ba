/* hugereuse.c - memory freed as blocks of one size, reused for another.
 *
 * Usage: hugereuse [TOTAL_MIB [BIG_KIB [SMALL_BYTES [ORDER]]]]
 *        (default 300 4096 64 big-first)
 *
 * A program that first works on big buffers (a loader, a decompressor, a
 * sort) and, once they are freed, builds a data structure of small nodes
 * (ORDER big-first), or the other way round (small-first):
 *   1. allocate TOTAL_MIB MiB in blocks of BIG_KIB KiB, writing one byte in
 *      every 4 KiB page (as filling a buffer would), or in blocks of
 *      SMALL_BYTES bytes;
 *   2. free them all;
 *   3. allocate TOTAL_MIB MiB in blocks of the other size.
 * An allocator that can hand the memory freed in phase 2 to the blocks of
 * phase 3 (or returns it before mapping more) peaks near TOTAL_MIB; one
 * that keeps freed memory for the size that freed it peaks near twice
 * that.  The small blocks are chained through their first word, so no
 * pointer table of this program's own adds to the RSS.  Reports, as
 * "metric" lines on stderr:
 *   peak_rss_mib    the high-water mark (VmHWM),
 *   first_rss_mib   resident memory after phase 1,
 *   freed_rss_mib   resident memory after phase 2,
 *   second_rss_mib  resident memory after phase 3.
 * With HUGEREUSE_STATS set, the allocator's malloc_stats() report (glibc's
 * extension, which liballoc, jemalloc and tcmalloc also provide) goes to
 * stderr after each phase: where the memory sits at each step.
 * stdout has the block counts and a checksum; no timing is done here.
 */
#include "bench_common.h"

#include <malloc.h>
#include <stdbool.h>

#define TOUCH_STRIDE 4096

static double mib(uint64_t kib) { return (double)kib / 1024.0; }

static void phase_done(const char *metric)
{
    report_metric(metric, mib(current_rss_kib()));
    if (getenv("HUGEREUSE_STATS")) {
        fflush(stderr);
        malloc_stats();
    }
}

struct node {
    struct node *next;
};

/* count small blocks of `small` bytes, chained, the tail mark of block i
 * in its last 8 bytes */
static struct node *alloc_small(uint64_t count, uint64_t small)
{
    struct node *head = NULL;
    for (uint64_t i = 0; i < count; i++) {
        struct node *n = checked_malloc(small);
        n->next = head;
        uint64_t tail = tail_mark(i, small);
        memcpy((char *)n + small - 8, &tail, sizeof tail);
        head = n;
    }
    return head;
}

static uint64_t free_small(struct node *head, uint64_t count, uint64_t small)
{
    uint64_t sum = 0, i = count;
    while (head) {
        struct node *next = head->next;
        uint64_t tail;
        memcpy(&tail, (char *)head + small - 8, sizeof tail);
        if (i == 0 || tail != tail_mark(--i, small))
            die("small block %llu lost its mark", (unsigned long long)i);
        sum += object_value(i, small);
        free(head);
        head = next;
    }
    if (i != 0)
        die("%llu small blocks lost", (unsigned long long)i);
    return sum;
}

/* count big blocks of `big` bytes, every page written */
static unsigned char **alloc_big(size_t count, uint64_t big)
{
    unsigned char **bigs = checked_malloc(count * sizeof *bigs);
    for (size_t i = 0; i < count; i++) {
        bigs[i] = checked_malloc(big);
        for (uint64_t off = 0; off < big; off += TOUCH_STRIDE)
            bigs[i][off] = (unsigned char)(i + off / TOUCH_STRIDE);
        mark_object(bigs[i], big, i);
    }
    return bigs;
}

static uint64_t free_big(unsigned char **bigs, size_t count, uint64_t big)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < count; i++) {
        check_object(bigs[i], big, i, "big");
        sum += object_value(i, big);
        free(bigs[i]);
    }
    free(bigs);
    return sum;
}

int main(int argc, char **argv)
{
    if (argc > 5 || (argc == 5 && strcmp(argv[4], "big-first") && strcmp(argv[4], "small-first")))
        die("usage: hugereuse [TOTAL_MIB [BIG_KIB [SMALL_BYTES [big-first|small-first]]]]");
    uint64_t total_mib = argc > 1 ? parse_count(argv[1], "TOTAL_MIB", 1, 1 << 20) : 300;
    uint64_t big_kib = argc > 2 ? parse_count(argv[2], "BIG_KIB", 4, 1 << 20) : 4096;
    uint64_t small = argc > 3 ? parse_count(argv[3], "SMALL_BYTES", 16, 1 << 20) : 64;
    bool small_first = argc > 4 && !strcmp(argv[4], "small-first");
    uint64_t total = total_mib << 20, big = big_kib << 10;
    size_t nbig = (size_t)((total + big - 1) / big);
    uint64_t nsmall = total / small, sum = 0;

    if (small_first) {
        struct node *head = alloc_small(nsmall, small);
        phase_done("first_rss_mib");
        sum += free_small(head, nsmall, small);
        phase_done("freed_rss_mib");
        unsigned char **bigs = alloc_big(nbig, big);
        phase_done("second_rss_mib");
        report_metric("peak_rss_mib", mib(peak_rss_kib()));
        sum += free_big(bigs, nbig, big);
    } else {
        unsigned char **bigs = alloc_big(nbig, big);
        phase_done("first_rss_mib");
        sum += free_big(bigs, nbig, big);
        phase_done("freed_rss_mib");
        struct node *head = alloc_small(nsmall, small);
        phase_done("second_rss_mib");
        report_metric("peak_rss_mib", mib(peak_rss_kib()));
        sum += free_small(head, nsmall, small);
    }
    printf("big %zu small %llu checksum %016llx\n", nbig, (unsigned long long)nsmall,
           (unsigned long long)sum);
    return 0;
}

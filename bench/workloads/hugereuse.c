/* hugereuse.c - memory freed as huge blocks, reused for small ones.
 *
 * Usage: hugereuse [TOTAL_MIB [BIG_KIB [SMALL_BYTES]]]   (default 300 4096 64)
 *
 * A program that first works on big buffers (a loader, a decompressor, a
 * sort) and, once they are freed, builds a data structure of small nodes:
 *   1. big:   allocate TOTAL_MIB MiB in blocks of BIG_KIB KiB, writing one
 *             byte in every 4 KiB page (as filling a buffer would);
 *   2. free:  free every big block;
 *   3. small: allocate TOTAL_MIB MiB in blocks of SMALL_BYTES bytes.
 * An allocator that can hand the memory freed in phase 2 to the small
 * blocks of phase 3 (or returns it before mapping more) peaks near
 * TOTAL_MIB; one that keeps freed big blocks for big blocks only peaks
 * near twice that.  The small blocks are chained through their first word,
 * so no pointer table of this program's own adds to the RSS.  Reports, as
 * "metric" lines on stderr:
 *   peak_rss_mib    the high-water mark (VmHWM),
 *   big_rss_mib     resident memory after phase 1,
 *   freed_rss_mib   resident memory after phase 2,
 *   small_rss_mib   resident memory after phase 3.
 * With HUGEREUSE_STATS set, the allocator's malloc_stats() report (glibc's
 * extension, which liballoc, jemalloc and tcmalloc also provide) goes to
 * stderr after each phase: where the memory sits at each step.
 * stdout has the block counts and a checksum; no timing is done here.
 */
#include "bench_common.h"

#include <malloc.h>

#define TOUCH_STRIDE 4096

struct node {
    struct node *next;
};

static double mib(uint64_t kib) { return (double)kib / 1024.0; }

static void phase_done(const char *metric)
{
    report_metric(metric, mib(current_rss_kib()));
    if (getenv("HUGEREUSE_STATS")) {
        fflush(stderr);
        malloc_stats();
    }
}

int main(int argc, char **argv)
{
    if (argc > 4)
        die("usage: hugereuse [TOTAL_MIB [BIG_KIB [SMALL_BYTES]]]");
    uint64_t total_mib = argc > 1 ? parse_count(argv[1], "TOTAL_MIB", 1, 1 << 20) : 300;
    uint64_t big_kib = argc > 2 ? parse_count(argv[2], "BIG_KIB", 4, 1 << 20) : 4096;
    uint64_t small = argc > 3 ? parse_count(argv[3], "SMALL_BYTES", 16, 1 << 20) : 64;
    uint64_t total = total_mib << 20, big = big_kib << 10;

    /* 1. big blocks, every page written */
    size_t nbig = (size_t)((total + big - 1) / big);
    unsigned char **bigs = checked_malloc(nbig * sizeof *bigs);
    uint64_t sum = 0;
    for (size_t i = 0; i < nbig; i++) {
        bigs[i] = checked_malloc(big);
        for (uint64_t off = 0; off < big; off += TOUCH_STRIDE)
            bigs[i][off] = (unsigned char)(i + off / TOUCH_STRIDE);
        mark_object(bigs[i], big, i);
    }
    phase_done("big_rss_mib");

    /* 2. all freed */
    for (size_t i = 0; i < nbig; i++) {
        check_object(bigs[i], big, i, "big");
        sum += object_value(i, big);
        free(bigs[i]);
    }
    free(bigs);
    phase_done("freed_rss_mib");

    /* 3. small blocks, chained; the tail mark is in the last 8 bytes */
    uint64_t nsmall = total / small;
    struct node *head = NULL;
    for (uint64_t i = 0; i < nsmall; i++) {
        struct node *n = checked_malloc(small);
        n->next = head;
        uint64_t tail = tail_mark(i, small);
        memcpy((char *)n + small - 8, &tail, sizeof tail);
        head = n;
    }
    phase_done("small_rss_mib");
    report_metric("peak_rss_mib", mib(peak_rss_kib()));

    uint64_t seen = 0;
    for (uint64_t i = nsmall; head; seen++) {
        struct node *next = head->next;
        uint64_t tail;
        memcpy(&tail, (char *)head + small - 8, sizeof tail);
        if (tail != tail_mark(--i, small))
            die("small block %llu lost its mark", (unsigned long long)i);
        sum += object_value(i, small);
        free(head);
        head = next;
    }
    printf("big %zu small %llu checksum %016llx\n", nbig, (unsigned long long)seen,
           (unsigned long long)sum);
    return 0;
}

/* fragment.c - fragmentation after a phase change.
 *
 * Usage: fragment LIVE_MIB [SMALL_MIN SMALL_MAX LARGE_MIN LARGE_MAX]
 *
 * A cache or a parser that first fills memory with small objects and later,
 * after most of them died, switches to larger ones:
 *   1. fill:   allocate objects of 16..256 B until LIVE_MIB MiB are live;
 *   2. thin:   free 90% of them, chosen at random - the survivors are
 *              scattered over all the memory phase 1 used;
 *   3. switch: allocate objects of 320 B .. 4 KiB until as many bytes are
 *              live again as after phase 1.
 * The four sizes may be given (bench/run's phasechange: 64..128 B, then
 * 1..4 KiB, the probe of issue 21: no small size class is then near a
 * large one).
 * An allocator that can reuse the holes of phase 2 for the sizes of phase
 * 3 (or return their pages and get them back) ends near LIVE_MIB of RSS;
 * one that keeps small-object memory for small objects only ends near
 * twice that.  The program reports, as "metric" lines on stderr:
 *   live_mib        bytes requested and not freed at the end of phase 3
 *                   (objects plus this program's own pointer tables),
 *   rss_mib         resident memory then (/proc/self/statm),
 *   rss_over_live   their ratio: 1.0 would be perfect,
 *   thinned_rss_mib resident memory right after phase 2,
 *   peak_rss_mib    the high-water mark (VmHWM).
 * stdout has the object count and checksum; no timing is done here.
 */
#include "bench_common.h"
#include "bench_mesh.h"
#include "bench_probe.h"

#define SURVIVOR_PERCENT 10

/* The phases' size ranges: 16..256 B and 320 B..4 KiB unless given. */
static size_t small_min = 16, small_max = 256, large_min = 320, large_max = 4096;

struct object {
    void *ptr;
    uint32_t size;
    uint32_t alive;
};

struct heap_state {
    struct rng rng;
    uint64_t live_bytes;
    uint64_t tag;
    uint64_t checksum;
};

static void new_object(struct heap_state *h, struct object *o, size_t lo, size_t hi)
{
    o->size = (uint32_t)rng_size_between(&h->rng, lo, hi);
    o->ptr = checked_malloc(o->size);
    o->alive = 1;
    memset(o->ptr, (int)(h->tag & 0xff), o->size);  /* every page resident, as used memory is */
    mark_object(o->ptr, o->size, ++h->tag);
    h->live_bytes += o->size;
}

static void drop_object(struct heap_state *h, struct object *o)
{
    uint64_t tag;
    memcpy(&tag, o->ptr, sizeof tag);
    check_object(o->ptr, o->size, tag, "fragment");
    h->checksum += object_value(tag, o->size);
    h->live_bytes -= o->size;
    free(o->ptr);
    o->alive = 0;
}

/* Allocate objects of [lo, hi] bytes until `target` bytes are live or the
 * table is full; returns the number allocated. */
static size_t fill_until(struct heap_state *h, struct object *table, size_t capacity,
                         size_t lo, size_t hi, uint64_t target)
{
    size_t n = 0;
    while (n < capacity && h->live_bytes < target)
        new_object(h, &table[n++], lo, hi);
    return n;
}

static void drop_all(struct heap_state *h, struct object *table, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (table[i].alive)
            drop_object(h, &table[i]);
}

/* BENCH_MESH_ESTIMATE: what meshing could give back of the thinned pages. */
static void estimate_meshing(const struct object *table, size_t n)
{
    if (!mesh_estimate_wanted())
        return;
    void **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    if (!ptrs)
        die("out of memory");
    for (size_t i = 0; i < n; i++)
        ptrs[i] = table[i].alive ? table[i].ptr : NULL;
    mesh_estimate(ptrs, n);
    free(ptrs);
}

static double mib(uint64_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 6) {
        fprintf(stderr, "usage: %s LIVE_MIB [SMALL_MIN SMALL_MAX LARGE_MIN LARGE_MAX]\n", argv[0]);
        return 2;
    }
    uint64_t target = parse_count(argv[1], "LIVE_MIB", 1, 1u << 16) << 20;
    if (argc == 6) {
        small_min = parse_count(argv[2], "SMALL_MIN", 16, 1u << 20);
        small_max = parse_count(argv[3], "SMALL_MAX", small_min, 1u << 20);
        large_min = parse_count(argv[4], "LARGE_MIN", 16, 1u << 20);
        large_max = parse_count(argv[5], "LARGE_MAX", large_min, 1u << 20);
    }
    struct heap_state h = { .rng = { 0xf4a6ull } };

    /* Tables sized for the worst case of each phase.  calloc'ed pages that
     * are never written stay unbacked, so only the used entries count as
     * live (below). */
    size_t small_capacity = target / small_min + 1, large_capacity = target / large_min + 1;
    struct object *small = calloc(small_capacity, sizeof *small);
    struct object *large = calloc(large_capacity, sizeof *large);
    if (!small || !large)
        die("out of memory");

    size_t small_count = fill_until(&h, small, small_capacity, small_min, small_max, target);
    for (size_t i = 0; i < small_count; i++)
        if (rng_below(&h.rng, 100) >= SURVIVOR_PERCENT)
            drop_object(&h, &small[i]);
    uint64_t thinned_rss_kib = current_rss_kib();
    stats_probe("thinned");
    estimate_meshing(small, small_count);
    size_t large_count = fill_until(&h, large, large_capacity, large_min, large_max, target);
    stats_probe("switched");

    uint64_t table_bytes = (small_count + large_count) * sizeof *small;
    uint64_t live = h.live_bytes + table_bytes, rss_kib = current_rss_kib();
    report_metric("live_mib", mib(live));
    report_metric("rss_mib", rss_kib / 1024.0);
    report_metric("rss_over_live", (double)rss_kib * 1024.0 / (double)live);
    report_metric("thinned_rss_mib", thinned_rss_kib / 1024.0);
    report_metric("peak_rss_mib", peak_rss_kib() / 1024.0);

    drop_all(&h, small, small_count);
    drop_all(&h, large, large_count);
    free(small);
    free(large);
    printf("fragment small=%zu large=%zu checksum=%016llx\n", small_count, large_count,
           (unsigned long long)h.checksum);
    return 0;
}

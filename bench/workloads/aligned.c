/* aligned.c - aligned allocations through the three standard entry points.
 *
 * Usage: aligned OPS [SLOTS]
 *
 * SIMD buffers, cache-line-aligned structures, page-aligned I/O buffers and
 * the odd 64 KiB-aligned region: each of OPS steps replaces the block in a
 * random one of SLOTS (default 4096) slots by a new one from
 * posix_memalign, aligned_alloc or memalign (in turn), with an alignment
 * drawn from the mix below and a size of 8 B .. 16 KiB rounded up to a
 * multiple of the alignment (aligned_alloc's rule).  Every block is checked
 * for its alignment and its marks.  Allocators that serve small alignments
 * from naturally aligned size classes do this almost as fast as malloc;
 * those that over-allocate and trim pay in time and RSS.
 *
 * Prints the step count and a checksum; measures no time itself.
 */
#include <malloc.h>

#include "bench_common.h"

#define DEFAULT_SLOTS 4096

struct slot {
    void *ptr;
    size_t size;
    uint64_t tag;
};

/* Percent of requests per alignment: mostly cache lines and SIMD widths. */
static const struct {
    size_t alignment;
    unsigned percent;
} alignment_mix[] = {
    { 16, 15 }, { 32, 15 }, { 64, 35 }, { 128, 10 }, { 256, 5 },
    { 1024, 5 }, { 4096, 14 }, { 65536, 1 },
};

static size_t pick_alignment(struct rng *rng)
{
    unsigned r = (unsigned)rng_below(rng, 100), sum = 0;
    for (size_t i = 0; i < sizeof alignment_mix / sizeof alignment_mix[0]; i++) {
        sum += alignment_mix[i].percent;
        if (r < sum)
            return alignment_mix[i].alignment;
    }
    return 64;
}

static const char *const entry_names[] = { "posix_memalign", "aligned_alloc", "memalign" };

static void *aligned_block(uint64_t step, size_t alignment, size_t size)
{
    void *p = NULL;
    unsigned entry = (unsigned)(step % 3);
    switch (entry) {
    case 0:
        if (posix_memalign(&p, alignment, size) != 0)
            p = NULL;
        break;
    case 1:
        p = aligned_alloc(alignment, size);
        break;
    default:
        p = memalign(alignment, size);
        break;
    }
    if (!p)
        die("%s(%zu, %zu) failed", entry_names[entry], alignment, size);
    if ((uintptr_t)p % alignment)
        die("%s(%zu, %zu) returned %p: not aligned (step %llu)", entry_names[entry], alignment,
            size, p, (unsigned long long)step);
    return p;
}

static void fill_slot(struct slot *s, struct rng *rng, uint64_t step, uint64_t tag)
{
    size_t alignment = pick_alignment(rng);
    size_t size = rng_size_between(rng, MIN_OBJECT_SIZE, 16384);
    size = (size + alignment - 1) / alignment * alignment;
    s->ptr = aligned_block(step, alignment, size);
    s->size = size;
    s->tag = tag;
    mark_object(s->ptr, size, tag);
}

static uint64_t empty_slot(struct slot *s)
{
    check_object(s->ptr, s->size, s->tag, "aligned");
    free(s->ptr);
    s->ptr = NULL;
    return object_value(s->tag, s->size);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s OPS [SLOTS]\n", argv[0]);
        return 2;
    }
    uint64_t ops = parse_count(argv[1], "OPS", 1, UINT64_MAX / 4);
    size_t slot_count = argc > 2 ? parse_count(argv[2], "SLOTS", 1, 1u << 24) : DEFAULT_SLOTS;

    struct rng rng = { 0xa119edull };
    struct slot *slots = calloc(slot_count, sizeof *slots);
    if (!slots)
        die("out of memory");
    uint64_t checksum = 0;
    for (uint64_t i = 0; i < ops; i++) {
        struct slot *s = &slots[rng_below(&rng, slot_count)];
        if (s->ptr)
            checksum += empty_slot(s);
        fill_slot(s, &rng, i, i + 1);
    }
    for (size_t i = 0; i < slot_count; i++)
        if (slots[i].ptr)
            checksum += empty_slot(&slots[i]);
    free(slots);
    printf("aligned ops=%llu checksum=%016llx\n", (unsigned long long)ops,
           (unsigned long long)checksum);
    return 0;
}

/* pair.c - the allocator's fast path, for counting instructions.
 *
 * Usage: pair ITERATIONS SIZE
 *
 * Does ITERATIONS times malloc(SIZE) + free() of the same size, with one
 * other block of SIZE kept live throughout (so an allocator cannot retire
 * the size class or its slab between iterations).  Run under
 * `valgrind --tool=callgrind` for two values of ITERATIONS: the difference
 * of the two instruction totals divided by the difference of the counts is
 * the marginal cost of one malloc+free pair, start-up and exit cancelled.
 * The loop's own instructions (a handful) are included, the same for every
 * allocator.  Prints nothing worth checking; measures nothing itself.
 */
#include "bench_common.h"

/* The pointer goes through a volatile so that the compiler cannot pair up
 * and drop the malloc/free calls (it may, for known-builtin malloc). */
static void *volatile sink;

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s ITERATIONS SIZE\n", argv[0]);
        return 2;
    }
    uint64_t iterations = parse_count(argv[1], "ITERATIONS", 1, UINT64_MAX / 4);
    size_t size = parse_count(argv[2], "SIZE", 1, 1u << 30);

    void *kept = checked_malloc(size);
    for (uint64_t i = 0; i < iterations; i++) {
        sink = malloc(size);
        free(sink);
    }
    free(kept);
    return 0;
}

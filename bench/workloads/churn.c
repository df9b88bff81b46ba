/* churn.c - single-thread small-object churn benchmark.
 *
 * Usage: churn ROUNDS [BATCH]
 *
 * The allocation pattern of an interpreter or a compiler pass: mostly small
 * objects (8..512 B), allocated in bursts, freed in a different order than
 * they were allocated, plus strings that grow by realloc.  Each of ROUNDS
 * rounds runs, over a batch of BATCH (default 20000) objects:
 *   1. burst:  allocate BATCH objects of 16..256 B;
 *   2. holes:  free every other one;
 *   3. refill: allocate into the holes with other sizes (8..512 B), so
 *              freed memory must be reused across size classes;
 *   4. window: BATCH steps of "free the oldest, allocate a new one" over a
 *              FIFO window (steady state with short lifetimes);
 *   5. grow:   build a few strings by small reallocs;
 *   6. teardown: free the whole batch in a shuffled order.
 * The program prints the operation count and a checksum of the freed
 * objects' marks (bench_common.h); it measures no time itself.
 */
#include "bench_common.h"

#define DEFAULT_BATCH 20000
#define WINDOW 256          /* live objects in the FIFO phase */
#define STRINGS_PER_ROUND 64
#define STRING_STEPS 256    /* reallocs per grown string */

struct object {
    void *ptr;
    size_t size;
    uint64_t tag;
};

struct churn {
    struct rng rng;
    uint64_t ops;
    uint64_t checksum;
    uint64_t next_tag;
};

static void alloc_object(struct churn *c, struct object *o, size_t lo, size_t hi)
{
    o->size = rng_size_between(&c->rng, lo, hi);
    o->tag = ++c->next_tag;
    o->ptr = checked_malloc(o->size);
    mark_object(o->ptr, o->size, o->tag);
    c->ops++;
}

static void free_object(struct churn *c, struct object *o)
{
    check_object(o->ptr, o->size, o->tag, "churn free");
    c->checksum += object_value(o->tag, o->size);
    free(o->ptr);
    o->ptr = NULL;
    c->ops++;
}

static void burst_and_holes(struct churn *c, struct object *batch, size_t n)
{
    for (size_t i = 0; i < n; i++)
        alloc_object(c, &batch[i], 16, 256);
    for (size_t i = 1; i < n; i += 2)
        free_object(c, &batch[i]);
    for (size_t i = 1; i < n; i += 2)
        alloc_object(c, &batch[i], MIN_OBJECT_SIZE, 512);
}

/* Short-lived objects: each lives for WINDOW allocations. */
static void fifo_window(struct churn *c, size_t steps)
{
    struct object window[WINDOW];
    for (size_t i = 0; i < WINDOW; i++)
        alloc_object(c, &window[i], MIN_OBJECT_SIZE, 256);
    for (size_t i = 0; i < steps; i++) {
        struct object *oldest = &window[i % WINDOW];
        free_object(c, oldest);
        alloc_object(c, oldest, MIN_OBJECT_SIZE, 256);
    }
    for (size_t i = 0; i < WINDOW; i++)
        free_object(c, &window[i]);
}

/* A string builder: grow by 1..64 bytes per realloc, as text is appended. */
static void grow_strings(struct churn *c)
{
    for (int s = 0; s < STRINGS_PER_ROUND; s++) {
        size_t len = 0, cap = 0;
        char *text = NULL;
        for (int i = 0; i < STRING_STEPS; i++) {
            size_t add = rng_size_between(&c->rng, 1, 64);
            if (len + add + 1 > cap) {
                cap = len + add + 1 + (cap >> 3);   /* modest slack: many reallocs */
                text = realloc(text, cap);
                if (!text)
                    die("realloc(%zu) failed", cap);
                c->ops++;
            }
            memset(text + len, 'a' + (int)(add % 26), add);
            len += add;
            text[len] = '\0';
        }
        uint64_t sum = 0;
        for (size_t i = 0; i < len; i += 61)  /* sample the contents */
            sum = sum * 31 + (unsigned char)text[i];
        c->checksum += object_value(sum, len);
        free(text);
        c->ops++;
    }
}

/* Fisher-Yates over the batch, then free in that order. */
static void shuffled_teardown(struct churn *c, struct object *batch, size_t n)
{
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)rng_below(&c->rng, i + 1);
        struct object tmp = batch[i];
        batch[i] = batch[j];
        batch[j] = tmp;
    }
    for (size_t i = 0; i < n; i++)
        free_object(c, &batch[i]);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s ROUNDS [BATCH]\n", argv[0]);
        return 2;
    }
    uint64_t rounds = parse_count(argv[1], "ROUNDS", 1, UINT64_MAX / 4);
    size_t batch_size = argc > 2 ? parse_count(argv[2], "BATCH", 2, 1u << 26) : DEFAULT_BATCH;

    struct churn c = { .rng = { 0xc4a2e5eedull } };
    struct object *batch = calloc(batch_size, sizeof *batch);
    if (!batch)
        die("cannot allocate the batch table");
    for (uint64_t r = 0; r < rounds; r++) {
        burst_and_holes(&c, batch, batch_size);
        fifo_window(&c, batch_size);
        grow_strings(&c);
        shuffled_teardown(&c, batch, batch_size);
    }
    free(batch);
    printf("churn rounds=%llu ops=%llu checksum=%016llx\n", (unsigned long long)rounds,
           (unsigned long long)c.ops, (unsigned long long)c.checksum);
    return 0;
}

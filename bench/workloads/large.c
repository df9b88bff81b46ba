/* large.c - large blocks, 64 KiB .. 64 MiB.
 *
 * Usage: large OPS [SLOTS]
 *
 * The buffers of a file server, an image pipeline or a database sort:
 * SLOTS (default 8) live blocks; each of OPS steps frees a random slot's
 * block and allocates a new one whose size is log-uniform between 64 KiB
 * and 64 MiB, then writes one byte in every 4 KiB page of it, as a program
 * filling its buffer would.  Those first writes are where large-block
 * allocators differ: one that unmaps freed blocks at once pays page faults
 * and zeroing on every reuse, one that keeps them pays in RSS.  Peak RSS
 * is therefore as telling here as the time.
 *
 * Prints the step count and a checksum of the bytes read back before each
 * free; measures no time itself.
 */
#include "bench_common.h"

#define DEFAULT_SLOTS 8
#define MIN_LOG2 16              /* 64 KiB */
#define MAX_LOG2 26              /* 64 MiB */
#define TOUCH_STRIDE 4096

struct block {
    unsigned char *bytes;
    size_t size;
    uint64_t tag;
};

/* Log-uniform in [2^MIN_LOG2, 2^MAX_LOG2]: as many blocks of 64-128 KiB as
 * of 32-64 MiB, as in most programs that handle large buffers. */
static size_t pick_large_size(struct rng *rng)
{
    unsigned shift = (unsigned)rng_size_between(rng, MIN_LOG2, MAX_LOG2 - 1);
    size_t low = (size_t)1 << shift;
    return low + (size_t)rng_below(rng, low + 1);
}

static void fill_block(struct block *b, struct rng *rng, uint64_t tag)
{
    b->size = pick_large_size(rng);
    b->tag = tag;
    b->bytes = checked_malloc(b->size);
    for (size_t off = 0; off < b->size; off += TOUCH_STRIDE)
        b->bytes[off] = (unsigned char)(tag + off / TOUCH_STRIDE);
    mark_object(b->bytes, b->size, tag);
}

static uint64_t drop_block(struct block *b)
{
    check_object(b->bytes, b->size, b->tag, "large");
    uint64_t sum = object_value(b->tag, b->size);
    for (size_t off = TOUCH_STRIDE; off + 8 < b->size; off += TOUCH_STRIDE)
        if (b->bytes[off] != (unsigned char)(b->tag + off / TOUCH_STRIDE))
            die("large block tag %#llx lost byte %zu", (unsigned long long)b->tag, off);
    free(b->bytes);
    b->bytes = NULL;
    return sum;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s OPS [SLOTS]\n", argv[0]);
        return 2;
    }
    uint64_t ops = parse_count(argv[1], "OPS", 1, 1u << 30);
    size_t slot_count = argc > 2 ? parse_count(argv[2], "SLOTS", 1, 256) : DEFAULT_SLOTS;

    struct rng rng = { 0x1a76eull };
    struct block *slots = calloc(slot_count, sizeof *slots);
    if (!slots)
        die("out of memory");
    uint64_t checksum = 0, tag = 0;
    for (size_t i = 0; i < slot_count; i++)
        fill_block(&slots[i], &rng, ++tag);
    for (uint64_t i = 0; i < ops; i++) {
        struct block *b = &slots[rng_below(&rng, slot_count)];
        checksum += drop_block(b);
        fill_block(b, &rng, ++tag);
    }
    for (size_t i = 0; i < slot_count; i++)
        checksum += drop_block(&slots[i]);
    free(slots);
    printf("large ops=%llu checksum=%016llx\n", (unsigned long long)ops,
           (unsigned long long)checksum);
    return 0;
}

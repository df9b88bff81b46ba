/* bufgrow.c - buffers appended to by fixed steps: a log, a response body or
 * a file read into memory, each append a realloc to the exact new length.
 *
 * Usage: bufgrow ROUNDS BUFFERS STEP_KIB MAX_MIB
 *
 * Each round, BUFFERS buffers grow side by side, STEP_KIB at a time, in
 * turn, each to its own length between MAX_MIB / 4 and MAX_MIB; every
 * appended byte is written.  Then they are checked and freed.  Growing
 * several at once means the address space after a buffer is usually
 * taken, so an allocator that reserves no room ahead moves (or copies) a
 * buffer at nearly every step: the pattern costs O(n^2) bytes copied, or
 * page faults for every move onto new pages, unless growth is amortised.
 * The buffers pass through the size classes into blocks of their own.
 *
 * stdout: the bytes appended and a checksum.  stderr ("metric" lines):
 * peak_rss_mib, cpu_s.
 */
#include "bench_common.h"
#include "bench_probe.h"

struct buffer {
    unsigned char *bytes;
    size_t length, target;
};

/* The byte at position i of buffer b: constant over each 4 KiB, so that
 * appends are memsets and the run's time is the allocator's. */
static unsigned char byte_at(size_t b, size_t i)
{
    return (unsigned char)(b * 31 + (i >> 12) * 7);
}

static void append(struct buffer *buf, size_t b, size_t step)
{
    size_t add = buf->target - buf->length < step ? buf->target - buf->length : step;
    unsigned char *grown = realloc(buf->bytes, buf->length + add);
    if (!grown)
        die("realloc(%zu) failed", buf->length + add);
    if (buf->length && grown[buf->length - 1] != byte_at(b, buf->length - 1))
        die("buffer %zu lost its last byte in realloc", b);
    for (size_t i = buf->length, end = buf->length + add; i < end;) {
        size_t chunk_end = ((i >> 12) + 1) << 12;
        size_t n = (chunk_end < end ? chunk_end : end) - i;
        memset(grown + i, byte_at(b, i), n);
        i += n;
    }
    buf->bytes = grown;
    buf->length += add;
}

static uint64_t check_and_free(struct buffer *buf, size_t b)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < buf->length; i += 4093) {
        if (buf->bytes[i] != byte_at(b, i))
            die("buffer %zu lost byte %zu in realloc", b, i);
        sum += buf->bytes[i];
    }
    free(buf->bytes);
    buf->bytes = NULL;
    buf->length = 0;
    return sum;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s ROUNDS BUFFERS STEP_KIB MAX_MIB\n", argv[0]);
        return 2;
    }
    uint64_t rounds = parse_count(argv[1], "ROUNDS", 1, 1u << 20);
    size_t count = parse_count(argv[2], "BUFFERS", 1, 1024);
    size_t step = parse_count(argv[3], "STEP_KIB", 1, 1u << 20) << 10;
    size_t max = parse_count(argv[4], "MAX_MIB", 1, 1u << 14) << 20;

    struct buffer *bufs = calloc(count, sizeof *bufs);
    if (!bufs)
        die("out of memory");
    struct rng rng = { 0xb0f6ull };
    uint64_t appended = 0, checksum = 0;
    for (uint64_t r = 0; r < rounds; r++) {
        for (size_t b = 0; b < count; b++)
            bufs[b].target = rng_size_between(&rng, max / 4, max);
        size_t unfinished = count;
        while (unfinished) {                  /* bounded: every pass appends >= 1 byte */
            for (size_t b = 0; b < count; b++) {
                if (bufs[b].length >= bufs[b].target)
                    continue;
                size_t before = bufs[b].length;
                append(&bufs[b], b, step);
                appended += bufs[b].length - before;
                if (bufs[b].length >= bufs[b].target)
                    unfinished--;
            }
        }
        stats_probe("grown");
        for (size_t b = 0; b < count; b++)
            checksum += check_and_free(&bufs[b], b);
    }
    free(bufs);
    report_metric("peak_rss_mib", peak_rss_kib() / 1024.0);
    report_cpu_seconds();
    printf("bufgrow rounds=%llu appended=%llu checksum=%016llx\n", (unsigned long long)rounds,
           (unsigned long long)appended, (unsigned long long)checksum);
    return 0;
}

/* grow.c - realloc growth of strings and arrays.
 *
 * Usage: grow ROUNDS STRINGS ARRAYS
 *
 * Each round:
 *   strings: STRINGS strings are built side by side, one append at a time
 *            to string i % STRINGS, 1..48 bytes per append, each append a
 *            realloc to the exact new length (the naive string builder),
 *            until each reaches its target length (1..64 KiB).  Growing
 *            several at once means the block after a string is usually
 *            taken, so in-place growth needs the allocator's help.
 *   arrays:  ARRAYS arrays of 64-bit elements grow side by side, 64
 *            elements per step, capacity doubled (even arrays) or grown by
 *            half (odd ones) when full, up to 8 KiB .. 16 MiB each: the
 *            vector push_back pattern, where large reallocs can be done by
 *            remapping pages instead of copying.
 *   shrink:  every array is reallocated down to a quarter (shrink_to_fit).
 * Contents are checked after every realloc that moved data, and a checksum
 * of them is printed; the program measures no time itself.  stderr
 * ("metric" lines): the arrays' capacity when all are grown (grown_live_mib)
 * and the RSS then (grown_rss_mib), both the largest of the rounds, and
 * peak_rss_mib.
 */
#include "bench_common.h"
#include "bench_probe.h"

#define MAX_APPEND 48
#define MIN_STRING (1u << 10)
#define MAX_STRING (64u << 10)
#define STEP_ELEMENTS 64
#define MIN_ARRAY_LOG2 10          /* 2^10 elements = 8 KiB */
#define MAX_ARRAY_LOG2 21          /* 2^21 elements = 16 MiB */

struct text {
    char *bytes;
    size_t length, target;
};

struct array {
    uint64_t *items;
    size_t length, capacity, target;
};

struct totals {
    uint64_t grown_live_bytes, grown_rss_kib;   /* the largest of the rounds */
    uint64_t reallocs;
    uint64_t checksum;
};

static void *checked_realloc(void *p, size_t size, struct totals *t)
{
    void *q = realloc(p, size);
    if (!q)
        die("realloc(%zu) failed", size);
    t->reallocs++;
    return q;
}

/* The byte at position i of string s: any fixed function will do. */
static char text_byte(size_t s, size_t i)
{
    return (char)('a' + (s * 7 + i * 13) % 26);
}

static void check_text(const struct text *t, size_t s)
{
    for (size_t i = 0; i < t->length; i += 97)
        if (t->bytes[i] != text_byte(s, i))
            die("string %zu lost byte %zu in realloc", s, i);
}

static void build_strings(struct rng *rng, size_t count, struct totals *totals)
{
    struct text *texts = calloc(count, sizeof *texts);
    if (!texts)
        die("out of memory");
    for (size_t s = 0; s < count; s++)
        texts[s].target = rng_size_between(rng, MIN_STRING, MAX_STRING);
    size_t unfinished = count;
    for (size_t i = 0; unfinished; i++) {         /* bounded: every pass appends >= 1 byte */
        struct text *t = &texts[i % count];
        if (t->length >= t->target)
            continue;
        size_t add = rng_size_between(rng, 1, MAX_APPEND);
        t->bytes = checked_realloc(t->bytes, t->length + add + 1, totals);
        for (size_t k = 0; k < add; k++)
            t->bytes[t->length + k] = text_byte(i % count, t->length + k);
        t->length += add;
        t->bytes[t->length] = '\0';
        if (t->length >= t->target)
            unfinished--;
    }
    for (size_t s = 0; s < count; s++) {
        check_text(&texts[s], s);
        totals->checksum += object_value(texts[s].length, (size_t)texts[s].bytes[texts[s].length / 2]);
        free(texts[s].bytes);
    }
    free(texts);
}

static uint64_t array_item(size_t a, size_t i)
{
    return (uint64_t)a * 0x100000001b3ull + i;
}

static void check_array(const struct array *arr, size_t a, size_t upto)
{
    for (size_t i = 0; i < upto; i += 509)
        if (arr->items[i] != array_item(a, i))
            die("array %zu lost element %zu in realloc", a, i);
    if (upto && arr->items[upto - 1] != array_item(a, upto - 1))
        die("array %zu lost its last element in realloc", a);
}

/* Append one step of elements to array a, growing it when full. */
static void push_step(struct array *arr, size_t a, struct totals *totals)
{
    if (arr->length + STEP_ELEMENTS > arr->capacity) {
        size_t grown = a % 2 ? arr->capacity + arr->capacity / 2 : arr->capacity * 2;
        if (grown < arr->length + STEP_ELEMENTS)
            grown = arr->length + STEP_ELEMENTS;
        arr->items = checked_realloc(arr->items, grown * sizeof *arr->items, totals);
        arr->capacity = grown;
        check_array(arr, a, arr->length);
    }
    for (size_t k = 0; k < STEP_ELEMENTS; k++)
        arr->items[arr->length + k] = array_item(a, arr->length + k);
    arr->length += STEP_ELEMENTS;
}

/* All arrays at their target: the round's high-water mark. */
static void note_grown(const struct array *arrays, size_t count, struct totals *totals)
{
    uint64_t live = 0, rss_kib = current_rss_kib();
    for (size_t a = 0; a < count; a++)
        live += arrays[a].capacity * sizeof *arrays[a].items;
    if (live > totals->grown_live_bytes)
        totals->grown_live_bytes = live;
    if (rss_kib > totals->grown_rss_kib)
        totals->grown_rss_kib = rss_kib;
    stats_probe("grown");
}

static void grow_and_shrink_arrays(struct rng *rng, size_t count, struct totals *totals)
{
    struct array *arrays = calloc(count, sizeof *arrays);
    if (!arrays)
        die("out of memory");
    for (size_t a = 0; a < count; a++)
        arrays[a].target = (size_t)1 << rng_size_between(rng, MIN_ARRAY_LOG2, MAX_ARRAY_LOG2);
    size_t unfinished = count;
    for (size_t i = 0; unfinished; i++) {         /* bounded: every pass adds elements */
        struct array *arr = &arrays[i % count];
        if (arr->length >= arr->target)
            continue;
        push_step(arr, i % count, totals);
        if (arr->length >= arr->target)
            unfinished--;
    }
    note_grown(arrays, count, totals);
    for (size_t a = 0; a < count; a++) {
        struct array *arr = &arrays[a];
        arr->length /= 4;
        arr->items = checked_realloc(arr->items, arr->length * sizeof *arr->items, totals);
        check_array(arr, a, arr->length);
        totals->checksum += object_value(arr->items[arr->length - 1], arr->length);
        free(arr->items);
    }
    free(arrays);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s ROUNDS STRINGS ARRAYS\n", argv[0]);
        return 2;
    }
    uint64_t rounds = parse_count(argv[1], "ROUNDS", 1, 1u << 20);
    size_t strings = parse_count(argv[2], "STRINGS", 1, 1u << 16);
    size_t arrays = parse_count(argv[3], "ARRAYS", 1, 1u << 10);

    struct rng rng = { 0x67e0ull };
    struct totals totals = { 0 };
    for (uint64_t r = 0; r < rounds; r++) {
        build_strings(&rng, strings, &totals);
        grow_and_shrink_arrays(&rng, arrays, &totals);
    }
    report_metric("grown_live_mib", totals.grown_live_bytes / (1024.0 * 1024.0));
    report_metric("grown_rss_mib", totals.grown_rss_kib / 1024.0);
    report_metric("peak_rss_mib", peak_rss_kib() / 1024.0);
    printf("grow rounds=%llu reallocs=%llu checksum=%016llx\n", (unsigned long long)rounds,
           (unsigned long long)totals.reallocs, (unsigned long long)totals.checksum);
    return 0;
}

/* cachetest.c - the classic false-sharing tests of Hoard's suite,
 * cache-thrash and cache-scratch, written from their description.
 *
 * Usage: cachetest thrash|scratch THREADS ITERATIONS WRITES SIZE
 *
 * Each thread ITERATIONS times allocates one object of SIZE bytes, writes
 * every byte of it WRITES times, and frees it.  The allocation is inside
 * the loop: what is measured is whether the thread's malloc/free cycle keeps
 * handing it memory that no other thread writes to.
 *   thrash:  nothing else; an allocator that serves all threads from one
 *            free list or bump region gives them neighbouring bytes.
 *   scratch: first the main thread allocates one object per thread, all in a
 *            row, and hands object t to thread t, which frees it before its
 *            loop.  An allocator that puts a freed block in the freeing
 *            thread's cache hands that block - whose cache line holds the
 *            other threads' objects - back at the thread's first malloc, and
 *            at every one after it.
 * bench's falseshare workload tests the same two placements with many
 * objects allocated at once and written after; here one object is
 * allocated and freed again and again, as in the original tests.
 *
 * stdout: the write count and a checksum of the objects' final bytes.
 * stderr: cpu_s.
 */
#include <pthread.h>

#include "bench_common.h"

struct worker {
    int id;
    unsigned char *handed;      /* scratch: the main thread's object */
    uint64_t checksum;
    pthread_t thread;
    char pad[64];
};

static uint64_t iterations, writes, object_size;
static pthread_barrier_t start_line;

/* volatile: every write is a store to memory, which false sharing punishes. */
static uint64_t write_object(volatile unsigned char *p, uint64_t iteration)
{
    for (uint64_t w = 0; w < writes; w++)
        for (uint64_t b = 0; b < object_size; b++)
            p[b] = (unsigned char)(p[b] + 1 + iteration);
    uint64_t sum = 0;
    for (uint64_t b = 0; b < object_size; b++)
        sum += p[b];
    return sum;
}

static void *run(void *arg)
{
    struct worker *w = arg;
    pthread_barrier_wait(&start_line);
    free(w->handed);
    for (uint64_t i = 0; i < iterations; i++) {
        unsigned char *p = checked_malloc(object_size);
        memset(p, w->id, object_size);
        w->checksum += write_object(p, i);
        free(p);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s thrash|scratch THREADS ITERATIONS WRITES SIZE\n", argv[0]);
        return 2;
    }
    int scratch = strcmp(argv[1], "scratch") == 0;
    if (!scratch && strcmp(argv[1], "thrash") != 0)
        die("mode must be thrash or scratch, got '%s'", argv[1]);
    int thread_count = (int)parse_count(argv[2], "THREADS", 1, 256);
    iterations = parse_count(argv[3], "ITERATIONS", 1, 1ull << 40);
    writes = parse_count(argv[4], "WRITES", 1, 1ull << 40);
    object_size = parse_count(argv[5], "SIZE", 1, 1u << 20);

    struct worker *workers = calloc((size_t)thread_count, sizeof *workers);
    if (!workers || pthread_barrier_init(&start_line, NULL, (unsigned)thread_count))
        die("out of memory");
    for (int i = 0; i < thread_count; i++) {
        workers[i].id = i;
        if (scratch)
            workers[i].handed = checked_malloc(object_size);  /* in a row: neighbours */
    }
    for (int i = 0; i < thread_count; i++)
        if (pthread_create(&workers[i].thread, NULL, run, &workers[i]))
            die("pthread_create failed");
    uint64_t checksum = 0;
    for (int i = 0; i < thread_count; i++) {
        pthread_join(workers[i].thread, NULL);
        checksum += workers[i].checksum;
    }
    report_cpu_seconds();
    printf("cachetest %s threads=%d writes=%llu checksum=%016llx\n", argv[1], thread_count,
           (unsigned long long)(iterations * writes * object_size * (uint64_t)thread_count),
           (unsigned long long)checksum);
    pthread_barrier_destroy(&start_line);
    free(workers);
    return 0;
}

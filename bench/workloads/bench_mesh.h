/* bench_mesh.h - how many pages meshing could save, at a chosen moment.
 *
 * Meshing (Powers et al., "Mesh: compacting memory management for C/C++
 * applications", PLDI 2019) gives back the pages of sparse slabs by making
 * two virtual pages whose live bytes do not overlap share one physical
 * page.  Before building it, this measures what it could give on a given
 * heap: when mesh_estimate_wanted() (BENCH_MESH_ESTIMATE is set), a
 * workload calls mesh_estimate(), which takes the program's
 * live blocks, finds every 4 KiB page each block's usable bytes
 * (malloc_usable_size) reach, and packs the pages of each block size
 * first-fit into "physical" pages whose live bytes stay disjoint (a page
 * is tried against the MESH_PROBES most recent physical pages of its
 * size, at 8-byte granularity).  It prints, as "metric" lines on stderr:
 *   mesh_live_pages      pages holding at least one live byte,
 *   mesh_physical_pages  physical pages after packing,
 *   mesh_saved_mib       the difference, in MiB.
 * Pages of different block sizes are never packed together (slabs of
 * different classes have different layouts, and each is one class's
 * memory).  First-fit over a window is what a meshing allocator could
 * afford online, so this is near what it would save, not a bound.
 * The timed runs never set the variable.
 */
#ifndef BENCH_MESH_H
#define BENCH_MESH_H

#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MESH_PAGE 4096u
#define MESH_WORDS (MESH_PAGE / 8 / 64)   /* one bit per 8 bytes: 8 words */
#ifndef MESH_PROBES
#define MESH_PROBES 64
#endif

struct mesh_page {
    uintptr_t page;
    size_t size;                    /* the usable size of its blocks */
    uint64_t live[MESH_WORDS];
};

static int mesh_by_size_then_page(const void *a, const void *b)
{
    const struct mesh_page *x = a, *y = b;
    if (x->size != y->size)
        return x->size < y->size ? -1 : 1;
    return x->page < y->page ? -1 : x->page > y->page;
}

static void mesh_mark(struct mesh_page *p, size_t from, size_t to)
{
    for (size_t bit = from / 8; bit < (to + 7) / 8; bit++)
        p->live[bit / 64] |= 1ull << (bit % 64);
}

/* Pages of the blocks ptrs[0..n) (NULL entries skipped), merged: one
 * entry per page and size.  Returns the entry count; *out is malloc'ed. */
static size_t mesh_pages_of(void *const *ptrs, size_t n, struct mesh_page **out)
{
    size_t cap = 1024, count = 0;
    struct mesh_page *pages = malloc(cap * sizeof *pages);
    if (!pages)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!ptrs[i])
            continue;
        uintptr_t start = (uintptr_t)ptrs[i];
        size_t size = malloc_usable_size(ptrs[i]);
        for (uintptr_t at = start; at < start + size;) {
            uintptr_t page = at & ~(uintptr_t)(MESH_PAGE - 1);
            uintptr_t end = page + MESH_PAGE < start + size ? page + MESH_PAGE : start + size;
            if (count == cap) {
                struct mesh_page *bigger = realloc(pages, 2 * cap * sizeof *pages);
                if (!bigger) {
                    free(pages);
                    return 0;
                }
                pages = bigger;
                cap *= 2;
            }
            struct mesh_page *p = &pages[count++];
            memset(p, 0, sizeof *p);
            p->page = page;
            p->size = size;
            mesh_mark(p, at - page, end - page);
            at = end;
        }
    }
    qsort(pages, count, sizeof *pages, mesh_by_size_then_page);
    size_t merged = 0;
    for (size_t i = 0; i < count; i++) {
        if (merged && pages[merged - 1].page == pages[i].page && pages[merged - 1].size == pages[i].size) {
            for (unsigned w = 0; w < MESH_WORDS; w++)
                pages[merged - 1].live[w] |= pages[i].live[w];
            continue;
        }
        pages[merged++] = pages[i];
    }
    *out = pages;
    return merged;
}

static int mesh_disjoint(const uint64_t *a, const uint64_t *b)
{
    for (unsigned w = 0; w < MESH_WORDS; w++)
        if (a[w] & b[w])
            return 0;
    return 1;
}

/* Physical pages for the `n` pages of one size, packed first-fit in page
 * order (pages[] is reused for the physical pages' contents). */
static size_t mesh_pack(struct mesh_page *pages, size_t n)
{
    size_t physical = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t live[MESH_WORDS];
        memcpy(live, pages[i].live, sizeof live);
        size_t first = physical > MESH_PROBES ? physical - MESH_PROBES : 0, fit = physical;
        for (size_t j = physical; j-- > first;)
            if (mesh_disjoint(pages[j].live, live)) {
                fit = j;
                break;
            }
        if (fit == physical)
            memset(pages[physical++].live, 0, sizeof live);
        for (unsigned w = 0; w < MESH_WORDS; w++)
            pages[fit].live[w] |= live[w];
    }
    return physical;
}

static int mesh_estimate_wanted(void)
{
    return getenv("BENCH_MESH_ESTIMATE") != NULL;
}

static void mesh_estimate(void *const *ptrs, size_t n)
{
    struct mesh_page *pages = NULL;
    size_t count = mesh_pages_of(ptrs, n, &pages), physical = 0;
    for (size_t i = 0; i < count;) {
        size_t j = i;
        while (j < count && pages[j].size == pages[i].size)
            j++;
        physical += mesh_pack(pages + i, j - i);
        i = j;
    }
    free(pages);
    fprintf(stderr, "metric mesh_live_pages %zu\n", count);
    fprintf(stderr, "metric mesh_physical_pages %zu\n", physical);
    fprintf(stderr, "metric mesh_saved_mib %.1f\n", (double)(count - physical) * MESH_PAGE / (1024.0 * 1024.0));
}

#endif /* BENCH_MESH_H */

/* gcc_program.c - the input of the gcc program test.
 *
 * run_program.sh compiles this with the allocator under test preloaded into
 * gcc (and so into cc1, as, collect2 and ld), then compares the preprocessed
 * text, the object's disassembly and bytes, and the compiled program's
 * output with those of a plain compiler.  The macros below expand into a
 * few hundred small functions and a dispatch table so that cc1's optimizer
 * builds and frees plenty of IR; the program itself is deterministic. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One mixing step per generated function, each with its own constants. */
#define STEP(n) \
    static uint32_t step_##n(uint32_t x) { \
        for (int i = 0; i < (int)((n) % 5 + 1); i++) \
            x = (x ^ (x >> ((n) % 13 + 1))) * (2654435761u + 2u * (n)); \
        return x + (n); \
    }
#define STEP10(n) STEP(n##0) STEP(n##1) STEP(n##2) STEP(n##3) STEP(n##4) \
                  STEP(n##5) STEP(n##6) STEP(n##7) STEP(n##8) STEP(n##9)
#define STEP100(n) STEP10(n##0) STEP10(n##1) STEP10(n##2) STEP10(n##3) STEP10(n##4) \
                   STEP10(n##5) STEP10(n##6) STEP10(n##7) STEP10(n##8) STEP10(n##9)
STEP100(1) STEP100(2) STEP100(3)

#define REF(n) step_##n,
#define REF10(n) REF(n##0) REF(n##1) REF(n##2) REF(n##3) REF(n##4) \
                 REF(n##5) REF(n##6) REF(n##7) REF(n##8) REF(n##9)
#define REF100(n) REF10(n##0) REF10(n##1) REF10(n##2) REF10(n##3) REF10(n##4) \
                  REF10(n##5) REF10(n##6) REF10(n##7) REF10(n##8) REF10(n##9)
static uint32_t (*const steps[])(uint32_t) = { REF100(1) REF100(2) REF100(3) };
#define NSTEPS (sizeof steps / sizeof steps[0])

struct entry {
    char key[24];
    uint32_t value;
};

static int compare_entries(const void *a, const void *b)
{
    const struct entry *ea = a, *eb = b;
    int c = strcmp(ea->key, eb->key);
    return c ? c : (ea->value > eb->value) - (ea->value < eb->value);
}

int main(void)
{
    enum { N = 5000 };
    struct entry *table = malloc(N * sizeof *table);
    if (!table)
        return 1;
    uint32_t x = 1;
    for (int i = 0; i < N; i++) {
        x = steps[x % NSTEPS](x);
        snprintf(table[i].key, sizeof table[i].key, "k%08x", x % 100003u);
        table[i].value = x;
    }
    qsort(table, N, sizeof *table, compare_entries);
    uint64_t sum = 0;
    for (int i = 0; i < N; i++)
        sum = sum * 31 + table[i].value;
    printf("functions %zu first %s last %s sum %016llx\n", (size_t)NSTEPS,
           table[0].key, table[N - 1].key, (unsigned long long)sum);
    free(table);
    return 0;
}

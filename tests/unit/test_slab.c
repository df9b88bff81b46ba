/* test_slab.c - one slab's free lists: lazy carving, the owner's local
 * frees, and other threads' frees collected with one exchange. */
#include "unit.h"

#include <pthread.h>
#include <stdlib.h>

static la_segment_t *seg;

static int setup(void **state) {
  (void)state;
  la_os_init();
  la_options_defaults(&la_opt);
  la_sizeclass_init();
  seg = la_segment_create(NULL, NULL);
  return seg ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  la_segment_destroy(seg);
  return 0;
}

static la_slab_t *new_slab(unsigned cls) {
  int unit = la_segment_find_run(seg, la_class_units[cls], 1);
  assert_true(unit > 0);
  la_slab_t *s = la_segment_take_run(seg, (unsigned)unit, la_class_units[cls]);
  la_slab_init(s, seg, (unsigned)unit, cls);
  return s;
}

static void *pop(la_slab_t *s) {
  if (!la_slab_refill_free(s)) return NULL;
  la_block_t *b = s->free;
  s->free = b->next;
  s->used++;
  return b;
}

/* Every block comes out once, inside the slab, on a block boundary. */
static void carves_every_block_once(void **state) {
  (void)state;
  unsigned cls = la_class_of(48);
  la_slab_t *s = new_slab(cls);
  assert_true(la_slab_refill_free(s));
  assert_true(s->reserved < s->capacity);   /* lazily: not all at once */
  uint8_t *seen = calloc(s->capacity, 1);
  void *p;
  uint32_t n = 0;
  while ((p = pop(s))) {
    size_t off = (size_t)((uint8_t *)p - s->start);
    assert_int_equal(off % s->block_size, 0);
    assert_true(off / s->block_size < s->capacity);
    assert_int_equal(seen[off / s->block_size]++, 0);
    n++;
  }
  assert_int_equal(n, s->capacity);
  assert_int_equal(s->used, s->capacity);
  free(seen);
  la_segment_release_run(seg, s);
}

/* Blocks come out in address order but inside the color's window (the
 * slab's first page, or first 8 blocks when they are longer): a program
 * that walks its blocks in the order it got them streams through memory.
 * Whole-slab colors wrapped from the slab's end back to its start. */
static void carving_jumps_only_inside_the_first_page(void **state) {
  (void)state;
  const size_t sizes[] = {48, 64, 1000, 5120};
  for (unsigned k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    for (int round = 0; round < 5; round++) {   /* successive slabs get other colors */
      la_slab_t *s = new_slab(la_class_of(sizes[k]));
      size_t window = 8 * s->block_size > la_page_size ? 8 * s->block_size : la_page_size;
      uint8_t *prev = pop(s), *p;
      unsigned jumps = 0;
      while ((p = pop(s))) {
        if (p != prev + s->block_size) {
          jumps++;
          assert_true((size_t)(prev - s->start) < window);
          assert_true((size_t)(p - s->start) < window + s->block_size);
        }
        prev = p;
      }
      assert_true(jumps <= 2);
      la_segment_release_run(seg, s);
    }
  }
}

static void owner_frees_are_reused(void **state) {
  (void)state;
  la_slab_t *s = new_slab(la_class_of(1000));
  void *blocks[8];
  for (int i = 0; i < 8; i++) blocks[i] = pop(s);
  while (pop(s)) {}
  for (int i = 0; i < 8; i++) {
    la_block_t *b = blocks[i];
    b->next = s->free;
    s->free = b;
    s->used--;
  }
  assert_int_equal(s->used, s->capacity - 8);
  for (int i = 0; i < 8; i++) assert_non_null(pop(s));
  assert_null(pop(s));
  la_segment_release_run(seg, s);
}

typedef struct remote_s {
  la_slab_t *slab;
  void **blocks;
  int from, to;
} remote_t;

static void *free_remotely(void *arg) {
  remote_t *r = arg;
  for (int i = r->from; i < r->to; i++) {
    la_slab_free_remote(r->slab, r->blocks[i], NULL);
  }
  return NULL;
}

/* Two threads free into the slab at once; the owner collects all of it,
 * and counts all of it. */
static void remote_frees_are_collected(void **state) {
  (void)state;
  la_slab_t *s = new_slab(la_class_of(64));
  int n = (int)s->capacity;
  void **blocks = malloc(sizeof(void *) * (size_t)n);
  for (int i = 0; i < n; i++) assert_non_null(blocks[i] = pop(s));
  assert_null(pop(s));
  pthread_t t[2];
  remote_t r[2] = {{s, blocks, 0, n / 2}, {s, blocks, n / 2, n}};
  for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, free_remotely, &r[i]);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  assert_true(la_slab_collect_remote(s));
  assert_int_equal(s->used, 0);
  assert_false(la_slab_collect_remote(s));
  int again = 0;
  while (pop(s)) again++;
  assert_int_equal(again, n);
  free(blocks);
  la_segment_release_run(seg, s);
}

/* Each collection takes the blocks pushed so far and counts exactly
 * those: a push and its count are one atomic step. */
static void remote_free_counted_with_its_block(void **state) {
  (void)state;
  la_slab_t *s = new_slab(la_class_of(64));
  void *a = pop(s), *b = pop(s), *c = pop(s);
  assert_non_null(c);
  assert_false(la_slab_has_remote(s));
  la_slab_free_remote(s, a, NULL);
  la_slab_free_remote(s, b, NULL);
  assert_true(la_slab_has_remote(s));
  assert_true(la_slab_collect_remote(s));
  assert_int_equal(s->used, 1);   /* c */
  assert_false(la_slab_has_remote(s));
  assert_false(la_slab_collect_remote(s));
  assert_int_equal(s->used, 1);
  la_slab_free_remote(s, c, NULL);
  assert_true(la_slab_collect_remote(s));
  assert_int_equal(s->used, 0);
  int again = 0;
  while (pop(s)) again++;
  assert_int_equal(again, (int)s->capacity);
  la_segment_release_run(seg, s);
}

/* The owner frees `mine` blocks, other threads `theirs`: collecting joins
 * the two lists by walking the shorter, and every block comes back once,
 * the owner's first when its list was the shorter. */
static void join_lists(int mine, int theirs) {
  la_slab_t *s = new_slab(la_class_of(64));
  void *blocks[64];
  for (int i = 0; i < mine + theirs; i++) assert_non_null(blocks[i] = pop(s));
  while (pop(s)) {}
  for (int i = 0; i < mine; i++) la_slab_push(s, blocks[i]);
  for (int i = mine; i < mine + theirs; i++) la_slab_free_remote(s, blocks[i], NULL);
  assert_true(la_slab_collect_remote(s));
  assert_int_equal(s->used, s->capacity - (uint32_t)(mine + theirs));
  bool seen[64] = {false};
  for (int n = 0; n < mine + theirs; n++) {
    void *b = pop(s);
    int i = 0;
    while (i < mine + theirs && blocks[i] != b) i++;
    assert_true(i < mine + theirs);
    assert_false(seen[i]);
    seen[i] = true;
    if (n == 0) assert_true(mine < theirs ? i < mine : i >= mine);
  }
  assert_null(pop(s));
  la_segment_release_run(seg, s);
}

static void collected_lists_joined(void **state) {
  (void)state;
  join_lists(3, 40);
  join_lists(40, 3);
}

/* The free list as a set (la_slab_free_slots, for lending and trimming):
 * exactly the blocks on the list, for slabs of odd and even block sizes,
 * while the live blocks' first words look like links - to free blocks, to
 * live ones, to the middle of a block, NULL - which it reads and must not
 * follow.  Every carved block counted once. */
static void free_slots_are_the_list(unsigned cls) {
  la_slab_t *s = new_slab(cls);
  uint32_t n = 0;
  void **blocks = calloc(s->capacity, sizeof *blocks);
  while (n < s->capacity && (blocks[n] = pop(s))) n++;
  uint64_t want[LA_TRIM_MAX_BLOCKS / 64] = {0}, got[LA_TRIM_MAX_BLOCKS / 64];
  srand(cls);
  for (uint32_t i = 0; i < n; i++) {
    if (rand() % 10 < 9) continue;   /* a tenth stays live */
    uint32_t slot = (uint32_t)(((uint8_t *)blocks[i] - s->start) / s->block_size);
    want[slot / 64] |= (uint64_t)1 << (slot % 64);
  }
  for (uint32_t i = 0; i < n; i++) {
    uint32_t slot = (uint32_t)(((uint8_t *)blocks[i] - s->start) / s->block_size);
    if (want[slot / 64] >> (slot % 64) & 1) la_slab_push(s, blocks[i]);
  }
  for (uint32_t i = 0, k = 0; i < n; i++) {   /* the live ones' words, link-like */
    uint32_t slot = (uint32_t)(((uint8_t *)blocks[i] - s->start) / s->block_size);
    if (want[slot / 64] >> (slot % 64) & 1) continue;
    uintptr_t other = (uintptr_t)blocks[(i * 7 + 3) % n];
    uintptr_t like[] = {other, other + 8, 0, (uintptr_t)s->start + (size_t)s->capacity * s->block_size};
    *(uintptr_t *)blocks[i] = like[k++ % 4];
  }
  la_slab_free_slots(s, got);
  for (uint32_t w = 0; w < (s->capacity + 63) / 64; w++) assert_int_equal(got[w], want[w]);
  free(blocks);
  la_segment_release_run(seg, s);
}

static void free_list_as_a_set(void **state) {
  (void)state;
  free_slots_are_the_list(la_class_of(64));    /* 1024 slots: the table */
  free_slots_are_the_list(la_class_of(80));    /* an odd multiple of 16 */
  free_slots_are_the_list(la_class_of(448));   /* 7 x 64 */
  free_slots_are_the_list(la_class_of(8));     /* 8192 slots: the walk */
}

static void slab_list_operations(void **state) {
  (void)state;
  la_slab_t a = {0}, b = {0}, c = {0};
  la_slab_list_t l = {0};
  la_slab_list_push(&l, &a);
  la_slab_list_push(&l, &b);
  la_slab_list_push_front(&l, &c);
  assert_ptr_equal(l.head, &c);
  assert_ptr_equal(l.tail, &b);
  la_slab_list_remove(&l, &a);
  assert_ptr_equal(c.next, &b);
  assert_ptr_equal(b.prev, &c);
  la_slab_list_remove(&l, &c);
  la_slab_list_remove(&l, &b);
  assert_null(l.head);
  assert_null(l.tail);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(carves_every_block_once), cmocka_unit_test(carving_jumps_only_inside_the_first_page),
    cmocka_unit_test(owner_frees_are_reused),
    cmocka_unit_test(remote_frees_are_collected), cmocka_unit_test(remote_free_counted_with_its_block),
    cmocka_unit_test(collected_lists_joined), cmocka_unit_test(free_list_as_a_set),
    cmocka_unit_test(slab_list_operations),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

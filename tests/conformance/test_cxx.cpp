// test_cxx.cpp - C++ allocation through the allocator: new/delete,
// new[]/delete[], sized delete, aligned new (alignas type and explicit
// std::align_val_t), nothrow new and std::bad_alloc for impossible sizes.
//
// libstdc++'s operator new calls malloc (aligned new: aligned_alloc), so
// with liballoc preloaded or statically linked every `new` must land in
// liballoc's heap: malloc_usable_size works on it and liballoc's statistics
// count it.  Built like the C program (conformance.h): ALLOC_TEST_LINKED
// calls alloc_ctl directly, otherwise it is looked up with dlsym, and
// ALLOC_TEST_REQUIRE_ACTIVE / --require-liballoc make its absence a failure.
//
// Plain checks rather than <cassert>: Release builds define NDEBUG.
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include <dlfcn.h>
#include <malloc.h>

#ifdef ALLOC_TEST_LINKED
#include <alloc.h>
#endif

namespace {

int failures = 0;
int skipped = 0;

#define CHECK(cond)                                                             \
  do {                                                                          \
    if (!(cond)) {                                                              \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                               \
    }                                                                           \
  } while (0)

using ctl_fn = int (*)(const char *, void *, size_t *, void *, size_t);
ctl_fn ctl = nullptr;
bool required = false;

constexpr size_t MiB = size_t(1) << 20;

// Keeps the optimiser from removing new/delete pairs or folding sizes
// (together with -fno-builtin and -fno-allocation-dce in CMake).
void *volatile sink;
template <typename T> T *keep(T *p) {
  sink = p;
  return p;
}
size_t opaque(size_t x) {
  volatile size_t v = x;
  return v;
}

bool aligned(const void *p, size_t a) { return (reinterpret_cast<uintptr_t>(p) & (a - 1)) == 0; }

void detect() {
#ifdef ALLOC_TEST_LINKED
  ctl = alloc_ctl;
#else
  void *sym = dlsym(RTLD_DEFAULT, "alloc_ctl");
  std::memcpy(&ctl, &sym, sizeof ctl);
#endif
}

size_t stats_allocated() {
  size_t v = 0, len = sizeof v;
  CHECK(ctl("stats.allocated", &v, &len, nullptr, 0) == 0);
  return v;
}

// A `new`-ed pointer of `size` bytes belongs to the malloc heap.
void check_in_malloc_heap(void *p, size_t size) {
  CHECK(p != nullptr);
  CHECK(malloc_usable_size(p) >= size);
}

void new_delete_scalar() {
  struct Obj {
    long a[5];
    char tag;
  };
  for (int i = 0; i < 1000; i++) {
    Obj *o = keep(new Obj());
    CHECK(o->a[0] == 0 && o->tag == 0);  // value-initialised
    CHECK(aligned(o, alignof(Obj)));
    check_in_malloc_heap(o, sizeof(Obj));
    o->tag = 'x';
    delete o;
  }
}

void new_delete_array() {
  for (size_t n = 1; n < 300000; n = n * 3 + 1) {
    int *a = keep(new int[opaque(n)]);
    check_in_malloc_heap(a, n * sizeof(int));
    a[0] = 1;
    a[n - 1] = 2;
    delete[] a;
  }
  // An array of a type with a destructor carries a cookie in front.
  struct WithDtor {
    int v = 7;
    ~WithDtor() { v = 0; }
  };
  WithDtor *w = keep(new WithDtor[opaque(100)]);
  CHECK(w[99].v == 7);
  delete[] w;
}

void sized_delete() {
  static const size_t sizes[] = {1, 16, 100, 4096, 100000, 3 * MiB};
  for (size_t s : sizes) {
    void *p = keep(::operator new(opaque(s)));
    check_in_malloc_heap(p, s);
    std::memset(p, 0x42, s);
    ::operator delete(p, s);
    char *a = keep(new char[opaque(s)]);
    ::operator delete[](a, s);
  }
}

struct alignas(256) Aligned256 {
  char data[300];
};

void aligned_new_struct() {
  for (int i = 0; i < 200; i++) {
    Aligned256 *a = keep(new Aligned256);
    CHECK(aligned(a, 256));
    check_in_malloc_heap(a, sizeof(Aligned256));
    std::memset(a->data, 1, sizeof a->data);
    delete a;
  }
  Aligned256 *arr = keep(new Aligned256[opaque(33)]);
  for (int i = 0; i < 33; i++) CHECK(aligned(&arr[i], 256));
  delete[] arr;
}

void aligned_operator_new_4096() {
  static const size_t sizes[] = {1, 4096, 5000, 2 * MiB + 1};
  for (size_t s : sizes) {
    void *p = keep(::operator new(opaque(s), std::align_val_t(4096)));
    CHECK(aligned(p, 4096));
    check_in_malloc_heap(p, s);
    std::memset(p, 0x17, s);
    ::operator delete(p, s, std::align_val_t(4096));
    p = keep(::operator new[](opaque(s), std::align_val_t(4096)));
    CHECK(aligned(p, 4096));
    ::operator delete[](p, std::align_val_t(4096));
  }
}

void nothrow_new_impossible_returns_nullptr() {
  CHECK(keep(::operator new(opaque(SIZE_MAX), std::nothrow)) == nullptr);
  CHECK(keep(::operator new[](opaque(size_t(PTRDIFF_MAX) + 1), std::nothrow)) == nullptr);
  CHECK(keep(new (std::nothrow) char[opaque(size_t(PTRDIFF_MAX))]) == nullptr);
  CHECK(keep(::operator new(opaque(SIZE_MAX / 2), std::align_val_t(4096), std::nothrow)) == nullptr);
  // The heap still works afterwards.
  char *p = keep(new (std::nothrow) char[100]);
  CHECK(p != nullptr);
  delete[] p;
}

void new_impossible_throws_bad_alloc() {
  int thrown = 0;
  try {
    keep(::operator new(opaque(SIZE_MAX)));
  } catch (const std::bad_alloc &) {
    thrown++;
  }
  try {
    keep(new char[opaque(size_t(PTRDIFF_MAX))]);
  } catch (const std::bad_alloc &) {
    thrown++;
  }
  try {
    keep(::operator new(opaque(SIZE_MAX - 4095), std::align_val_t(4096)));
  } catch (const std::bad_alloc &) {
    thrown++;
  }
  CHECK(thrown == 3);
}

// With liballoc active, liballoc's statistics must see blocks from `new`.
void new_goes_through_liballoc() {
  if (ctl == nullptr) {
    if (required) {
      std::fprintf(stderr, "liballoc is not the active allocator (alloc_ctl not found)\n");
      failures++;
    } else {
      std::printf("  skipped: liballoc not active\n");
      skipped++;
    }
    return;
  }
  const size_t size = 8 * MiB;
  size_t before = stats_allocated();
  char *p = keep(new char[opaque(size)]);
  p[0] = 1;
  CHECK(stats_allocated() >= before + size);
  delete[] p;
  before = stats_allocated();
  void *q = keep(::operator new(opaque(size), std::align_val_t(4096)));
  CHECK(stats_allocated() >= before + size);
  ::operator delete(q, std::align_val_t(4096));
}

}  // namespace

int main(int argc, char **argv) {
#ifdef ALLOC_TEST_REQUIRE_ACTIVE
  required = true;
#endif
  for (int i = 1; i < argc; i++) {
    if (std::strcmp(argv[i], "--require-liballoc") == 0) {
      required = true;
    } else {
      std::fprintf(stderr, "usage: %s [--require-liballoc]\n", argv[0]);
      return 2;
    }
  }
  detect();
  std::printf("allocator under test: %s\n", ctl ? "liballoc" : "system (liballoc not active)");

  struct {
    const char *name;
    void (*fn)();
  } const tests[] = {
    {"new_delete_scalar", new_delete_scalar},
    {"new_delete_array", new_delete_array},
    {"sized_delete", sized_delete},
    {"aligned_new_struct", aligned_new_struct},
    {"aligned_operator_new_4096", aligned_operator_new_4096},
    {"nothrow_new_impossible_returns_nullptr", nothrow_new_impossible_returns_nullptr},
    {"new_impossible_throws_bad_alloc", new_impossible_throws_bad_alloc},
    {"new_goes_through_liballoc", new_goes_through_liballoc},
  };
  for (const auto &t : tests) {
    int before = failures;
    t.fn();
    std::printf("%-44s %s\n", t.name, failures == before ? "ok" : "FAILED");
  }
  std::printf("%d check(s) failed, %d test(s) skipped\n", failures, skipped);
  return failures ? 1 : 0;
}

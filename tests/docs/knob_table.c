/* knob_table.c - docs/configuration.md's table of options, generated from
 * ALLOC_SHM_KNOBS (alloc_shm.h), the one declaration of every knob.
 *
 *   knob_table print            the table, as markdown, on stdout
 *   knob_table check FILE       exit 1 (saying where) unless FILE holds
 *                               exactly that table between its markers
 *   knob_table write FILE       replace the table between the markers
 *
 * ctest runs `check` (docs_knobs), so a knob added to the list and not to
 * the documentation fails the tests; `cmake --build build --target
 * docs_knobs` runs `write`.  Only the list is read: no allocator code. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <alloc_shm.h>

#define BEGIN_MARK "<!-- knobs: begin"
#define END_MARK "<!-- knobs: end -->"

typedef struct text_s {
  char *data;
  size_t len, cap;
} text_t;

static void put(text_t *t, const char *s) {
  size_t n = strlen(s);
  if (t->len + n + 1 > t->cap) {
    t->cap = (t->len + n + 1) * 2;
    t->data = realloc(t->data, t->cap);
    if (!t->data) abort();
  }
  memcpy(t->data + t->len, s, n + 1);
  t->len += n;
}

/* A bound as the docs write it: powers of two from 2^20 up as 2^N. */
static void put_bound(text_t *t, long long v) {
  char buf[32];
  if (v >= (1ll << 20) && (v & (v - 1)) == 0) snprintf(buf, sizeof buf, "2^%d", __builtin_ctzll((unsigned long long)v));
  else snprintf(buf, sizeof buf, "%lld", v);
  put(t, buf);
}

static void put_modes(text_t *t, const char *knob) {
  for (int m = 0; alloc_shm_enum_name(knob, m); m++) {
    put(t, m ? ", `" : "`");
    put(t, alloc_shm_enum_name(knob, m));
    put(t, "`");
  }
}

static void put_values(text_t *t, const char *name, const char *type, long long min, long long max) {
  if (strcmp(type, "BOOL") == 0) put(t, "`true`, `false`");
  else if (strcmp(type, "ENUM") == 0) put_modes(t, name);
  else if (strcmp(type, "PATH") == 0) put(t, "absolute path, < 256 bytes");
  else if (strcmp(type, "BYTES") == 0) {
    for (int m = 0; alloc_shm_bytes_word(name, -1 - m); m++) {
      put(t, "`");
      put(t, alloc_shm_bytes_word(name, -1 - m));
      put(t, "`, ");
    }
    put(t, "bytes (K, M, G, T suffixes) ");
    put_bound(t, min);
    put(t, " … ");
    put_bound(t, max);
  }
  else {
    put_bound(t, min);
    put(t, " … ");
    put_bound(t, max);
  }
}

static const char *ctl_type(const char *type) {
  if (strcmp(type, "BOOL") == 0) return "`bool`";
  if (strcmp(type, "INT") == 0) return "`ssize_t`";
  if (strcmp(type, "BYTES") == 0) return "`ssize_t` (a word: -1, -2, …)";
  if (strcmp(type, "COUNT") == 0) return "`unsigned`";
  return "`const char *`";
}

static void put_row(text_t *t, const char *name, const char *type, const char *def, long long min,
                    long long max, const char *change, const char *segment, const char *help) {
  put(t, "| `");
  put(t, name);
  put(t, "` | ");
  put_values(t, name, type, min, max);
  put(t, " | `");
  put(t, def);
  put(t, "` | ");
  put(t, strcmp(change, "FIXED") == 0 ? "no" : "yes");
  put(t, " | ");
  put(t, strcmp(segment, "SHM") == 0 ? "yes" : "no");
  put(t, " | ");
  put(t, ctl_type(type));
  put(t, " | ");
  put(t, help);
  put(t, " |\n");
}

static text_t table(void) {
  text_t t = {0};
  put(&t, BEGIN_MARK " (generated from ALLOC_SHM_KNOBS by tests/docs/knob_table.c: edit the list, then "
          "`cmake --build build --target docs_knobs`) -->\n");
  put(&t, "| option | values | default | live | in the segment | `alloc_ctl` type | meaning |\n");
  put(&t, "|---|---|---|---|---|---|---|\n");
#define X(name, type, def, min, max, change, segment, help) \
  put_row(&t, #name, #type, def, min, max, #change, #segment, help);
  ALLOC_SHM_KNOBS(X)
#undef X
  put(&t, END_MARK "\n");
  return t;
}

static text_t read_file(const char *path) {
  text_t t = {0};
  FILE *f = fopen(path, "r");
  if (!f) {
    perror(path);
    exit(2);
  }
  char buf[4096];
  size_t n;
  put(&t, "");
  while ((n = fread(buf, 1, sizeof buf - 1, f)) > 0) {
    buf[n] = 0;
    put(&t, buf);
  }
  fclose(f);
  return t;
}

/* The generated part of `doc`: from the begin marker to the end of the end
 * marker's line.  False if the markers are missing. */
static bool find_table(const text_t *doc, size_t *from, size_t *to) {
  const char *b = strstr(doc->data, BEGIN_MARK);
  const char *e = b ? strstr(b, END_MARK) : NULL;
  if (!e) return false;
  *from = (size_t)(b - doc->data);
  *to = (size_t)(e - doc->data) + strlen(END_MARK);
  if (doc->data[*to] == '\n') (*to)++;
  return true;
}

/* The first line where the file and the generated table differ. */
static void report_difference(const char *path, const char *have, const char *want) {
  int line = 1;
  const char *start = want;   /* of the current line of `want` */
  for (size_t i = 0; have[i] && have[i] == want[i]; i++)
    if (want[i] == '\n') line++, start = want + i + 1;
  const char *eol = strchr(start, '\n');
  fprintf(stderr, "%s: the options table differs from ALLOC_SHM_KNOBS at line %d of the table; expected:\n%.*s\n"
                  "(regenerate it: cmake --build build --target docs_knobs)\n",
          path, line, eol ? (int)(eol - start) : (int)strlen(start), start);
}

int main(int argc, char **argv) {
  text_t want = table();
  if (argc == 2 && strcmp(argv[1], "print") == 0) {
    fputs(want.data, stdout);
    return 0;
  }
  if (argc != 3 || (strcmp(argv[1], "check") != 0 && strcmp(argv[1], "write") != 0)) {
    fprintf(stderr, "usage: knob_table print | check FILE | write FILE\n");
    return 2;
  }
  text_t doc = read_file(argv[2]);
  size_t from, to;
  if (!find_table(&doc, &from, &to)) {
    fprintf(stderr, "%s: no '%s' ... '%s' markers\n", argv[2], BEGIN_MARK, END_MARK);
    return 1;
  }
  doc.data[to] = 0;
  const char *have = doc.data + from;
  if (strcmp(argv[1], "check") == 0) {
    if (strcmp(have, want.data) == 0) return 0;
    report_difference(argv[2], have, want.data);
    return 1;
  }
  text_t rest = read_file(argv[2]);
  FILE *f = fopen(argv[2], "w");
  if (!f) {
    perror(argv[2]);
    return 2;
  }
  fwrite(rest.data, 1, from, f);
  fputs(want.data, f);
  fputs(rest.data + to, f);
  return fclose(f) == 0 ? 0 : 2;
}

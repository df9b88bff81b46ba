/* symbolize.c - function names and file:line for a profile's addresses,
 * from ELF symbol tables (libelf) and DWARF line tables (libdw) of the
 * files the process's module list names, which are hostile input: the rules
 * a file must meet are in symbolize.h.
 *
 * A loaded binary is its file's bytes in memory (elf_memory: a mapping
 * could be truncated under us by the file's owner, and SIGBUS would kill
 * allocd), its function symbols sorted by address, and libdw's handle on
 * its DWARF (or on its detached debug file's).  Entries are cached by build
 * ID and evicted least recently used, never while a session uses them. */
#include "symbolize.h"

#include "log.h"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwelf.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SYMS_MAX (4u << 20)   /* function symbols kept per file */

typedef struct sym_s {
  uint64_t addr, size;
  const char *name;   /* in the image's string table */
} sym_t;

typedef struct image_s {
  char *bytes;
  size_t size;
  Elf *elf;
} image_t;

struct sym_binary_s {
  char key[80];            /* build ID in hex, or the file's identity */
  dev_t dev;
  ino_t ino;
  struct timespec mtime;
  off_t size;
  uint64_t bytes;          /* memory it holds */
  uint64_t last_used;
  unsigned session;        /* the session that last used it: not evicted during it */
  image_t file, debug;     /* debug: the detached debug file, if any */
  Dwarf *dwarf;            /* of file or debug; NULL without DWARF */
  sym_t *syms;
  size_t nsyms;
};

struct symbolizer_s {
  pthread_mutex_t lock;
  sym_binary_t *cache[SYM_CACHE * 2];   /* up to SYM_CACHE, more only while a session pins them */
  int ncache;
  uint64_t clock, deadline_ms, bytes;
  unsigned session, loads_left;
  uint64_t loads, hits, refused;
};

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

symbolizer_t *sym_new(void) {
  elf_version(EV_CURRENT);
  symbolizer_t *s = calloc(1, sizeof *s);
  if (s) pthread_mutex_init(&s->lock, NULL);
  return s;
}

static void image_free(image_t *im) {
  if (im->elf) elf_end(im->elf);
  free(im->bytes);
  memset(im, 0, sizeof *im);
}

static void binary_free(sym_binary_t *b) {
  if (!b) return;
  if (b->dwarf) dwarf_end(b->dwarf);
  image_free(&b->debug);
  image_free(&b->file);
  free(b->syms);
  free(b);
}

void sym_free(symbolizer_t *s) {
  if (!s) return;
  for (int i = 0; i < s->ncache; i++) binary_free(s->cache[i]);
  pthread_mutex_destroy(&s->lock);
  free(s);
}

void sym_begin(symbolizer_t *s, uint64_t deadline_ms) {
  pthread_mutex_lock(&s->lock);
  s->session++;
  s->deadline_ms = deadline_ms;
  s->loads_left = SYM_LOADS_PER_SESSION;
}

/* Evict the least recently used entries not used by the current session
 * while over the count or byte bound. */
static void evict(symbolizer_t *s, int max_entries, uint64_t max_bytes) {
  while (s->ncache > max_entries || s->bytes > max_bytes) {
    int victim = -1;
    for (int i = 0; i < s->ncache; i++)
      if (s->cache[i]->session != s->session && (victim < 0 || s->cache[i]->last_used < s->cache[victim]->last_used))
        victim = i;
    if (victim < 0) return;
    s->bytes -= s->cache[victim]->bytes;
    binary_free(s->cache[victim]);
    s->cache[victim] = s->cache[--s->ncache];
  }
}

void sym_end(symbolizer_t *s) {
  s->session++;   /* nothing is pinned any more */
  evict(s, SYM_CACHE, SYM_CACHE_BYTES);
  pthread_mutex_unlock(&s->lock);
}

void sym_counters(symbolizer_t *s, uint64_t *loads, uint64_t *hits, uint64_t *refused) {
  pthread_mutex_lock(&s->lock);
  *loads = s->loads, *hits = s->hits, *refused = s->refused;
  pthread_mutex_unlock(&s->lock);
}

/* ---- which files may be read --------------------------------------------- */

/* Could `owner` read (want S_IROTH/S_IRUSR) or search (S_IXOTH/S_IXUSR) st
 * by its mode bits? */
static bool owner_may(const struct stat *st, uid_t owner, mode_t other_bit, mode_t user_bit) {
  if (owner == 0 || (st->st_mode & other_bit)) return true;
  return st->st_uid == owner && (st->st_mode & user_bit);
}

/* Every directory above path searchable by owner. */
static bool dirs_searchable(const char *path, uid_t owner) {
  char dir[256];
  const char *p = path;
  while ((p = strchr(p + 1, '/'))) {
    size_t n = (size_t)(p - path);
    if (n >= sizeof dir) return false;
    memcpy(dir, path, n);
    dir[n] = 0;
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || !owner_may(&st, owner, S_IXOTH, S_IXUSR)) return false;
  }
  return true;
}

/* Open path for reading if it is a regular file of acceptable size that
 * owner could read; -1 with *why otherwise.  The file is first opened with
 * O_PATH (no side effect, whatever it is) and only a regular file is then
 * opened for reading, through /proc/self/fd, so a FIFO or device is never
 * opened, and what is read is what was checked. */
static int open_checked(const char *path, uid_t owner, struct stat *st, const char **why) {
  *why = "the module's file is not readable by the process's owner";
  if (path[0] != '/' || !dirs_searchable(path, owner)) return -1;
  int pfd = open(path, O_PATH | O_CLOEXEC);
  if (pfd < 0) {
    *why = "the module's file cannot be opened";
    return -1;
  }
  /* The directories of where the path led, symlinks followed, must be
   * searchable too: a link must not lead into a directory the owner
   * cannot enter. */
  char proc[64], real[256];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", pfd);
  ssize_t n = readlink(proc, real, sizeof real - 1);
  if (n <= 0 || n >= (ssize_t)sizeof real - 1 || (real[n] = 0, !dirs_searchable(real, owner))) {
    close(pfd);
    return -1;
  }
  int fd = -1;
  if (fstat(pfd, st) != 0 || !S_ISREG(st->st_mode)) {
    *why = "the module's path is not a regular file";
  } else if (st->st_size < 64 || (uint64_t)st->st_size > SYM_FILE_MAX) {
    *why = "the module's file is too small or too large to symbolize";
  } else if (owner_may(st, owner, S_IROTH, S_IRUSR)) {
    fd = open(proc, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    struct stat st2;
    if (fd >= 0 && (fstat(fd, &st2) != 0 || st2.st_dev != st->st_dev || st2.st_ino != st->st_ino)) {
      close(fd);
      fd = -1;
    }
    if (fd < 0) *why = "the module's file cannot be opened";
  }
  close(pfd);
  return fd;
}

/* Read the whole file (its size as checked) into an Elf in memory. */
static bool image_read(int fd, off_t size, image_t *im) {
  memset(im, 0, sizeof *im);
  if (!(im->bytes = malloc((size_t)size))) return false;
  size_t got = 0;
  while (got < (size_t)size) {
    ssize_t n = pread(fd, im->bytes + got, (size_t)size - got, (off_t)got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += (size_t)n;
  }
  im->size = got;
  if (got != (size_t)size || !(im->elf = elf_memory(im->bytes, im->size)) || elf_kind(im->elf) != ELF_K_ELF) {
    image_free(im);
    return false;
  }
  return true;
}

static void hex(const uint8_t *b, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) out[2 * i] = digits[b[i] >> 4], out[2 * i + 1] = digits[b[i] & 15];
  out[2 * n] = 0;
}

/* The image's build ID equals want[n] (n == 0: it has none). */
static bool build_id_matches(image_t *im, const uint8_t *want, uint32_t n) {
  const void *id;
  ssize_t len = dwelf_elf_gnu_build_id(im->elf, &id);
  if (n == 0) return len <= 0;
  return len == (ssize_t)n && memcmp(id, want, n) == 0;
}

/* ---- loading ------------------------------------------------------------- */

static int sym_cmp(const void *a, const void *b) {
  const sym_t *x = a, *y = b;
  return x->addr < y->addr ? -1 : x->addr > y->addr;
}

/* Function symbols of the first table of `type` in im. */
static bool load_syms(sym_binary_t *b, image_t *im, Elf64_Word type) {
  Elf_Scn *scn = NULL;
  while ((scn = elf_nextscn(im->elf, scn))) {
    GElf_Shdr sh;
    if (!gelf_getshdr(scn, &sh) || sh.sh_type != type || sh.sh_entsize == 0) continue;
    Elf_Data *data = elf_getdata(scn, NULL);
    if (!data) continue;
    size_t count = sh.sh_size / sh.sh_entsize;
    if (count > SYMS_MAX) count = SYMS_MAX;
    sym_t *syms = malloc((count ? count : 1) * sizeof *syms);
    if (!syms) return false;
    size_t n = 0;
    for (size_t i = 0; i < count; i++) {
      GElf_Sym s;
      if (!gelf_getsym(data, (int)i, &s)) break;
      int t = GELF_ST_TYPE(s.st_info);
      if ((t != STT_FUNC && t != STT_GNU_IFUNC) || s.st_shndx == SHN_UNDEF || s.st_value == 0) continue;
      const char *name = elf_strptr(im->elf, sh.sh_link, s.st_name);
      if (!name || !*name) continue;
      syms[n++] = (sym_t){s.st_value, s.st_size, name};
    }
    qsort(syms, n, sizeof *syms, sym_cmp);
    b->syms = syms;
    b->nsyms = n;
    b->bytes += n * sizeof *syms;
    return n > 0;
  }
  return false;
}

/* The system's detached debug file for this build ID, if there is one
 * (/usr/lib/debug/.build-id/ab/cdef....debug, as Debian's -dbgsym
 * packages install them), checked like any module file. */
static bool load_debug_file(sym_binary_t *b, const uint8_t *id, uint32_t n, uid_t owner) {
  if (n < 2) return false;
  char idhex[65], path[160];
  hex(id, n, idhex);
  snprintf(path, sizeof path, "/usr/lib/debug/.build-id/%.2s/%s.debug", idhex, idhex + 2);
  struct stat st;
  const char *why;
  int fd = open_checked(path, owner, &st, &why);
  if (fd < 0) return false;
  bool ok = image_read(fd, st.st_size, &b->debug) && build_id_matches(&b->debug, id, n);
  close(fd);
  if (!ok) {
    image_free(&b->debug);
    return false;
  }
  b->bytes += b->debug.size;
  return true;
}

static sym_binary_t *load(symbolizer_t *s, int fd, const struct stat *st, const alloc_shm_module_t *m, uid_t owner,
                          const char **why) {
  sym_binary_t *b = calloc(1, sizeof *b);
  if (!b) return NULL;
  *why = "the module's file is not an ELF file";
  if (!image_read(fd, st->st_size, &b->file)) goto fail;
  *why = "the module's file has another build ID than the process's module (rebuilt or replaced since it was loaded?)";
  if (!build_id_matches(&b->file, m->build_id, m->build_id_size)) goto fail;
  b->bytes = sizeof *b + b->file.size;
  b->dwarf = dwarf_begin_elf(b->file.elf, DWARF_C_READ, NULL);
  bool debug = load_debug_file(b, m->build_id, m->build_id_size, owner);
  if (!b->dwarf && debug) b->dwarf = dwarf_begin_elf(b->debug.elf, DWARF_C_READ, NULL);
  /* .symtab (the full table, here or in the debug file), else .dynsym */
  if (!load_syms(b, &b->file, SHT_SYMTAB) && !(debug && load_syms(b, &b->debug, SHT_SYMTAB))) {
    free(b->syms);
    b->syms = NULL;
    load_syms(b, &b->file, SHT_DYNSYM);
  }
  b->dev = st->st_dev, b->ino = st->st_ino, b->mtime = st->st_mtim, b->size = st->st_size;
  s->loads++;
  return b;
fail:
  binary_free(b);
  return NULL;
}

static void binary_key(const alloc_shm_module_t *m, const struct stat *st, char *key, size_t size) {
  if (m->build_id_size) {
    hex(m->build_id, m->build_id_size, key);
  } else {
    snprintf(key, size, "file:%llx:%llx:%lld.%09ld", (unsigned long long)st->st_dev, (unsigned long long)st->st_ino,
             (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
  }
}

sym_binary_t *sym_binary(symbolizer_t *s, const alloc_shm_module_t *m, const char *main_exe, uid_t owner,
                         const char **why) {
  const char *path = m->path[0] ? m->path : (m->flags & 1) && main_exe && main_exe[0] ? main_exe : NULL;
  *why = "the module has no path";
  if (!path) return NULL;
  struct stat st;
  int fd = open_checked(path, owner, &st, why);
  if (fd < 0) {
    s->refused++;
    return NULL;
  }
  char key[80];
  binary_key(m, &st, key, sizeof key);
  sym_binary_t *b = NULL;
  /* A cached entry serves only the very file it was read from: another
   * process claiming the same build ID at a path it can read. */
  for (int i = 0; i < s->ncache && !b; i++) {
    sym_binary_t *c = s->cache[i];
    if (strcmp(c->key, key) == 0 && c->dev == st.st_dev && c->ino == st.st_ino && c->size == st.st_size &&
        c->mtime.tv_sec == st.st_mtim.tv_sec && c->mtime.tv_nsec == st.st_mtim.tv_nsec)
      b = c, s->hits++;
  }
  if (!b) {
    *why = "too many files to read for one profile: addresses only";
    if (s->loads_left == 0 || mono_ms() >= s->deadline_ms) {
      close(fd);
      return NULL;
    }
    s->loads_left--;
    evict(s, SYM_CACHE - 1, SYM_CACHE_BYTES - (uint64_t)st.st_size);
    if (s->ncache == (int)(sizeof s->cache / sizeof s->cache[0])) {
      close(fd);
      return NULL;
    }
    if (!(b = load(s, fd, &st, m, owner, why))) {
      s->refused++;
      close(fd);
      return NULL;
    }
    snprintf(b->key, sizeof b->key, "%s", key);
    s->cache[s->ncache++] = b;
    s->bytes += b->bytes;
  }
  close(fd);
  b->session = s->session;
  b->last_used = ++s->clock;
  return b;
}

/* ---- lookups ------------------------------------------------------------- */

static const sym_t *find_sym(const sym_binary_t *b, uint64_t addr) {
  size_t lo = 0, hi = b->nsyms;   /* the last symbol with sym.addr <= addr */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (b->syms[mid].addr <= addr) lo = mid + 1;
    else hi = mid;
  }
  if (lo == 0) return NULL;
  const sym_t *sym = &b->syms[lo - 1];
  if (sym->size ? addr < sym->addr + sym->size : lo == b->nsyms || addr < b->syms[lo].addr) return sym;
  return NULL;
}

/* The function as the source names it (not a clone's symbol such as
 * f.constprop.0): its linkage name when it has one (C++: pprof
 * demangles), else its name, through abstract origins. */
static const char *die_function_name(Dwarf_Die *die) {
  Dwarf_Attribute attr;
  const char *name = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_linkage_name, &attr));
  return name ? name : dwarf_diename(die);
}

/* From DWARF: the line of addr, then the chain of inlined calls around
 * it (dwarf_getscopes lists the scopes innermost first: each inlined
 * subroutine's call file and line is the position in the next function
 * out), ending with the subprogram. */
static void dwarf_lines(Dwarf_Die *cu, uint64_t addr, sym_frame_t *out) {
  Dwarf_Line *line = dwarf_getsrc_die(cu, addr);
  int lineno = 0;
  const char *file = line ? dwarf_linesrc(line, NULL, NULL) : NULL;
  if (!file || dwarf_lineno(line, &lineno) != 0) file = NULL, lineno = 0;
  Dwarf_Files *files = NULL;
  size_t nfiles = 0;
  if (dwarf_getsrcfiles(cu, &files, &nfiles) != 0) files = NULL, nfiles = 0;
  /* dwarf_getscopes follows an inlined instance into its abstract
   * definition; the chain of concrete callers is that of the innermost
   * function's DIE (dwarf_getscopes_die), as eu-addr2line -i does. */
  Dwarf_Die *scopes = NULL, innermost;
  int n = dwarf_getscopes(cu, addr, &scopes), first = -1;
  for (int i = 0; i < n && first < 0; i++)
    if (dwarf_tag(&scopes[i]) == DW_TAG_subprogram || dwarf_tag(&scopes[i]) == DW_TAG_inlined_subroutine) first = i;
  if (first >= 0) {
    innermost = scopes[first];
    free(scopes);
    scopes = NULL;
    n = dwarf_getscopes_die(&innermost, &scopes);
  }
  for (int i = 0; first >= 0 && i < n && out->nlines <= SYM_MAX_INLINE; i++) {
    int tag = dwarf_tag(&scopes[i]);
    if (tag != DW_TAG_subprogram && tag != DW_TAG_inlined_subroutine) continue;
    out->lines[out->nlines++] = (sym_line_t){die_function_name(&scopes[i]), file, lineno};
    if (tag == DW_TAG_subprogram) break;
    Dwarf_Attribute attr;
    Dwarf_Word call_file = 0, call_line = 0;
    dwarf_formudata(dwarf_attr(&scopes[i], DW_AT_call_file, &attr), &call_file);
    dwarf_formudata(dwarf_attr(&scopes[i], DW_AT_call_line, &attr), &call_line);
    file = files && call_file < nfiles ? dwarf_filesrc(files, call_file, NULL, NULL) : NULL;
    lineno = call_line < 1u << 30 ? (int)call_line : 0;
  }
  free(scopes);
  if (out->nlines == 0 && file) out->lines[out->nlines++] = (sym_line_t){NULL, file, lineno};
}

bool sym_lookup(symbolizer_t *s, sym_binary_t *b, uint64_t addr, sym_frame_t *out) {
  memset(out, 0, sizeof *out);
  if (!b || mono_ms() >= s->deadline_ms) return false;
  Dwarf_Die cu;
  if (b->dwarf && dwarf_addrdie(b->dwarf, addr, &cu)) dwarf_lines(&cu, addr, out);
  /* the symbol table names the physical function when DWARF did not */
  const sym_t *sym = find_sym(b, addr);
  if (sym && out->nlines == 0) out->lines[out->nlines++] = (sym_line_t){sym->name, NULL, 0};
  else if (sym && !out->lines[out->nlines - 1].function) out->lines[out->nlines - 1].function = sym->name;
  return out->nlines > 0;
}

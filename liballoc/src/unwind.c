/* unwind.c - the heap profiler's stack walker: the calling thread's
 * return addresses, from the DWARF call frame information (.eh_frame)
 * that x86-64 objects carry whether or not they keep frame pointers
 * (Debian's do not).
 *
 * Why not libgcc_s's _Unwind_Backtrace, or libunwind: both must be
 * dlopen'ed by a C program (~200,000 and ~460,000 instructions, in short
 * programs more than all their samples), libgcc_s's walk interprets every
 * register's rule of every frame (~16,000 instructions a stack), and
 * libunwind's cheaper walk keeps a 256 KiB cache per thread.  A sample
 * needs much less: only the return address, the stack pointer and rbp
 * (the one callee-saved register x86-64 code defines frames by) are
 * followed, and each return address's rules, once worked out, are kept
 * in a table shared by the threads (rule_cache), so a stack whose call
 * sites were seen before costs ~30-40 instructions a frame (step_usual).
 *
 * The walk: glibc's _dl_find_object (lock-free, no allocation; glibc
 * 2.35) names the object holding a pc and its .eh_frame_hdr, whose sorted
 * table finds the FDE; the CIE's and the FDE's instructions are run up to
 * the pc to get the CFA (rsp or rbp plus an offset, or the two-operation
 * expression stack-realigning prologues use), where the return address
 * is, and where rbp is.  Anything else (signal frames, PLT stubs, rules
 * in other registers, other expressions) ends the stack there: a sample's
 * stack may come out short, never wrong.
 *
 * Trust: the CFI is the program's own; the walk reads only the stack
 * between its own stack pointer and UNWIND_SPAN above it, moving up
 * at every frame, and at most `max` frames.  It allocates nothing, never
 * waits on a lock of liballoc's (dl_iterate_phdr takes the loader's, once
 * a walk: rule_cache_take), so it may run inside malloc. */
#include "alloc_internal.h"

#if LA_HAVE_OWN_UNWINDER

#include <dlfcn.h>
#include <link.h>
#include <stddef.h>
#include <string.h>

#define UNWIND_SPAN ((uintptr_t)1 << 30)   /* above the caller's stack pointer: no stack is bigger */
#define STATE_DEPTH 8                      /* DW_CFA_remember_state nesting */

/* DWARF register numbers on x86-64. */
enum { REG_RBP = 6, REG_RSP = 7, REG_RA = 16 };

/* Where a register's value in the caller is. */
enum rule_kind {
  RULE_SAME,        /* unchanged: rbp in a function that never saves it */
  RULE_UNDEF,       /* none: the return address of the outermost frame */
  RULE_AT_CFA,      /* saved at CFA + off */
  RULE_AT_REG,      /* saved at reg + off (DW_CFA_expression: DW_OP_breg) */
  RULE_UNKNOWN,     /* anything else */
};

typedef struct rule_s {
  uint8_t kind, reg;
  int32_t off;
} rule_t;

/* The frame of one pc: CFA = reg + off, or *(reg + off) (deref). */
typedef struct frame_rules_s {
  uint8_t cfa_reg;
  bool cfa_deref, bad;
  int32_t cfa_off;
  rule_t ra, rbp;
} frame_rules_t;

/* ---- reading .eh_frame ---------------------------------------------------- */

typedef struct cursor_s {
  const uint8_t *p, *end;
  bool bad;
} cursor_t;

static uint8_t read_u8(cursor_t *c) {
  if (c->p >= c->end) return c->bad = true, 0;
  return *c->p++;
}

static uint64_t read_uleb(cursor_t *c) {
  uint64_t v = 0;
  for (unsigned shift = 0; shift < 64; shift += 7) {
    uint8_t b = read_u8(c);
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
  c->bad = true;
  return 0;
}

static int64_t read_sleb(cursor_t *c) {
  uint64_t v = 0;
  for (unsigned shift = 0; shift < 64; shift += 7) {
    uint8_t b = read_u8(c);
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      if (shift + 7 < 64 && (b & 0x40)) v |= ~(uint64_t)0 << (shift + 7);
      return (int64_t)v;
    }
  }
  c->bad = true;
  return 0;
}

static uint64_t read_fixed(cursor_t *c, unsigned bytes) {
  if ((size_t)(c->end - c->p) < bytes) return c->bad = true, 0;
  uint64_t v = 0;
  memcpy(&v, c->p, bytes);   /* little-endian */
  c->p += bytes;
  return v;
}

/* A pointer in DW_EH_PE encoding `enc`; `datarel` is the base of
 * DW_EH_PE_datarel (the .eh_frame_hdr).  Indirect and textrel/funcrel
 * ones are not needed by the walk and mark the cursor bad. */
static uintptr_t read_encoded(cursor_t *c, uint8_t enc, uintptr_t datarel) {
  if (enc == 0xff) return 0;   /* DW_EH_PE_omit */
  uintptr_t at = (uintptr_t)c->p;
  uint64_t v;
  switch (enc & 0x0f) {
  case 0x00: v = read_fixed(c, 8); break;                          /* absptr */
  case 0x01: v = read_uleb(c); break;
  case 0x02: v = read_fixed(c, 2); break;
  case 0x03: v = read_fixed(c, 4); break;
  case 0x04: case 0x0c: v = read_fixed(c, 8); break;
  case 0x09: v = (uint64_t)read_sleb(c); break;
  case 0x0a: v = (uint64_t)(int64_t)(int16_t)read_fixed(c, 2); break;
  case 0x0b: v = (uint64_t)(int64_t)(int32_t)read_fixed(c, 4); break;
  default: c->bad = true; return 0;
  }
  switch (enc & 0x70) {
  case 0x00: break;
  case 0x10: v += at; break;        /* pcrel */
  case 0x30: v += datarel; break;   /* datarel */
  default: c->bad = true; return 0;
  }
  if (enc & 0x80) c->bad = true;    /* indirect */
  return (uintptr_t)v;
}

static intptr_t table_entry(const uint8_t *table, uint64_t i) {
  int32_t v;
  memcpy(&v, table + 4 * i, 4);
  return v;
}

/* The FDE covering pc in the object whose .eh_frame_hdr is `hdr`, or
 * NULL: a binary search of the header's table, in the encoding every
 * linker writes (4-byte offsets from the header). */
static const uint8_t *find_fde(const uint8_t *hdr, uintptr_t pc) {
  if (hdr[0] != 1 || hdr[3] != 0x3b) return NULL;   /* version 1; table: datarel | sdata4 */
  cursor_t c = {hdr + 4, hdr + 4 + 16, false};
  (void)read_encoded(&c, hdr[1], (uintptr_t)hdr);      /* eh_frame_ptr */
  uint64_t count = read_encoded(&c, hdr[2], (uintptr_t)hdr);
  if (c.bad || count == 0 || count > (1u << 28)) return NULL;
  const uint8_t *table = c.p;                          /* (initial location, fde) pairs */
  uint64_t lo = 0, hi = count;
  while (hi - lo > 1) {
    uint64_t mid = lo + (hi - lo) / 2;
    if ((uintptr_t)hdr + table_entry(table, 2 * mid) <= pc) lo = mid;
    else hi = mid;
  }
  if ((uintptr_t)hdr + table_entry(table, 2 * lo) > pc) return NULL;
  return hdr + table_entry(table, 2 * lo + 1);
}

/* One entry (CIE or FDE) of .eh_frame: its body after the length. */
static bool entry_body(const uint8_t *at, cursor_t *body) {
  uint64_t len;
  memcpy(&len, at, 4);
  len &= 0xffffffffu;
  at += 4;
  if (len == 0xffffffffu) {      /* 64-bit length */
    memcpy(&len, at, 8);
    at += 8;
  }
  if (len == 0 || len > (1u << 24)) return false;
  *body = (cursor_t){at, at + len, false};
  return true;
}

typedef struct cie_s {
  uint64_t code_align;
  int64_t data_align;
  uint8_t ra_reg, fde_enc;
  bool fde_aug, signal;
  cursor_t program;              /* its initial instructions */
} cie_t;

static bool parse_cie(const uint8_t *at, cie_t *cie) {
  cursor_t c;
  if (!entry_body(at, &c) || read_fixed(&c, 4) != 0) return false;   /* CIE id 0 */
  uint8_t version = read_u8(&c);
  if (version != 1 && version != 3) return false;
  const char *aug = (const char *)c.p;
  while (read_u8(&c) != 0 && !c.bad) {}
  if (c.bad) return false;   /* no end to the augmentation string */
  cie->code_align = read_uleb(&c);
  cie->data_align = read_sleb(&c);
  cie->ra_reg = version == 1 ? read_u8(&c) : (uint8_t)read_uleb(&c);
  cie->fde_enc = 0;
  cie->fde_aug = cie->signal = false;
  if (aug[0] == 'z') {
    uint64_t len = read_uleb(&c);
    const uint8_t *after = c.p + len;
    if (c.bad || len > (uint64_t)(c.end - c.p)) return false;
    for (const char *a = aug + 1; *a; a++) {
      if (*a == 'R') cie->fde_enc = read_u8(&c);
      else if (*a == 'L') (void)read_u8(&c);
      else if (*a == 'P') {
        uint8_t enc = read_u8(&c);
        (void)read_encoded(&c, enc & 0x7f, 0);   /* the personality: not needed */
      } else if (*a == 'S') cie->signal = true;
      else return false;
    }
    c.p = after;
    cie->fde_aug = true;
  } else if (aug[0] != 0) {
    return false;
  }
  cie->program = c;
  return !c.bad && cie->code_align != 0;
}

/* ---- running the instructions --------------------------------------------- */

/* The rule of register `reg` the walk follows, or NULL (one it ignores). */
static rule_t *rule_of(frame_rules_t *f, uint64_t reg) {
  return reg == REG_RBP ? &f->rbp : reg == REG_RA ? &f->ra : NULL;
}

static void set_rule(frame_rules_t *f, uint64_t reg, uint8_t kind, int64_t off) {
  rule_t *r = rule_of(f, reg);
  if (r) *r = (rule_t){off == (int32_t)off ? kind : RULE_UNKNOWN, 0, (int32_t)off};
}

/* DW_CFA_def_cfa_expression / DW_CFA_expression blocks of the one shape
 * compilers emit for realigned stacks: DW_OP_breg<n> off [DW_OP_deref]. */
static bool read_breg_block(cursor_t *c, uint8_t *reg, int32_t *off, bool *deref) {
  uint64_t len = read_uleb(c);
  if (c->bad || len > (uint64_t)(c->end - c->p)) return false;
  cursor_t e = {c->p, c->p + len, false};
  c->p += len;
  uint8_t op = read_u8(&e);
  if (op < 0x70 || op > 0x8f) return false;           /* DW_OP_breg0..31 */
  int64_t o = read_sleb(&e);
  *deref = e.p < e.end && read_u8(&e) == 0x06;        /* DW_OP_deref */
  *reg = (uint8_t)(op - 0x70);
  *off = (int32_t)o;
  return !e.bad && e.p == e.end && o == (int32_t)o;
}

/* Run `prog` on f while its location stays at or before pc (the CIE's
 * instructions: with pc UINTPTR_MAX).  `initial` is the state after the
 * CIE (DW_CFA_restore), NULL while running the CIE. */
static void run_cfa(const cie_t *cie, cursor_t prog, uintptr_t loc, uintptr_t pc,
                    frame_rules_t *f, frame_rules_t *initial) {
  frame_rules_t saved[STATE_DEPTH];
  unsigned depth = 0;
  cursor_t *c = &prog;
  while (c->p < c->end && !c->bad && !f->bad) {
    uint8_t op = read_u8(c);
    uint64_t reg, delta = 0;
    switch (op >> 6) {
    case 1: delta = op & 0x3f; goto advance;                                         /* advance_loc */
    case 2: set_rule(f, op & 0x3f, RULE_AT_CFA, (int64_t)read_uleb(c) * cie->data_align); continue;   /* offset */
    case 3: reg = op & 0x3f; goto restore;                                           /* restore */
    }
    switch (op) {
    case 0x00: break;                                                                /* nop */
    case 0x02: delta = read_fixed(c, 1); goto advance;
    case 0x03: delta = read_fixed(c, 2); goto advance;
    case 0x04: delta = read_fixed(c, 4); goto advance;
    case 0x05: reg = read_uleb(c); set_rule(f, reg, RULE_AT_CFA, (int64_t)read_uleb(c) * cie->data_align); break;
    case 0x06: reg = read_uleb(c); goto restore;
    case 0x07: set_rule(f, read_uleb(c), RULE_UNDEF, 0); break;
    case 0x08: set_rule(f, read_uleb(c), RULE_SAME, 0); break;
    case 0x09: reg = read_uleb(c); (void)read_uleb(c); set_rule(f, reg, RULE_UNKNOWN, 0); break;   /* register */
    case 0x0a:                                                                       /* remember_state */
      if (depth == STATE_DEPTH) return (void)(f->bad = true);
      saved[depth++] = *f;
      break;
    case 0x0b:                                                                       /* restore_state */
      if (depth == 0) return (void)(f->bad = true);
      *f = saved[--depth];
      break;
    case 0x0c: f->cfa_reg = (uint8_t)read_uleb(c); f->cfa_off = (int32_t)read_uleb(c); f->cfa_deref = false; break;
    case 0x0d: f->cfa_reg = (uint8_t)read_uleb(c); f->cfa_deref = false; break;
    case 0x0e: f->cfa_off = (int32_t)read_uleb(c); break;
    case 0x0f:                                                                       /* def_cfa_expression */
      if (!read_breg_block(c, &f->cfa_reg, &f->cfa_off, &f->cfa_deref)) f->bad = true;
      break;
    case 0x10: {                                                                     /* expression */
      reg = read_uleb(c);
      rule_t r = {RULE_AT_REG, 0, 0};
      bool deref;
      if (!read_breg_block(c, &r.reg, &r.off, &deref) || deref) r.kind = RULE_UNKNOWN;
      rule_t *to = rule_of(f, reg);
      if (to) *to = r;
      break;
    }
    case 0x11: reg = read_uleb(c); set_rule(f, reg, RULE_AT_CFA, read_sleb(c) * cie->data_align); break;
    case 0x12: f->cfa_reg = (uint8_t)read_uleb(c); f->cfa_off = (int32_t)(read_sleb(c) * cie->data_align); f->cfa_deref = false; break;
    case 0x13: f->cfa_off = (int32_t)(read_sleb(c) * cie->data_align); break;
    case 0x14: reg = read_uleb(c); (void)read_uleb(c); set_rule(f, reg, RULE_UNKNOWN, 0); break;   /* val_offset */
    case 0x15: reg = read_uleb(c); (void)read_sleb(c); set_rule(f, reg, RULE_UNKNOWN, 0); break;
    case 0x16: {                                                                     /* val_expression */
      reg = read_uleb(c);
      uint64_t len = read_uleb(c);
      if (len > (uint64_t)(c->end - c->p)) return (void)(f->bad = true);
      c->p += len;
      set_rule(f, reg, RULE_UNKNOWN, 0);
      break;
    }
    case 0x2e: (void)read_uleb(c); break;                                            /* GNU_args_size */
    case 0x2f: reg = read_uleb(c); set_rule(f, reg, RULE_AT_CFA, -(int64_t)read_uleb(c) * cie->data_align); break;
    default: f->bad = true; return;                                                  /* set_loc and the rest */
    }
    continue;
  advance:
    loc += delta * cie->code_align;
    if (loc > pc) return;
    continue;
  restore:
    if (!initial) f->bad = true;
    else if (rule_of(f, reg)) *rule_of(f, reg) = *rule_of(initial, reg);
  }
  if (c->bad) f->bad = true;
}

/* The rules at pc (a return address minus one, or the walk's first pc). */
static bool rules_for(uintptr_t pc, frame_rules_t *f) {
  struct dl_find_object obj;
  if (_dl_find_object((void *)pc, &obj) != 0 || !obj.dlfo_eh_frame) return false;
  const uint8_t *fde = find_fde(obj.dlfo_eh_frame, pc);
  cursor_t c;
  if (!fde || !entry_body(fde, &c)) return false;
  uint32_t cie_off = (uint32_t)read_fixed(&c, 4);
  cie_t cie;
  if (cie_off == 0 || !parse_cie(c.p - 4 - cie_off, &cie) || cie.signal || cie.ra_reg != REG_RA) return false;
  uintptr_t begin = read_encoded(&c, cie.fde_enc, 0);
  uintptr_t range = read_encoded(&c, cie.fde_enc & 0x0f, 0);
  if (c.bad || pc < begin || pc - begin >= range) return false;
  if (cie.fde_aug) {
    uint64_t len = read_uleb(&c);
    if (c.bad || len > (uint64_t)(c.end - c.p)) return false;
    c.p += len;
  }
  *f = (frame_rules_t){.cfa_reg = REG_RSP, .ra = {RULE_UNKNOWN, 0, 0}, .rbp = {RULE_SAME, 0, 0}};
  run_cfa(&cie, cie.program, begin, UINTPTR_MAX, f, NULL);
  frame_rules_t initial = *f;
  run_cfa(&cie, c, begin, pc, f, &initial);
  return !f->bad && (f->cfa_reg == REG_RSP || f->cfa_reg == REG_RBP);
}

/* ---- the rules of pcs seen before ------------------------------------------
 * Working a pc's rules out costs ~1,400 instructions (the CIE and the FDE
 * run from the function's start); a program's samples come from a few
 * hundred call sites, so each pc's rules are kept, in a direct-mapped
 * table shared by the threads.  One walk uses it at a time (a thread that
 * finds it busy works its frames out itself).  Cached rules would be
 * wrong for an object unloaded and another loaded at its address, so the
 * table is emptied when the loader's count of unloads has moved
 * (dl_iterate_phdr's dlpi_subs, read once a walk); the code a walk passes
 * through is running and cannot be unloaded meanwhile. */
#define RULE_BITS 11
#define RULE_SLOTS (1u << RULE_BITS)

/* The usual frames, followed without the general rules (step_usual):
 * the CFA is rsp or rbp plus a multiple of 8, the return address just
 * below it, and rbp unchanged or saved below the CFA (within the frame
 * when the CFA is rsp-based).  Compilers describe nearly every frame so;
 * the rest (realigned stacks, signal frames) take step. */
enum frame_shape {
  SHAPE_GENERAL,   /* step with the rules */
  SHAPE_RSP,       /* CFA = rsp + off; rbp unchanged */
  SHAPE_RSP_RBP,   /* CFA = rsp + off; rbp saved at CFA + rbp_off */
  SHAPE_RBP,       /* CFA = rbp + off; rbp saved at CFA + rbp_off */
};

typedef struct cached_rules_s {
  uintptr_t pc;          /* 0: empty */
  frame_rules_t rules;   /* .bad: no walk past this pc */
  uint8_t shape;         /* enum frame_shape */
} cached_rules_t;

static cached_rules_t rule_cache[RULE_SLOTS] LA_BULK;   /* (rule_cache_busy) */
static unsigned long long cache_subs;           /* the unloads it was filled after */
static bool cache_torn;                         /* a fork cut a walk short: empty it */
static atomic_flag rule_cache_busy = ATOMIC_FLAG_INIT;

static int read_subs(struct dl_phdr_info *info, size_t size, void *arg) {
  if (size < offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) return 1;
  *(unsigned long long *)arg = info->dlpi_subs;
  return 1;   /* the first object is enough */
}

/* The table, emptied if objects were unloaded since it was filled; NULL
 * if another walk holds it. */
static cached_rules_t *rule_cache_take(void) {
  if (atomic_flag_test_and_set_explicit(&rule_cache_busy, memory_order_acquire)) return NULL;
  unsigned long long subs = ~0ull;
  dl_iterate_phdr(read_subs, &subs);
  if (subs != cache_subs || cache_torn) {
    memset(rule_cache, 0, sizeof rule_cache);
    cache_subs = subs;
    cache_torn = false;
  }
  return rule_cache;
}

static void rule_cache_give(cached_rules_t *cache) {
  if (cache) atomic_flag_clear_explicit(&rule_cache_busy, memory_order_release);
}

/* fork() in the middle of another thread's walk leaves the table busy,
 * and maybe an entry half written: the child's first walk empties it. */
void la_unwind_fork_child(void) {
  cache_torn = true;
  atomic_flag_clear(&rule_cache_busy);
}

static uint8_t shape_of(const frame_rules_t *f) {
  if (f->bad || f->cfa_deref || f->ra.kind != RULE_AT_CFA || f->ra.off != -8 || (f->cfa_off & 7)) return SHAPE_GENERAL;
  bool rbp_saved = f->rbp.kind == RULE_AT_CFA && f->rbp.off < -8 && !(f->rbp.off & 7);
  if (f->cfa_reg == REG_RSP && f->cfa_off >= 8) {
    if (f->rbp.kind == RULE_SAME) return SHAPE_RSP;
    if (rbp_saved && f->rbp.off >= -f->cfa_off) return SHAPE_RSP_RBP;
  }
  if (f->cfa_reg == REG_RBP && rbp_saved) return SHAPE_RBP;
  return SHAPE_GENERAL;
}

/* The rules at pc: the table's entry, filled if pc is not in it, or
 * (no table: another walk has it) *spare, worked out now. */
static const cached_rules_t *cached_rules_for(cached_rules_t *cache, uintptr_t pc, cached_rules_t *spare) {
  cached_rules_t *e = cache ? &cache[(pc * 0x9e3779b97f4a7c15ull) >> (64 - RULE_BITS)] : spare;
  if (e->pc == pc && cache) return e;
  frame_rules_t f = {0};
  f.bad = !rules_for(pc, &f);
  e->pc = pc;
  e->rules = f;
  e->shape = shape_of(&f);
  return e;
}

/* ---- the walk ---------------------------------------------------------------- */

typedef struct regs_s {
  uintptr_t rsp, rbp;
  bool rbp_known;
} regs_t;

/* A word of the stack at addr, if it lies in [lo, hi).  Other frames'
 * words: the sanitizers' view of them is not this walk's business. */
__attribute__((no_sanitize("address", "thread")))
static bool stack_word(uintptr_t addr, uintptr_t lo, uintptr_t hi, uintptr_t *out) {
  if (addr < lo || addr > hi - sizeof(uintptr_t) || (addr & 7)) return false;
  *out = *(const uintptr_t *)addr;
  return true;
}

/* One frame up: the caller's return address into *ra, its registers into
 * r; false at the end of the stack or where it cannot be followed. */
__attribute__((no_sanitize("address", "thread")))
static bool step(const frame_rules_t *f, regs_t *r, uintptr_t lo, uintptr_t hi, uintptr_t *ra) {
  if (f->cfa_reg == REG_RBP && !r->rbp_known) return false;
  uintptr_t cfa = (f->cfa_reg == REG_RSP ? r->rsp : r->rbp) + (intptr_t)f->cfa_off;
  if (f->cfa_deref && !stack_word(cfa, lo, hi, &cfa)) return false;
  if (cfa <= r->rsp || cfa >= hi) return false;   /* callers' frames lie above */
  if (f->ra.kind != RULE_AT_CFA || !stack_word(cfa + (intptr_t)f->ra.off, lo, hi, ra) || *ra == 0) return false;
  switch (f->rbp.kind) {
  case RULE_SAME: break;
  case RULE_AT_CFA: r->rbp_known = stack_word(cfa + (intptr_t)f->rbp.off, lo, hi, &r->rbp); break;
  case RULE_AT_REG: {
    uintptr_t base = f->rbp.reg == REG_RSP ? r->rsp : r->rbp;
    bool known = f->rbp.reg == REG_RSP || (f->rbp.reg == REG_RBP && r->rbp_known);
    r->rbp_known = known && stack_word(base + (intptr_t)f->rbp.off, lo, hi, &r->rbp);
    break;
  }
  default: r->rbp_known = false;
  }
  r->rsp = cfa;
  return true;
}

/* step for the usual shapes: the checks that matter, in ~15
 * instructions where step's ~40.  The stack pointer is 8-aligned (the
 * walk's first one is a frame address, each next one a CFA checked so),
 * so a CFA above it leaves the return address at or above it, and a
 * saved rbp at rbp_off >= -cfa_off too; where the CFA is rbp-based that
 * slot is checked against the stack pointer. */
__attribute__((no_sanitize("address", "thread")))
static inline bool step_usual(const cached_rules_t *e, regs_t *r, uintptr_t hi, uintptr_t *ra) {
  uintptr_t cfa = (e->shape == SHAPE_RBP ? r->rbp : r->rsp) + (intptr_t)e->rules.cfa_off;
  if (e->shape == SHAPE_RBP && !r->rbp_known) return false;
  if (cfa <= r->rsp || cfa >= hi || (cfa & 7)) return false;
  *ra = *(const uintptr_t *)(cfa - 8);
  if (*ra == 0) return false;
  if (e->shape != SHAPE_RSP) {
    uintptr_t at = cfa + (intptr_t)e->rules.rbp.off;
    if (at < r->rsp) return false;
    r->rbp = *(const uintptr_t *)at;
    r->rbp_known = true;
  }
  r->rsp = cfa;
  return true;
}

/* The return addresses of the calling thread's stack, innermost first:
 * `from`'s, then its callers', at most max.  `from` is what a function
 * still running on this thread returns to (la_frame_of_self), so the walk
 * starts there without working out the frames in between: a sample's
 * stack starts at the entry point's caller, not in the profiler (three to
 * five frames, ~40 instructions each once their rules are known). */
unsigned la_unwind_from(const la_frame_t *from, uintptr_t *ips, unsigned max) {
  uintptr_t here;
  __asm__ volatile("mov %%rsp, %0" : "=r"(here));
  uintptr_t lo = here, hi = here + UNWIND_SPAN < here ? UINTPTR_MAX : here + UNWIND_SPAN;
  if (max == 0 || from->sp <= lo || from->sp >= hi || (from->sp & 7) || from->ra == 0) return 0;
  regs_t r = {.rsp = from->sp, .rbp = from->rbp, .rbp_known = true};
  unsigned n = 0;
  ips[n++] = from->ra;
  uintptr_t pc = from->ra - 1;   /* the call, not what follows it (which may be another function) */
  cached_rules_t spare = {0};
  cached_rules_t *cache = rule_cache_take();
  while (n < max) {
    const cached_rules_t *e = cached_rules_for(cache, pc, &spare);
    uintptr_t ra;
    if (e->rules.bad) break;
    if (!(e->shape != SHAPE_GENERAL ? step_usual(e, &r, hi, &ra) : step(&e->rules, &r, lo, hi, &ra))) break;
    ips[n++] = ra;
    pc = ra - 1;
  }
  rule_cache_give(cache);
  return n;
}

/* The same from la_unwind's caller's return address. */
LA_NOINLINE unsigned la_unwind(uintptr_t *ips, unsigned max) {
  la_frame_t self = la_frame_of_self();
  return la_unwind_from(&self, ips, max);
}

#endif

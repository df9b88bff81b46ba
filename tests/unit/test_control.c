/* test_control.c - the process's side of the telemetry control area
 * (control.c), served by the real publisher thread on a 10 ms interval in
 * a directory of its own.  The test is the writer: it posts requests into
 * the segment's request slots as allocd does (alloc_shm.h: flock, fill the
 * slot, then state POSTED; wait for DONE with ack_id == id), and checks
 *   - a valid request applies (visible through alloc_ctl) and is
 *     acknowledged with status 0 and the effective value, for knobs of
 *     every type, and commands;
 *   - a bad checksum, a zero id, a name or value without its terminator
 *     are acknowledged as malformed (EINVAL) and nothing applies;
 *   - an unknown name, a knob fixed at start-up and a bad value get their
 *     errors (ENOENT, EPERM, EINVAL);
 *   - requests posted while a writer holds the flock are not claimed until
 *     it is released, and one withdrawn meanwhile never applies;
 *   - slots that are not POSTED are left alone, byte for byte.
 * Every wait polls for up to 5 s, counting the publisher's ticks through
 * `published`; nothing asserts how long anything took. */
#include "unit.h"

#include <alloc.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

static char dir[] = "/tmp/test_control.XXXXXX";
static int seg_fd = -1;            /* the segment, opened read-write as allocd does */
static alloc_shm_header_t header;

static void pause_ms(long ms) {
  struct timespec ts = {0, ms * 1000000};
  nanosleep(&ts, NULL);
}

static ssize_t knob(const char *name) {
  ssize_t v;
  size_t len = sizeof v;
  assert_int_equal(alloc_ctl(name, &v, &len, NULL, 0), 0);
  return v;
}

static void set_knob(const char *name, ssize_t v) {
  assert_int_equal(alloc_ctl(name, NULL, NULL, &v, sizeof v), 0);
}

/* ---- the segment ---------------------------------------------------------------- */

static uint64_t published(void) {
  uint64_t n = 0;
  if (pread(seg_fd, &n, sizeof n, offsetof(alloc_shm_header_t, published)) != (ssize_t)sizeof n) return 0;
  return n;
}

/* Poll up to 5 s for `ticks` more publications: the publisher has looked
 * at the control area that many times. */
static void wait_ticks(uint64_t ticks) {
  uint64_t until = published() + ticks;
  for (int i = 0; i < 500 && published() < until; i++) pause_ms(10);
  assert_true(published() >= until);
}

/* Poll up to 5 s for the publisher's first segment, then open it. */
static bool open_segment(void) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/" ALLOC_SHM_PREFIX "%d", dir, (int)getpid());
  for (int i = 0; i < 500; i++) {
    seg_fd = open(path, O_RDWR | O_NOFOLLOW);
    if (seg_fd >= 0 && pread(seg_fd, &header, sizeof header, 0) == (ssize_t)sizeof header && header.published > 0)
      return header.magic == ALLOC_SHM_MAGIC && header.control_slots == ALLOC_SHM_CONTROL_SLOTS;
    if (seg_fd >= 0) close(seg_fd);
    pause_ms(10);
  }
  return false;
}

/* Runs long before the process's first second is over, so the quiet start
 * (init.c) never starts a publisher in /dev/shm; it starts here, in `dir`. */
static int setup(void **state) {
  (void)state;
  la_ensure_init();
  la_opt.telemetry = false;
  bool off = false;   /* no purger thread: not this file's subject */
  if (alloc_ctl("background_thread", NULL, NULL, &off, sizeof off) != 0 || !mkdtemp(dir)) return -1;
  snprintf(la_opt.telemetry_dir, sizeof la_opt.telemetry_dir, "%s", dir);
  la_opt.stats_interval_ms = 10;
  la_opt.telemetry = true;
  la_telemetry_start();
  return open_segment() ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  la_telemetry_exit();
  close(seg_fd);
  DIR *d = opendir(dir);
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlinkat(dirfd(d), e->d_name, 0);
  if (d) closedir(d);
  rmdir(dir);
  return 0;
}

/* ---- the writer's side of the protocol (alloc_shm.h) ----------------------------- */

static uint64_t slot_offset(unsigned slot) {
  return header.control_offset + (uint64_t)slot * header.request_size;
}

static alloc_shm_request_t read_slot(unsigned slot) {
  alloc_shm_request_t r;
  assert_int_equal(pread(seg_fd, &r, sizeof r, (off_t)slot_offset(slot)), (ssize_t)sizeof r);
  return r;
}

static void write_slot(unsigned slot, const alloc_shm_request_t *r) {
  assert_int_equal(pwrite(seg_fd, r, sizeof *r, (off_t)slot_offset(slot)), (ssize_t)sizeof *r);
}

static void set_state(unsigned slot, uint64_t state) {
  assert_int_equal(pwrite(seg_fd, &state, sizeof state, (off_t)slot_offset(slot)), (ssize_t)sizeof state);
}

static void lock_writers(void) { assert_int_equal(flock(seg_fd, LOCK_EX), 0); }
static void unlock_writers(void) { assert_int_equal(flock(seg_fd, LOCK_UN), 0); }

/* A well-formed request. */
static alloc_shm_request_t request(uint64_t id, const char *name, const char *value) {
  alloc_shm_request_t r;
  memset(&r, 0, sizeof r);
  r.id = id;
  r.posted_ns = (uint64_t)time(NULL) * 1000000000u;
  snprintf(r.name, sizeof r.name, "%s", name);
  snprintf(r.value, sizeof r.value, "%s", value);
  r.checksum = alloc_shm_request_checksum(&r);
  return r;
}

/* Fill the slot (state FREE), then mark it POSTED; the caller holds the
 * writers' lock. */
static void post_locked(unsigned slot, alloc_shm_request_t r) {
  r.state = ALLOC_SHM_REQ_FREE;
  write_slot(slot, &r);
  set_state(slot, ALLOC_SHM_REQ_POSTED);
}

static void post(unsigned slot, alloc_shm_request_t r) {
  lock_writers();
  post_locked(slot, r);
  unlock_writers();
}

/* Poll up to 5 s for the acknowledgement of request `id`, then free the
 * slot (under the lock, as a writer does). */
static alloc_shm_request_t await_ack(unsigned slot, uint64_t id) {
  alloc_shm_request_t r;
  for (int i = 0; i < 500; i++) {
    r = read_slot(slot);
    if (r.state == ALLOC_SHM_REQ_DONE && r.ack_id == id) break;
    pause_ms(10);
  }
  if (r.state != ALLOC_SHM_REQ_DONE || r.ack_id != id)
    fail_msg("request %llu in slot %u not acknowledged within 5 s", (unsigned long long)id, slot);
  lock_writers();
  set_state(slot, ALLOC_SHM_REQ_FREE);
  unlock_writers();
  return r;
}

static alloc_shm_request_t post_and_await(unsigned slot, alloc_shm_request_t r) {
  post(slot, r);
  return await_ack(slot, r.id);
}

/* Every slot FREE and zero, and the decay knobs at known values. */
static int reset(void **state) {
  (void)state;
  static const alloc_shm_request_t zero[ALLOC_SHM_CONTROL_SLOTS];
  lock_writers();
  assert_int_equal(pwrite(seg_fd, zero, sizeof zero, header.control_offset), (ssize_t)sizeof zero);
  unlock_writers();
  set_knob("opt.dirty_decay_ms", 10000);
  set_knob("opt.muzzy_decay_ms", 0);
  return 0;
}

/* ---- requests that apply ----------------------------------------------------------- */

static void valid_request_applies(void **state) {
  (void)state;
  alloc_shm_request_t ack = post_and_await(0, request(101, "dirty_decay_ms", "1234"));
  assert_int_equal(ack.status, 0);
  assert_string_equal(ack.effective, "1234");
  assert_string_equal(ack.message, "ok");
  assert_int_equal(knob("opt.dirty_decay_ms"), 1234);
  ack = post_and_await(5, request(102, "opt.muzzy_decay_ms", "77"));   /* an alloc_ctl name */
  assert_int_equal(ack.status, 0);
  assert_int_equal(knob("opt.muzzy_decay_ms"), 77);
  ack = post_and_await(15, request(103, "arena.purge", ""));           /* a command, last slot */
  assert_int_equal(ack.status, 0);
}

/* A knob of each kind, including the interval of the publisher serving the
 * request (it re-plans its own sleep) and stats_print (LIVE, no hook). */
static void live_knobs_of_every_type_apply(void **state) {
  (void)state;
  alloc_shm_request_t ack = post_and_await(2, request(111, "thp", "never"));
  assert_int_equal(ack.status, 0);
  assert_string_equal(ack.effective, "never");
  ack = post_and_await(3, request(112, "thp", "default"));
  assert_string_equal(ack.effective, "default");
  ack = post_and_await(4, request(113, "abort_on_invalid_free", "true"));
  assert_int_equal(ack.status, 0);
  assert_true(la_opt.abort_on_invalid_free);
  ack = post_and_await(4, request(114, "abort_on_invalid_free", "false"));
  assert_false(la_opt.abort_on_invalid_free);
  ack = post_and_await(6, request(115, "stats_interval_ms", "20"));
  assert_int_equal(ack.status, 0);
  assert_int_equal(knob("opt.stats_interval_ms"), 20);
  wait_ticks(2);   /* still publishing */
  ack = post_and_await(6, request(116, "stats_interval_ms", "10"));
  assert_int_equal(knob("opt.stats_interval_ms"), 10);
}

/* ---- requests that do not ------------------------------------------------------------ */

static void assert_malformed(const alloc_shm_request_t *ack) {
  assert_int_equal(ack->status, EINVAL);
  assert_non_null(strstr(ack->message, "malformed"));
  assert_string_equal(ack->effective, "");
  assert_int_equal(knob("opt.dirty_decay_ms"), 10000);   /* nothing applied */
}

static void bad_checksum_is_malformed(void **state) {
  (void)state;
  alloc_shm_request_t r = request(201, "dirty_decay_ms", "4321");
  r.checksum ^= 1;
  alloc_shm_request_t ack = post_and_await(1, r);
  assert_malformed(&ack);
}

static void zero_id_is_malformed(void **state) {
  (void)state;
  alloc_shm_request_t ack = post_and_await(2, request(0, "dirty_decay_ms", "4321"));
  assert_malformed(&ack);
}

/* The name runs into the value: "dirty_decay_msxxx...4321".  The checksum
 * covers the bytes as they are, so only the missing NUL is wrong. */
static void unterminated_name_is_malformed(void **state) {
  (void)state;
  alloc_shm_request_t r = request(301, "dirty_decay_ms", "4321");
  memset(r.name + strlen("dirty_decay_ms"), 'x', sizeof r.name - strlen("dirty_decay_ms"));
  r.checksum = alloc_shm_request_checksum(&r);
  alloc_shm_request_t ack = post_and_await(3, r);
  assert_malformed(&ack);
}

/* 80 digits without a NUL: "000...04321".  The field after the value is
 * ack_id, set to the id when the request is served; an id whose first byte
 * is 0 ends the string there, so read past its end the value is a valid
 * 4321: only the terminator check can refuse it. */
static void unterminated_value_is_malformed(void **state) {
  (void)state;
  const uint64_t id = 0x4400;   /* first byte (little endian) 0 */
  alloc_shm_request_t r = request(id, "dirty_decay_ms", "");
  memset(r.value, '0', sizeof r.value);
  memcpy(r.value + sizeof r.value - 4, "4321", 4);
  r.checksum = alloc_shm_request_checksum(&r);
  alloc_shm_request_t ack = post_and_await(4, r);
  assert_malformed(&ack);
}

static void unknown_fixed_and_bad_values_get_their_errors(void **state) {
  (void)state;
  alloc_shm_request_t ack = post_and_await(6, request(401, "no_such_knob", "1"));
  assert_int_equal(ack.status, ENOENT);
  assert_string_equal(ack.message, "unknown knob 'no_such_knob'");
  ack = post_and_await(7, request(402, "telemetry_dir", "/tmp"));
  assert_int_equal(ack.status, EPERM);
  ack = post_and_await(8, request(403, "dirty_decay_ms", "soon"));
  assert_int_equal(ack.status, EINVAL);
  assert_string_equal(ack.effective, "10000");   /* the value still in force */
  assert_int_equal(knob("opt.dirty_decay_ms"), 10000);
}

/* ---- the writers' lock ---------------------------------------------------------------- */

/* While a writer holds the flock nothing is claimed; a request withdrawn
 * before the lock is released never applies, the other applies after. */
static void held_lock_delays_claims_and_allows_withdrawal(void **state) {
  (void)state;
  lock_writers();
  post_locked(9, request(501, "muzzy_decay_ms", "555"));
  post_locked(10, request(502, "dirty_decay_ms", "2222"));
  wait_ticks(3);
  alloc_shm_request_t a = read_slot(9), b = read_slot(10);
  assert_int_equal(a.state, ALLOC_SHM_REQ_POSTED);
  assert_int_equal(a.ack_id, 0);   /* not claimed */
  assert_int_equal(b.state, ALLOC_SHM_REQ_POSTED);
  assert_int_equal(b.ack_id, 0);
  assert_int_equal(knob("opt.dirty_decay_ms"), 10000);
  set_state(9, ALLOC_SHM_REQ_FREE);   /* the writer of 501 gives up */
  unlock_writers();
  alloc_shm_request_t ack = await_ack(10, 502);
  assert_int_equal(ack.status, 0);
  assert_int_equal(knob("opt.dirty_decay_ms"), 2222);
  wait_ticks(2);
  a = read_slot(9);
  assert_int_equal(a.state, ALLOC_SHM_REQ_FREE);
  assert_int_equal(a.ack_id, 0);
  assert_int_equal(knob("opt.muzzy_decay_ms"), 0);   /* 555 never applied */
}

/* ---- slots that are not posted ----------------------------------------------------------- */

static void slots_not_posted_are_left_alone(void **state) {
  (void)state;
  alloc_shm_request_t slots[4];
  slots[0] = request(601, "dirty_decay_ms", "1111");   /* FREE, well formed */
  slots[1] = request(602, "dirty_decay_ms", "1112");
  slots[1].state = ALLOC_SHM_REQ_DONE;                  /* an old answer not yet read */
  slots[1].ack_id = 602;
  snprintf(slots[1].message, sizeof slots[1].message, "ok");
  slots[2] = request(603, "dirty_decay_ms", "1113");
  slots[2].state = 3;                                   /* no such state */
  memset(&slots[3], 0x5A, sizeof slots[3]);             /* junk */
  lock_writers();
  for (unsigned i = 0; i < 4; i++) write_slot(11 + i, &slots[i]);
  unlock_writers();
  alloc_shm_request_t ack = post_and_await(0, request(604, "muzzy_decay_ms", "9"));   /* the area is served */
  assert_int_equal(ack.status, 0);
  wait_ticks(2);
  for (unsigned i = 0; i < 4; i++) {
    alloc_shm_request_t now = read_slot(11 + i);
    if (memcmp(&now, &slots[i], sizeof now) != 0) fail_msg("slot %u was changed", 11 + i);
  }
  assert_int_equal(knob("opt.dirty_decay_ms"), 10000);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(valid_request_applies, reset),
    cmocka_unit_test_setup(live_knobs_of_every_type_apply, reset),
    cmocka_unit_test_setup(bad_checksum_is_malformed, reset),
    cmocka_unit_test_setup(zero_id_is_malformed, reset),
    cmocka_unit_test_setup(unterminated_name_is_malformed, reset),
    cmocka_unit_test_setup(unterminated_value_is_malformed, reset),
    cmocka_unit_test_setup(unknown_fixed_and_bad_values_get_their_errors, reset),
    cmocka_unit_test_setup(held_lock_delays_claims_and_allows_withdrawal, reset),
    cmocka_unit_test_setup(slots_not_posted_are_left_alone, reset),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

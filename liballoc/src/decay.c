/* decay.c - how many free pages may stay in a state (dirty or muzzy) at a
 * given time, jemalloc's decay curve.
 *
 * Pages that enter the state are recorded in a ring of LA_DECAY_STEPS
 * epochs spanning the decay time.  A page that entered `age` epochs ago may
 * still be there with weight 1 - s((age+1)/STEPS), where s is the smoothstep
 * 3x^2 - 2x^3: new pages stay, the oldest go, and a burst fades out smoothly
 * over the decay time instead of falling off a cliff.  The limit is the
 * weighted sum; whatever exceeds it is to be purged now.
 *
 * Pure arithmetic on an explicit `now`, so tests drive it with a fake clock.
 * Integer only: weights are fixed point with 32 fractional bits. */
#include "alloc_internal.h"

#include <string.h>

static uint64_t weights[LA_DECAY_STEPS];   /* 2^32 * (1 - s((age+1)/STEPS)) */

void la_decay_init_weights(void) {
  const uint64_t n = LA_DECAY_STEPS, n3 = n * n * n;
  for (uint64_t age = 0; age < n; age++) {
    uint64_t a = age + 1;
    uint64_t keep = n3 - 3 * a * a * n + 2 * a * a * a;   /* n^3 (1 - s(a/n)) */
    weights[age] = (keep << 32) / n3;
  }
}

void la_decay_init(la_decay_t *d, ssize_t ms, uint64_t now) {
  memset(d, 0, sizeof *d);
  la_decay_set_ms(d, ms, now);
}

/* A new decay time re-plans what is pending: pages keep their place in the
 * ring, which now spans the new time, so a page halfway through the old
 * decay is halfway through the new one. */
void la_decay_set_ms(la_decay_t *d, ssize_t ms, uint64_t now) {
  d->ms = ms;
  d->step_ns = ms > 0 ? (uint64_t)ms * 1000000u / LA_DECAY_STEPS : 0;
  if (d->step_ns == 0 && ms > 0) d->step_ns = 1;
  d->epoch = now;
}

static void advance(la_decay_t *d, uint64_t now) {
  if (now < d->epoch + d->step_ns) return;
  uint64_t steps = (now - d->epoch) / d->step_ns;
  d->epoch += steps * d->step_ns;
  if (steps > LA_DECAY_STEPS) steps = LA_DECAY_STEPS;
  for (uint64_t i = 0; i < steps; i++) {
    d->newest = (d->newest + 1) % LA_DECAY_STEPS;
    d->backlog[d->newest] = 0;
  }
}

/* Pages of the state that may remain at `now`, given that there are
 * `npages` now; SIZE_MAX when the state never decays. */
size_t la_decay_limit(la_decay_t *d, uint64_t now, size_t npages) {
  if (d->ms < 0) {
    d->last = npages;
    return SIZE_MAX;
  }
  if (d->ms == 0) {
    d->last = npages;
    return 0;
  }
  advance(d, now);
  if (npages > d->last) d->backlog[d->newest] += npages - d->last;
  d->last = npages;
  unsigned __int128 sum = 0;
  for (unsigned age = 0; age < LA_DECAY_STEPS; age++) {
    size_t n = d->backlog[(d->newest + LA_DECAY_STEPS - age) % LA_DECAY_STEPS];
    if (n) sum += (unsigned __int128)n * weights[age];
  }
  sum >>= 32;
  return sum > npages ? npages : (size_t)sum;
}

/* The caller purged pages: the state now holds `npages`. */
void la_decay_purged(la_decay_t *d, size_t npages) {
  d->last = npages;
}

/* When the limit next goes down: the next epoch boundary, or 0 (never)
 * when nothing is pending or the state does not decay. */
uint64_t la_decay_next_deadline(const la_decay_t *d, size_t npages) {
  if (npages == 0 || d->ms < 0) return 0;
  if (d->ms == 0) return d->epoch;   /* due now */
  return d->epoch + d->step_ns;
}

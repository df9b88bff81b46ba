/* sleeper.h - what each of allocd's background threads (rule pushes, the
 * reclamation policy, the profile keeper, the HTTP guard) has: a lock for
 * its state, a condition it sleeps on (CLOCK_MONOTONIC, for timed waits),
 * and the two reasons to wake: kicked (new work, after a collection tick)
 * and stop. */
#ifndef ALLOCD_SLEEPER_H
#define ALLOCD_SLEEPER_H

#include <pthread.h>
#include <stdbool.h>

typedef struct sleeper_s {
  pthread_mutex_t lock;   /* the flags below, and whatever the owner keeps under it */
  pthread_cond_t wake;
  bool kicked, stop;
  pthread_t thread;
} sleeper_t;

/* Initialise s and start main(arg) in its thread; false (s destroyed) if
 * the thread could not be made. */
bool sleeper_start(sleeper_t *s, void *(*main)(void *), void *arg);
/* Set kicked and wake the thread. */
void sleeper_kick(sleeper_t *s);
/* Set stop, wake the thread, wait for it to end, destroy s. */
void sleeper_stop(sleeper_t *s);

#endif

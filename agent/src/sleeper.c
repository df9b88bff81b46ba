/* sleeper.c - a background thread's lock, wake-up and stop (sleeper.h). */
#include "sleeper.h"

#include <time.h>

bool sleeper_start(sleeper_t *s, void *(*main)(void *), void *arg) {
  s->kicked = s->stop = false;
  pthread_mutex_init(&s->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&s->wake, &ca);
  pthread_condattr_destroy(&ca);
  if (pthread_create(&s->thread, NULL, main, arg) == 0) return true;
  pthread_cond_destroy(&s->wake);
  pthread_mutex_destroy(&s->lock);
  return false;
}

void sleeper_kick(sleeper_t *s) {
  pthread_mutex_lock(&s->lock);
  s->kicked = true;
  pthread_cond_broadcast(&s->wake);
  pthread_mutex_unlock(&s->lock);
}

void sleeper_stop(sleeper_t *s) {
  pthread_mutex_lock(&s->lock);
  s->stop = true;
  pthread_cond_broadcast(&s->wake);
  pthread_mutex_unlock(&s->lock);
  pthread_join(s->thread, NULL);
  pthread_cond_destroy(&s->wake);
  pthread_mutex_destroy(&s->lock);
}

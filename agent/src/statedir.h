/* statedir.h - where allocd keeps its database and token by default, so
 * that allocd and allocctl agree on it. */
#ifndef ALLOCD_STATEDIR_H
#define ALLOCD_STATEDIR_H

#include <stddef.h>

/* /var/lib/allocd for root, else $XDG_STATE_HOME/allocd, else
 * ~/.local/state/allocd. */
void allocd_state_dir(char *out, size_t size);

#endif

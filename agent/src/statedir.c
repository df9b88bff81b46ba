/* statedir.c - allocd's default state directory (statedir.h). */
#include "statedir.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void allocd_state_dir(char *out, size_t size) {
  const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
  if (geteuid() == 0) snprintf(out, size, "/var/lib/allocd");
  else if (xdg && *xdg) snprintf(out, size, "%s/allocd", xdg);
  else snprintf(out, size, "%s/.local/state/allocd", home && *home ? home : "/tmp");
}

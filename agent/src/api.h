/* api.h - allocd's HTTP server: the JSON API under /api/v1 and /metrics. */
#ifndef ALLOCD_API_H
#define ALLOCD_API_H

#include "collector.h"
#include "rules.h"
#include "store.h"

typedef struct api_s api_t;

typedef struct api_config_s {
  int listen_fd;              /* bound and listening */
  const char *token;          /* writes need "Authorization: Bearer <token>" */
  unsigned push_timeout_ms;   /* how long a config change waits for the process */
  unsigned max_connections;
  unsigned connection_timeout_s;
  const char *static_dir;     /* the dashboard's files, or NULL */
} api_config_t;

api_t *api_start(const api_config_t *cfg, store_t *store, collector_t *collector, rules_t *rules, char *err,
                 size_t errlen);
void api_stop(api_t *api);

#endif

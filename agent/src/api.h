/* api.h - allocd's HTTP server: the JSON API under /api/v1 and /metrics. */
#ifndef ALLOCD_API_H
#define ALLOCD_API_H

#include "collector.h"
#include "reclaim.h"
#include "rules.h"
#include "rules_dir.h"
#include "store.h"

typedef struct api_s api_t;

typedef struct api_config_s {
  int listen_fd;              /* bound and listening */
  const char *token;          /* writes need "Authorization: Bearer <token>" */
  unsigned push_timeout_ms;   /* how long a config change waits for the process */
  unsigned max_connections;
  unsigned connection_timeout_s;   /* idle time before a connection is closed */
  unsigned request_timeout_s;      /* reading one request may take this long in all */
  const char *static_dir;          /* the dashboard's files, or NULL */
  const char *listen_host;         /* Host values answered: this, localhost, 127.0.0.1, [::1] */
  const char *const *allow_hosts;  /* and these (--allow-host) */
  size_t nallow_hosts;
  rules_dir_t *rules_dir;          /* the rule files' status, and whose rules the API must not delete */
  reclaim_t *reclaim;              /* the reclamation policy's counters, NULL when off */
} api_config_t;

api_t *api_start(const api_config_t *cfg, store_t *store, collector_t *collector, rules_t *rules, char *err,
                 size_t errlen);
void api_stop(api_t *api);

#endif

/* rules_dir.h - rules from files: every *.json of a directory (default
 * /etc/allocd/rules.d) holds one rule or an array of rules, kept in the
 * rules table as rows whose client is "file:<name>", re-read when a file
 * changes and on SIGHUP. */
#ifndef ALLOCD_RULES_DIR_H
#define ALLOCD_RULES_DIR_H

#include "store.h"

#include <jansson.h>
#include <stdbool.h>

#define RULES_DIR_DEFAULT "/etc/allocd/rules.d"
#define RULES_DIR_CLIENT "file:"   /* prefix of the client of a file's rules */

typedef struct rules_dir_s rules_dir_t;

/* path NULL or "": no rules directory (rows of earlier files are removed
 * at the first poll, like those of files removed). */
rules_dir_t *rules_dir_new(store_t *store, const char *path);
void rules_dir_free(rules_dir_t *d);

/* Bring the rules table in line with the files: at most once a second
 * unless `now` (SIGHUP), and then only the files whose size, time or inode
 * changed.  Called from the main thread between collection ticks. */
void rules_dir_poll(rules_dir_t *d, bool now);

/* {"dir": path, "error": null|why, "files": [{"name", "rules", "error"}]}
 * for GET /api/v1/rules; safe from any thread.  These two take d NULL
 * (no directory: an API started without one). */
json_t *rules_dir_status_json(rules_dir_t *d);
/* Files whose last reading was refused (and the directory itself). */
unsigned rules_dir_errors(rules_dir_t *d);

#endif

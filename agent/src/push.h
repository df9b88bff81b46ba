/* push.h - delivering configuration changes to running processes through
 * their telemetry segment's control area, with an audit entry for each. */
#ifndef ALLOCD_PUSH_H
#define ALLOCD_PUSH_H

#include "collector.h"
#include "store.h"

#include <jansson.h>

/* Check a {knob: value} object before anything is sent: known knobs,
 * values of the right type.  NULL if fine, else why not (static text or
 * written into buf). */
const char *push_validate(json_t *changes, char *buf, size_t size);

/* Send every change to `target` and wait (up to timeout_ms in all) for the
 * acknowledgements.  Returns the response body; *http_status is 200 when
 * every change was applied, 202 when the process cannot act now (its
 * publisher has not run lately) and the changes stay posted for
 * push_follow_up, 400/409 when the process refused one, 504 when
 * one was not acknowledged in time, 502 when the segment could not be
 * used.  Each change is written to the audit log as pending before it is
 * sent, then with its outcome: 503 (nothing sent) when the pending rows
 * cannot be written, 500 when the outcome cannot.  client says who asked
 * (an address, "rule:<id>", "reclaim"); reason why allocd made the change
 * itself, NULL for operators' and rules' changes (both go to the audit log). */
json_t *push_config(store_t *store, const collector_target_t *target, json_t *changes, const char *client,
                    int64_t rule_id, const char *reason, unsigned timeout_ms, int *http_status);

/* Record the outcome of changes left pending (202) whose process has
 * acknowledged them since, or withdraw those pending too long.  Called
 * once per collector tick. */
void push_follow_up(store_t *store);

#endif

/* fuzz_api_json.c - libFuzzer target: the JSON bodies allocd accepts.  The
 * input is parsed as the HTTP handlers parse it and checked as a config
 * change (push_validate) and as a rule (rules_validate); a bad body must
 * give a reason, never a crash. */
#include "push.h"
#include "rules.h"

#include <jansson.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_error_t err;
  json_t *body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &err);
  if (!body) return 0;
  char why[160];
  push_validate(body, why, sizeof why);
  rules_validate(body, why, sizeof why);
  json_t *glob = json_object_get(body, "exe_glob");
  if (json_is_string(glob)) rules_match(json_string_value(glob), "/usr/bin/example-service");
  json_decref(body);
  return 0;
}

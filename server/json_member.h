/* Go's encoding/json matches object keys to field names case-insensitively
 * (CONSUL-API.md §0): request bodies are read the same way here. */
#pragma once

#include <jansson.h>

/* The first member of @obj whose key equals @name ignoring ASCII case, or
 * NULL. Borrowed reference. */
json_t *srv_json_member(json_t *obj, const char *name);

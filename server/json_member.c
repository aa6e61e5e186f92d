#include "server/json_member.h"

#include <strings.h>

json_t *srv_json_member(json_t *obj, const char *name)
{
	const char *k;
	json_t *v;

	json_object_foreach (obj, k, v) {
		if (strcasecmp(k, name) == 0)
			return v;
	}
	return NULL;
}

/* Checks on a state image (a serialized SQLite database) before it
 * replaces a server's state.
 *
 * A restore goes through the log, and every server applies it; an image
 * that fails to load there, or that loads but makes later entries fail
 * (a trigger, a stricter index, a table of another shape), would stop
 * every server, again at each restart. So the leader refuses such an image
 * before proposing it. What passes: an image SQLite finds intact, in this
 * store's encoding and page size, whose every table, index, view and
 * trigger is one this version creates, with the same SQL, and whose
 * content reads back through the stores (every key, session, secret, ACL
 * token and policy, node, service and check; each service and check on a
 * node of the catalog, a service check on its service). Objects of this
 * version that the image lacks are allowed: an older version's backup;
 * they are created after the load. The checks run on private copies,
 * with SQLite's defensive settings for a database from elsewhere. */
#pragma once

#include <stddef.h>

#include "common/err.h"

struct sqlite3;

/* Check @img (@len bytes, borrowed, read only) against the schema of
 * @expected. 0, or BCN_EINVAL with the reason in @why (@cap bytes), or
 * BCN_ENOMEM. */
int image_check(struct sqlite3 *expected, const void *img, size_t len,
		char *why, size_t cap) BCN_MUST_CHECK;

/* Replace the content of @dst's main database with @img (borrowed): 0,
 * BCN_ECORRUPT if SQLite cannot read it, BCN_ENOMEM. The caller completes
 * the schema (the stores' migrate functions). */
int image_load(struct sqlite3 *dst, const void *img, size_t len) BCN_MUST_CHECK;

/* Fuzz the request-target parser (server/uri.h) that every HTTP request goes
 * through before routing.
 *
 * The input is the target as libmicrohttpd hands it over: a C string, so an
 * input with an interior NUL is skipped. On success the result must hold
 * together: the path is no longer than the input and NUL-terminated, every
 * argument name and value is NUL-terminated inside the parser's one
 * allocation, and http_uri_arg() finds each argument by its name. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/uri.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* True if a NUL lies in @s[0..end). */
static bool terminated(const char *s, const char *lo, const char *end)
{
	return s >= lo && s < end && memchr(s, '\0', (size_t)(end - s)) != NULL;
}

static void check(const struct http_uri *u, const char *raw, size_t rawlen)
{
	/* What http_uri_parse() allocates: see its comment. */
	const char *lo = u->mem;
	const char *end = u->mem + rawlen + 2 * HTTP_MAX_ARGS + 2;

	if (u->path == NULL || u->path_len > rawlen)
		abort();
	if (!terminated(u->path, lo, end) || u->path + u->path_len >= end ||
	    u->path[u->path_len] != '\0')
		abort();
	if (strchr(raw, '%') == NULL && strchr(raw, '?') == NULL &&
	    (u->path_len != rawlen || memcmp(u->path, raw, rawlen) != 0))
		abort(); /* nothing to decode: the path is the input */
	if (u->n_args > HTTP_MAX_ARGS)
		abort();
	if (u->n_args > 0 && strchr(raw, '?') == NULL)
		abort();
	for (size_t i = 0; i < u->n_args; i++) {
		const struct http_arg *a = &u->args[i];
		const struct http_arg *found;

		if (!terminated(a->name, lo, end) ||
		    !terminated(a->value, lo, end))
			abort();
		if (a->value_len > rawlen || a->value + a->value_len >= end ||
		    a->value[a->value_len] != '\0')
			abort();
		if (!a->has_value && a->value_len != 0)
			abort();
		if (strlen(a->value) != a->value_len)
			abort(); /* a %00 in the query is refused */
		/* The first argument of that name, which may be an earlier
		 * one ("?a=1&a=2"). */
		found = http_uri_arg(u, a->name);
		if (found == NULL || found > a ||
		    strcmp(found->name, a->name) != 0)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_uri u;
	const char *why = NULL;
	char *raw;
	int rc;

	if (memchr(data, '\0', size) != NULL)
		return 0;
	raw = malloc(size + 1);
	if (raw == NULL)
		return 0;
	memcpy(raw, data, size);
	raw[size] = '\0';

	rc = http_uri_parse(raw, &u, &why);
	if (rc == 0)
		check(&u, raw, size);
	else if (rc == BCN_EINVAL && why == NULL)
		abort(); /* the reply needs a reason */
	else if (rc != BCN_EINVAL && rc != BCN_ENOMEM)
		abort();
	http_uri_close(&u);
	free(raw);
	return 0;
}

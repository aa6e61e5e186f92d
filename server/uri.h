/* Strict parsing of a request target ("/v1/kv/a%2Fb?recurse&index=5").
 *
 * Pure: no I/O, no MHD. The path is percent-decoded ('+' stays '+'); query
 * names and values are form-decoded ('+' is a space, then %XX), as Go's
 * net/url does. A malformed escape is an error, never passed through. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

#define HTTP_MAX_ARGS 64

struct http_arg {
	char *name;  /* NUL-terminated; %00 is refused in names and values */
	char *value; /* "" when the parameter had no '=' */
	size_t value_len;
	bool has_value;
};

struct http_uri {
	char *path; /* decoded; NUL-terminated */
	size_t path_len;
	struct http_arg args[HTTP_MAX_ARGS];
	size_t n_args;
	char *mem; /* one allocation behind every string above */
};

/* Parse @raw. Returns 0, BCN_ENOMEM, or BCN_EINVAL with @why pointing at a
 * static reason. Free with http_uri_close() in every case. */
int http_uri_parse(const char *raw, struct http_uri *u,
		   const char **why) BCN_MUST_CHECK;
void http_uri_close(struct http_uri *u);

/* The value of the first parameter called @name, or NULL if absent. */
const struct http_arg *http_uri_arg(const struct http_uri *u, const char *name);

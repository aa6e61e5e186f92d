#include "server/uri.h"

#include <string.h>

#include "common/alloc.h"
#include "common/parse.h"

/* Form-decode @s[0..n) in place into @out; returns the length or -1. */
static long form_decode(const char *s, size_t n, char *out)
{
	long len;

	memcpy(out, s, n);
	for (size_t i = 0; i < n; i++)
		if (out[i] == '+')
			out[i] = ' ';
	len = bcn_pct_decode(out, n, out);
	if (len >= 0)
		out[len] = '\0';
	return len;
}

int http_uri_parse(const char *raw, struct http_uri *u, const char **why)
{
	const char *q, *end;
	size_t rawlen = strlen(raw);
	char *m;
	long n;

	memset(u, 0, sizeof *u);
	/* Every decoded string is no longer than its source, and each gets a
	 * NUL: rawlen + args + 1 bytes are enough. */
	u->mem = bcn_malloc(rawlen + 2 * HTTP_MAX_ARGS + 2);
	if (u->mem == NULL)
		return BCN_ENOMEM;
	m = u->mem;
	q = strchr(raw, '?');
	end = q != NULL ? q : raw + rawlen;
	n = bcn_pct_decode(raw, (size_t)(end - raw), m);
	if (n < 0) {
		*why = "Invalid URL path: malformed percent-encoding";
		return BCN_EINVAL;
	}
	u->path = m;
	u->path_len = (size_t)n;
	m[n] = '\0';
	m += n + 1;
	if (q == NULL)
		return 0;
	for (const char *p = q + 1; *p != '\0';) {
		const char *amp = strchr(p, '&');
		const char *stop = amp != NULL ? amp : p + strlen(p);
		const char *eq = memchr(p, '=', (size_t)(stop - p));
		struct http_arg *a;

		if (stop == p) { /* "&&" or a trailing '&' */
			p = stop + 1;
			continue;
		}
		if (u->n_args == HTTP_MAX_ARGS) {
			*why = "Too many query parameters";
			return BCN_EINVAL;
		}
		a = &u->args[u->n_args];
		n = form_decode(p, (size_t)((eq != NULL ? eq : stop) - p), m);
		if (n < 0 || memchr(m, '\0', (size_t)n) != NULL)
			goto bad;
		a->name = m;
		m += n + 1;
		if (eq != NULL) {
			n = form_decode(eq + 1, (size_t)(stop - eq - 1), m);
			if (n < 0 || memchr(m, '\0', (size_t)n) != NULL)
				goto bad;
			a->value = m;
			a->value_len = (size_t)n;
			a->has_value = true;
			m += n + 1;
		} else {
			*m = '\0';
			a->value = m++;
		}
		u->n_args++;
		if (amp == NULL)
			break;
		p = amp + 1;
	}
	return 0;
bad:
	*why = "Invalid query string: malformed percent-encoding or NUL";
	return BCN_EINVAL;
}

void http_uri_close(struct http_uri *u)
{
	bcn_free(u->mem);
	memset(u, 0, sizeof *u);
}

const struct http_arg *http_uri_arg(const struct http_uri *u, const char *name)
{
	for (size_t i = 0; i < u->n_args; i++)
		if (strcmp(u->args[i].name, name) == 0)
			return &u->args[i];
	return NULL;
}

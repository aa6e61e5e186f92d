/* Small helpers of libbeacon: errors, clocks, randomness, hashing, base64,
 * percent-encoding. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/client_int.h"

BEACON_API const char *beacon_strerror(int code)
{
	switch (code) {
	case 0:
		return "success";
	case BEACON_ENOMEM:
		return "out of memory";
	case BEACON_EIO:
		return "I/O error";
	case BEACON_EINVAL:
		return "invalid argument";
	case BEACON_ENOTFOUND:
		return "not found";
	case BEACON_ECONFLICT:
		return "check-and-set failed";
	case BEACON_ETOOBIG:
		return "too large";
	case BEACON_EUNAVAILABLE:
		return "no server answered";
	case BEACON_ESERVER:
		return "server error";
	case BEACON_EDENIED:
		return "permission denied";
	case BEACON_EPROTO:
		return "unexpected answer";
	case BEACON_ECANCELED:
		return "canceled";
	}
	return "unknown error";
}

BEACON_API const char *beacon_version(void)
{
	return BEACON_VERSION;
}

uint64_t beacon__now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int64_t beacon__wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t beacon__rand(struct beacon *b)
{
	uint64_t x;

	pthread_mutex_lock(&b->mu);
	x = b->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	b->rng = x;
	pthread_mutex_unlock(&b->mu);
	return x * 0x2545F4914F6CDD1DULL;
}

uint64_t beacon__fnv1a(const void *p, size_t n, uint64_t h)
{
	const unsigned char *s = p;

	for (size_t i = 0; i < n; i++) {
		h ^= s[i];
		h *= 1099511628211ULL;
	}
	return h;
}

char *beacon__strndup(const char *s, size_t n)
{
	char *d;

	if (s == NULL)
		return NULL;
	d = malloc(n + 1);
	if (d == NULL)
		return NULL;
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

char *beacon__strdup(const char *s)
{
	return s == NULL ? NULL : beacon__strndup(s, strlen(s));
}

void beacon__errf(struct beacon_meta *m, const char *fmt, ...)
{
	va_list ap;

	if (m == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(m->error, sizeof m->error, fmt, ap);
	va_end(ap);
}

void beacon__meta_reset(struct beacon_meta *m)
{
	if (m != NULL)
		memset(m, 0, sizeof *m);
}

void beacon__json_free(void *p)
{
	json_malloc_t m;
	json_free_t f;

	json_get_alloc_funcs(&m, &f);
	f(p);
}

/* Remove every CreateIndex/ModifyIndex member, recursively: they change
 * when a value is written again unchanged, which is not a change of
 * content. */
static void strip_indexes(json_t *j)
{
	const char *k;
	json_t *v;
	size_t i;

	if (json_is_object(j)) {
		json_object_del(j, "CreateIndex");
		json_object_del(j, "ModifyIndex");
		json_object_foreach (j, k, v) {
			strip_indexes(v);
		}
	} else if (json_is_array(j)) {
		json_array_foreach (j, i, v) {
			strip_indexes(v);
		}
	}
}

int beacon__content_hash(const char *body, size_t len, uint64_t *out)
{
	json_t *j = json_loadb(body, len, JSON_DECODE_ANY, NULL);
	char *s;

	if (j == NULL) {
		*out = beacon__fnv1a(body, len, BEACON__FNV_INIT);
		return 0;
	}
	strip_indexes(j);
	s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	json_decref(j);
	if (s == NULL)
		return BEACON_ENOMEM;
	*out = beacon__fnv1a(s, strlen(s), BEACON__FNV_INIT);
	beacon__json_free(s);
	return 0;
}

int beacon__status_rc(int status)
{
	if (status >= 200 && status < 300)
		return 0;
	switch (status) {
	case 400:
		return BEACON_EINVAL;
	case 401:
	case 403:
		return BEACON_EDENIED;
	case 404:
		return BEACON_ENOTFOUND;
	case 409:
		return BEACON_ECONFLICT;
	case 413:
		return BEACON_ETOOBIG;
	}
	return BEACON_ESERVER;
}

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *beacon__b64_encode(const void *p, size_t n)
{
	const unsigned char *s = p;
	char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
	size_t i;

	if (out == NULL)
		return NULL;
	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v =
		    (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
		*o++ = b64[v >> 18];
		*o++ = b64[(v >> 12) & 63];
		*o++ = b64[(v >> 6) & 63];
		*o++ = b64[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)s[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)s[i + 1] << 8;
		*o++ = b64[v >> 18];
		*o++ = b64[(v >> 12) & 63];
		*o++ = i + 1 < n ? b64[(v >> 6) & 63] : '=';
		*o++ = '=';
	}
	*o = '\0';
	return out;
}

static int b64_val(char c)
{
	const char *p = c != '\0' ? strchr(b64, c) : NULL;

	return p == NULL ? -1 : (int)(p - b64);
}

char *beacon__b64_decode(const char *s, size_t n, size_t *out_len)
{
	unsigned char *out;
	size_t o = 0, i, pad = 0;
	uint32_t acc = 0;
	unsigned bits = 0;

	while (n > 0 && s[n - 1] == '=' && pad < 2) {
		n--;
		pad++;
	}
	if (n % 4 == 1)
		return NULL;
	out = malloc(n / 4 * 3 + 3);
	if (out == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		int v = b64_val(s[i]);
		if (v < 0) {
			free(out);
			return NULL;
		}
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* Leftover bits must be zero (canonical encoding). */
	if (acc != 0) {
		free(out);
		return NULL;
	}
	out[o] = '\0';
	*out_len = o;
	return (char *)out;
}

BEACON_API char *beacon_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *out = malloc(3 * n + 1), *o = out;

	if (out == NULL)
		return NULL;
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		    c == '_' || c == '~' || c == '/') {
			*o++ = (char)c;
		} else {
			*o++ = '%';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	*o = '\0';
	return out;
}

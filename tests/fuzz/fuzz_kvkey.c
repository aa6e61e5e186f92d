/* Fuzz the small parsers that see client bytes first: the key grammar
 * (kv_key_check), UTF-8 validation, percent-decoding, base64 and the
 * decimal and duration parsers of query parameters (common/parse.h).
 *
 * Besides running them under the sanitizers, each is checked against
 * something independent: UTF-8 against a table-driven validator written from
 * Unicode's Table 3-7, base64 by round trips, bcn_parse_u64 against strtoull.
 * Any disagreement aborts. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/parse.h"
#include "kv/kv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Well-formed UTF-8 byte sequences, The Unicode Standard §3.9, Table 3-7. */
static bool ref_utf8_valid(const uint8_t *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t c = s[i];
		uint8_t lo = 0x80, hi = 0xbf;
		size_t len;

		if (c <= 0x7f) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			len = 2;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3;
			if (c == 0xe0)
				lo = 0xa0;
			else if (c == 0xed)
				hi = 0x9f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4;
			if (c == 0xf0)
				lo = 0x90;
			else if (c == 0xf4)
				hi = 0x8f;
		} else {
			return false;
		}
		if (n - i < len || s[i + 1] < lo || s[i + 1] > hi)
			return false;
		for (size_t k = 2; k < len; k++)
			if (s[i + k] < 0x80 || s[i + k] > 0xbf)
				return false;
		i += len;
	}
	return true;
}

static void check_key(const uint8_t *data, size_t size)
{
	const char *key = (const char *)data;
	const char *why = NULL;
	int exact = kv_key_check(key, size, false, &why);

	if (exact != 0 && (exact != BCN_EINVAL || why == NULL))
		abort();
	why = NULL;
	int prefix = kv_key_check(key, size, true, &why);
	if (prefix != 0 && (prefix != BCN_EINVAL || why == NULL))
		abort();
	/* A prefix may be empty; otherwise the grammar is the same. */
	if (size > 0 ? prefix != exact : (prefix != 0 || exact == 0))
		abort();
	if (exact == 0) {
		if (size > KV_MAX_KEY_LEN || data[0] == '/' ||
		    !ref_utf8_valid(data, size))
			abort();
		for (size_t i = 0; i < size; i++)
			if (data[i] < 0x20 || data[i] == 0x7f ||
			    (data[i] == '/' && i + 1 < size &&
			     data[i + 1] == '/'))
				abort();
	}
	if (bcn_utf8_valid(key, size) != ref_utf8_valid(data, size))
		abort();
}

static bool ishex(uint8_t c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
	       (c >= 'A' && c <= 'F');
}

static void check_pct(const uint8_t *data, size_t size)
{
	char *out = malloc(size > 0 ? size : 1);
	size_t escapes = 0;
	bool bad = false;
	long n;

	if (out == NULL)
		return;
	for (size_t i = 0; i < size; i++) {
		if (data[i] != '%')
			continue;
		if (size - i < 3 || !ishex(data[i + 1]) ||
		    !ishex(data[i + 2])) {
			bad = true;
			break;
		}
		escapes++;
		i += 2;
	}
	n = bcn_pct_decode((const char *)data, size, out);
	if (bad ? n != -1 : n != (long)(size - 2 * escapes))
		abort();
	free(out);
}

/* Encode @data, decode it back with and without padding. */
static void check_b64_roundtrip(const uint8_t *data, size_t size)
{
	size_t elen = bcn_b64_encoded_len(size);
	char *enc = malloc(elen + 1);
	uint8_t *dec = malloc(elen * 3 / 4 > 0 ? elen * 3 / 4 : 1);
	long n;

	if (enc == NULL || dec == NULL)
		goto out;
	bcn_b64_encode(data, size, enc);
	if (strlen(enc) != elen)
		abort();
	n = bcn_b64_decode(enc, elen, dec);
	if (n != (long)size || memcmp(dec, data, size) != 0)
		abort();
	while (elen > 0 && enc[elen - 1] == '=')
		elen--;
	n = bcn_b64_decode(enc, elen, dec);
	if (n != (long)size || memcmp(dec, data, size) != 0)
		abort();
out:
	free(enc);
	free(dec);
}

/* Decode @data as base64 text into exactly the room the header promises,
 * and if it is accepted, check that it was canonical: encoding the result
 * gives the input back, up to padding. */
static void check_b64_decode(const uint8_t *data, size_t size)
{
	uint8_t *dec = malloc(size * 3 / 4 > 0 ? size * 3 / 4 : 1);
	char *enc = NULL;
	size_t ilen = size, elen;
	long n;

	if (dec == NULL)
		return;
	n = bcn_b64_decode((const char *)data, size, dec);
	if (n < 0)
		goto out;
	if ((size_t)n > size * 3 / 4)
		abort();
	enc = malloc(bcn_b64_encoded_len((size_t)n) + 1);
	if (enc == NULL)
		goto out;
	bcn_b64_encode(dec, (size_t)n, enc);
	elen = strlen(enc);
	while (elen > 0 && enc[elen - 1] == '=')
		elen--;
	while (ilen > 0 && data[ilen - 1] == '=')
		ilen--;
	if (elen != ilen || memcmp(enc, data, elen) != 0)
		abort();
out:
	free(enc);
	free(dec);
}

static void check_numbers(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	uint64_t v = 0, ms = 0;
	bool digits, flag;
	int rc;

	if (s == NULL)
		return;
	memcpy(s, data, size);
	s[size] = '\0'; /* an interior NUL just ends the string early */

	rc = bcn_parse_u64(s, &v);
	digits = s[0] != '\0' && strspn(s, "0123456789") == strlen(s);
	if (rc == 0 && !digits)
		abort();
	if (digits) {
		unsigned long long ref;
		errno = 0;
		ref = strtoull(s, NULL, 10);
		if (errno == 0 ? rc != 0 || v != ref : rc == 0)
			abort();
	}

	rc = bcn_parse_duration_ms(s, &ms);
	if (rc != 0 && rc != BCN_EINVAL)
		abort();
	if (rc == 0 && strcmp(s, "0") != 0 && digits)
		abort(); /* a bare number needs a unit, as in Go */
	if (rc == 0 && ms > 9223372036854ULL)
		abort(); /* capped at 2^63-1 ns */

	rc = bcn_parse_bool(s, &flag);
	if (rc != 0 && rc != BCN_EINVAL)
		abort();
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_key(data, size);
	check_pct(data, size);
	check_b64_roundtrip(data, size);
	check_b64_decode(data, size);
	check_numbers(data, size);
	return 0;
}

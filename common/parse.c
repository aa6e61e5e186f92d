#include "common/parse.h"

#include <string.h>

int bcn_parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (s == NULL || *s == '\0')
		return BCN_EINVAL;
	for (; *s != '\0'; s++) {
		unsigned d;
		if (*s < '0' || *s > '9')
			return BCN_EINVAL;
		d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return BCN_EINVAL;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

/* Go's time.ParseDuration units, in nanoseconds. */
static const struct {
	const char *name;
	uint64_t ns;
} units[] = {
    {"ns", 1ULL},	    {"us", 1000ULL},
    {"\xc2\xb5s", 1000ULL}, /* U+00B5 micro sign */
    {"\xce\xbcs", 1000ULL}, /* U+03BC Greek mu */
    {"ms", 1000000ULL},	    {"s", 1000000000ULL},
    {"m", 60000000000ULL},  {"h", 3600000000000ULL},
};

int bcn_parse_duration_ms(const char *s, uint64_t *out_ms)
{
	/* Exact integer arithmetic, as Go's time.ParseDuration: Go caps
	 * durations at 2^63-1 ns (about 292 years). */
	const unsigned __int128 max_ns = 9223372036854775807ULL;
	unsigned __int128 total = 0;

	if (s == NULL || *s == '\0')
		return BCN_EINVAL;
	if (strcmp(s, "0") == 0) {
		*out_ms = 0;
		return 0;
	}
	if (*s == '+')
		s++;
	if (*s == '-' || *s == '\0')
		return BCN_EINVAL; /* negative waits make no sense here */
	while (*s != '\0') {
		unsigned __int128 whole = 0, frac = 0, scale = 1;
		bool digits = false;
		size_t ulen = 0;
		uint64_t mult = 0;

		while (*s >= '0' && *s <= '9') {
			whole = whole * 10 + (unsigned)(*s++ - '0');
			digits = true;
			if (whole > max_ns)
				return BCN_EINVAL;
		}
		if (*s == '.') {
			s++;
			while (*s >= '0' && *s <= '9') {
				/* Digits past 1 ns of precision cannot
				 * matter: drop them, as Go does. */
				if (scale < 1000000000000000000ULL) {
					frac = frac * 10 + (unsigned)(*s - '0');
					scale *= 10;
				}
				s++;
				digits = true;
			}
		}
		if (!digits)
			return BCN_EINVAL;
		for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
			size_t l = strlen(units[i].name);
			/* Longest match: "ms" before "m", "ns" before "s". */
			if (l > ulen && strncmp(s, units[i].name, l) == 0) {
				ulen = l;
				mult = units[i].ns;
			}
		}
		if (ulen == 0)
			return BCN_EINVAL; /* a unit is required */
		s += ulen;
		total += whole * mult + frac * mult / scale;
		if (total > max_ns)
			return BCN_EINVAL;
	}
	*out_ms = (uint64_t)(total / 1000000);
	return 0;
}

int bcn_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"",	  "1",	  "t",	 "T",
					  "TRUE", "true", "True"};
	static const char *const no[] = {"0",	  "f",	   "F",
					 "FALSE", "false", "False"};

	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
		if (strcmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
	for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
		if (strcmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	return BCN_EINVAL;
}

bool bcn_utf8_valid(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i];
		uint32_t cp;
		size_t len;

		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			len = 2;
			cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			len = 3;
			cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			len = 4;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (n - i < len)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
		    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

long bcn_pct_decode(const char *in, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (in[i] != '%') {
			out[o++] = in[i];
			continue;
		}
		if (n - i < 3)
			return -1;
		int hi = hexval(in[i + 1]), lo = hexval(in[i + 2]);
		if (hi < 0 || lo < 0)
			return -1;
		out[o++] = (char)(hi << 4 | lo);
		i += 2;
	}
	return (long)o;
}

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t bcn_b64_encoded_len(size_t n)
{
	return (n + 2) / 3 * 4;
}

void bcn_b64_encode(const void *in, size_t n, char *out)
{
	const unsigned char *p = in;
	size_t o = 0, i;

	for (i = 0; i + 2 < n; i += 3) {
		out[o++] = b64[p[i] >> 2];
		out[o++] = b64[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
		out[o++] = b64[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)];
		out[o++] = b64[p[i + 2] & 63];
	}
	if (i < n) {
		out[o++] = b64[p[i] >> 2];
		if (i + 1 < n) {
			out[o++] = b64[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
			out[o++] = b64[(p[i + 1] & 15) << 2];
		} else {
			out[o++] = b64[(p[i] & 3) << 4];
			out[o++] = '=';
		}
		out[o++] = '=';
	}
	out[o] = '\0';
}

static int b64val(char c)
{
	const char *p = c == '\0' ? NULL : strchr(b64, c);

	return p == NULL ? -1 : (int)(p - b64);
}

long bcn_b64_decode(const char *in, size_t n, void *outp)
{
	unsigned char *out = outp;
	size_t o = 0, pads = 0, m;
	uint32_t acc = 0;
	int bits = 0;

	while (pads < n && in[n - 1 - pads] == '=')
		pads++;
	m = n - pads;
	/* Padding is optional, but if present it must be exactly what the
	 * length needs (Go's StdEncoding). */
	if (m % 4 == 1 || pads > 2 ||
	    (pads > 0 && (n % 4 != 0 || (m % 4 == 2   ? pads != 2
					 : m % 4 == 3 ? pads != 1
						      : true))))
		return -1;
	for (size_t i = 0; i < m; i++) {
		int v = b64val(in[i]);
		if (v < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	/* Leftover bits must be zero for a canonical encoding. */
	if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
		return -1;
	return (long)o;
}

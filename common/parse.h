/* Parsers for the small textual values that arrive in requests. Pure
 * functions over borrowed bytes; never allocate. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Parse a decimal uint64 with no sign, spaces or overflow. 0 or BCN_EINVAL. */
int bcn_parse_u64(const char *s, uint64_t *out) BCN_MUST_CHECK;

/* Parse a Go duration ("300ms", "1.5h", "2h45m", "0") into milliseconds,
 * rounding down. A bare number other than "0" is invalid, as in Go.
 * Returns 0 or BCN_EINVAL (also on overflow). */
int bcn_parse_duration_ms(const char *s, uint64_t *out_ms) BCN_MUST_CHECK;

/* Parse Go's strconv.ParseBool, with the empty string meaning true (Consul's
 * ?passing). Returns 0 or BCN_EINVAL. */
int bcn_parse_bool(const char *s, bool *out) BCN_MUST_CHECK;

/* True if @s[0..n) is valid UTF-8 (no overlongs, no surrogates). */
bool bcn_utf8_valid(const char *s, size_t n);

/* Percent-decode @in[0..n) into @out (room for n bytes; may alias @in).
 * '+' stays '+' (paths are not form-encoded). Returns the decoded length, or
 * -1 for a malformed escape ('%' not followed by two hex digits). */
long bcn_pct_decode(const char *in, size_t n, char *out);

/* Base64 (standard alphabet, with padding). @out needs
 * bcn_b64_encoded_len(n) + 1 bytes; a NUL is written. */
size_t bcn_b64_encoded_len(size_t n);
void bcn_b64_encode(const void *in, size_t n, char *out);
/* Decode into @out (room for n*3/4 bytes). Returns the length, or -1 if the
 * input is not canonical standard base64 (padding optional). */
long bcn_b64_decode(const char *in, size_t n, void *out);

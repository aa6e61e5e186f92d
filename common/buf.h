/* A growable byte buffer. Always NUL-terminated when non-empty, so text can
 * be handed to functions that want a C string. After an allocation failure
 * the buffer is marked failed: further appends are no-ops, and
 * bcn_buf_failed() tells the caller once at the end (a single check instead
 * of one per append). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct bcn_buf {
	char *data; /* bcn_malloc'd, owned */
	size_t len;
	size_t cap;
	bool failed;
};

void bcn_buf_init(struct bcn_buf *b);
void bcn_buf_close(struct bcn_buf *b);
void bcn_buf_reset(struct bcn_buf *b);
/* Make room for @extra more bytes. Returns 0 or BCN_ENOMEM. */
int bcn_buf_reserve(struct bcn_buf *b, size_t extra);
void bcn_buf_put(struct bcn_buf *b, const void *p, size_t n);
void bcn_buf_puts(struct bcn_buf *b, const char *s);
void bcn_buf_putc(struct bcn_buf *b, char c);
void bcn_buf_printf(struct bcn_buf *b, const char *fmt, ...) BCN_PRINTF(2, 3);
/* Big-endian fixed-width integers and a varint-free length-prefixed blob. */
void bcn_buf_put_u8(struct bcn_buf *b, uint8_t v);
void bcn_buf_put_u32(struct bcn_buf *b, uint32_t v);
void bcn_buf_put_u64(struct bcn_buf *b, uint64_t v);
void bcn_buf_put_blob(struct bcn_buf *b, const void *p, size_t n);
/* Returns true if any append failed for lack of memory. */
bool bcn_buf_failed(const struct bcn_buf *b);
/* Hand the data to the caller (bcn_free it) and reset @b. NULL if empty. */
char *bcn_buf_steal(struct bcn_buf *b, size_t *len);

/* A read cursor over borrowed bytes, for decoders. Reads past the end set
 * @err and return zeros, so a decoder checks once at the end. */
struct bcn_cursor {
	const uint8_t *p;
	size_t left;
	bool err;
};

void bcn_cursor_init(struct bcn_cursor *c, const void *p, size_t n);
uint8_t bcn_cursor_u8(struct bcn_cursor *c);
uint32_t bcn_cursor_u32(struct bcn_cursor *c);
uint64_t bcn_cursor_u64(struct bcn_cursor *c);
/* Point @out at a length-prefixed blob inside the cursor's bytes. */
const void *bcn_cursor_blob(struct bcn_cursor *c, size_t *len);

/* Append @s[0..n) as a JSON string literal (quotes included). Bytes >= 0x80
 * are copied as they are: callers pass valid UTF-8. */
void bcn_buf_put_json_str(struct bcn_buf *b, const char *s, size_t n);

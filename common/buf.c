#include "common/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"

void bcn_buf_init(struct bcn_buf *b)
{
	memset(b, 0, sizeof *b);
}

void bcn_buf_close(struct bcn_buf *b)
{
	bcn_free(b->data);
	bcn_buf_init(b);
}

void bcn_buf_reset(struct bcn_buf *b)
{
	b->len = 0;
	b->failed = false;
	if (b->data != NULL)
		b->data[0] = '\0';
}

int bcn_buf_reserve(struct bcn_buf *b, size_t extra)
{
	size_t need, cap;
	char *p;

	if (b->failed)
		return BCN_ENOMEM;
	if (extra > SIZE_MAX / 2 - b->len - 1)
		goto fail;
	need = b->len + extra + 1; /* room for the NUL */
	if (need <= b->cap)
		return 0;
	cap = b->cap == 0 ? 64 : b->cap;
	while (cap < need)
		cap *= 2;
	p = bcn_realloc(b->data, cap);
	if (p == NULL)
		goto fail;
	b->data = p;
	b->cap = cap;
	return 0;
fail:
	b->failed = true;
	return BCN_ENOMEM;
}

void bcn_buf_put(struct bcn_buf *b, const void *p, size_t n)
{
	if (bcn_buf_reserve(b, n) != 0)
		return;
	if (n > 0)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void bcn_buf_puts(struct bcn_buf *b, const char *s)
{
	bcn_buf_put(b, s, strlen(s));
}

void bcn_buf_putc(struct bcn_buf *b, char c)
{
	bcn_buf_put(b, &c, 1);
}

void bcn_buf_printf(struct bcn_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || bcn_buf_reserve(b, (size_t)n) != 0)
		return;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void bcn_buf_put_u8(struct bcn_buf *b, uint8_t v)
{
	bcn_buf_put(b, &v, 1);
}

void bcn_buf_put_u32(struct bcn_buf *b, uint32_t v)
{
	uint8_t x[4];

	for (int i = 3; i >= 0; i--, v >>= 8)
		x[i] = (uint8_t)v;
	bcn_buf_put(b, x, sizeof x);
}

void bcn_buf_put_u64(struct bcn_buf *b, uint64_t v)
{
	uint8_t x[8];

	for (int i = 7; i >= 0; i--, v >>= 8)
		x[i] = (uint8_t)v;
	bcn_buf_put(b, x, sizeof x);
}

void bcn_buf_put_blob(struct bcn_buf *b, const void *p, size_t n)
{
	if (n > UINT32_MAX) {
		b->failed = true;
		return;
	}
	bcn_buf_put_u32(b, (uint32_t)n);
	bcn_buf_put(b, p, n);
}

bool bcn_buf_failed(const struct bcn_buf *b)
{
	return b->failed;
}

char *bcn_buf_steal(struct bcn_buf *b, size_t *len)
{
	char *p = b->data;

	if (len != NULL)
		*len = b->len;
	bcn_buf_init(b);
	return p;
}

void bcn_cursor_init(struct bcn_cursor *c, const void *p, size_t n)
{
	c->p = p;
	c->left = n;
	c->err = false;
}

static const uint8_t *take(struct bcn_cursor *c, size_t n)
{
	const uint8_t *p;

	if (c->err || c->left < n) {
		c->err = true;
		return NULL;
	}
	p = c->p;
	c->p += n;
	c->left -= n;
	return p;
}

uint8_t bcn_cursor_u8(struct bcn_cursor *c)
{
	const uint8_t *p = take(c, 1);

	return p == NULL ? 0 : p[0];
}

uint32_t bcn_cursor_u32(struct bcn_cursor *c)
{
	const uint8_t *p = take(c, 4);
	uint32_t v = 0;

	if (p == NULL)
		return 0;
	for (int i = 0; i < 4; i++)
		v = (v << 8) | p[i];
	return v;
}

uint64_t bcn_cursor_u64(struct bcn_cursor *c)
{
	const uint8_t *p = take(c, 8);
	uint64_t v = 0;

	if (p == NULL)
		return 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

const void *bcn_cursor_blob(struct bcn_cursor *c, size_t *len)
{
	uint32_t n = bcn_cursor_u32(c);
	const uint8_t *p = take(c, n);

	*len = p == NULL ? 0 : n;
	return p;
}

void bcn_buf_put_json_str(struct bcn_buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t start = 0;

	bcn_buf_putc(b, '"');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[7];
		size_t elen = 2;

		if (c >= 0x20 && c != '"' && c != '\\' && c != '<' &&
		    c != '>' && c != '&')
			continue;
		bcn_buf_put(b, s + start, i - start);
		start = i + 1;
		esc[0] = '\\';
		switch (c) {
		case '"':
			esc[1] = '"';
			break;
		case '\\':
			esc[1] = '\\';
			break;
		case '\n':
			esc[1] = 'n';
			break;
		case '\r':
			esc[1] = 'r';
			break;
		case '\t':
			esc[1] = 't';
			break;
		default: /* as Go's encoding/json: <, >, & and controls */
			esc[1] = 'u';
			esc[2] = '0';
			esc[3] = '0';
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			elen = 6;
		}
		bcn_buf_put(b, esc, elen);
	}
	bcn_buf_put(b, s + start, n - start);
	bcn_buf_putc(b, '"');
}

/* Catalog records on the wire (the Raft log) and in the state (check
 * definitions), and the checks a request passes before it is proposed.
 *
 * An op: u8 verb | u8 keep_status | the record of its verb (node, service
 * or check), each field in a fixed order. A string is u32 length | bytes |
 * NUL, so that a decoded record points into the blob; a list is u32 length
 * | bytes, the bytes ending with a NUL when not empty. Integers big-endian.
 * Decoding checks every length against what is left, so a damaged entry is
 * refused rather than read past. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/parse.h"
#include "health/cat_def.h"
#include "health/catalog.h"

#define CODEC_VERSION 1

static const char *const status_names[] = {
    [CAT_PASSING] = "passing",
    [CAT_WARNING] = "warning",
    [CAT_CRITICAL] = "critical",
};

const char *cat_status_name(enum cat_status s)
{
	if (s < CAT_PASSING || s > CAT_CRITICAL)
		return "critical";
	return status_names[s];
}

enum cat_status cat_status_parse(const char *s)
{
	for (int i = CAT_PASSING; i <= CAT_CRITICAL; i++)
		if (strcmp(s, status_names[i]) == 0)
			return (enum cat_status)i;
	return 0;
}

const char *cat_strs_next(const struct cat_strs *l, size_t *pos)
{
	const char *s;

	if (l->data == NULL || *pos >= l->len)
		return NULL;
	s = l->data + *pos;
	*pos += strlen(s) + 1;
	return s;
}

size_t cat_strs_count(const struct cat_strs *l)
{
	size_t n = 0, pos = 0;

	while (cat_strs_next(l, &pos) != NULL)
		n++;
	return n;
}

bool cat_strs_has(const struct cat_strs *l, const char *s)
{
	size_t pos = 0;
	const char *t;

	while ((t = cat_strs_next(l, &pos)) != NULL)
		if (strcmp(t, s) == 0)
			return true;
	return false;
}

/* ---- encoding --------------------------------------------------------------
 */

static void put_str(struct bcn_buf *b, const char *s)
{
	size_t n = s != NULL ? strlen(s) : 0;

	bcn_buf_put_u32(b, (uint32_t)n);
	bcn_buf_put(b, s != NULL ? s : "", n);
	bcn_buf_putc(b, '\0');
}

static void put_strs(struct bcn_buf *b, const struct cat_strs *l)
{
	bcn_buf_put_blob(b, l->data, l->data != NULL ? l->len : 0);
}

static void put_node(struct bcn_buf *b, const struct cat_node *n)
{
	put_str(b, n->name);
	put_str(b, n->id);
	put_str(b, n->address);
	put_strs(b, &n->tagged);
	put_strs(b, &n->meta);
}

static void put_svc(struct bcn_buf *b, const struct cat_service *v)
{
	put_str(b, v->node);
	put_str(b, v->id);
	put_str(b, v->name);
	put_str(b, v->kind);
	put_strs(b, &v->tags);
	put_str(b, v->address);
	put_strs(b, &v->tagged);
	put_strs(b, &v->meta);
	bcn_buf_put_u32(b, v->port);
	bcn_buf_put_u32(b, v->weight_passing);
	bcn_buf_put_u32(b, v->weight_warning);
	bcn_buf_put_u8(b, v->enable_tag_override);
}

void cat_def_encode(const struct cat_check_def *d, struct bcn_buf *b)
{
	bcn_buf_put_u64(b, d->interval_ms);
	bcn_buf_put_u64(b, d->timeout_ms);
	bcn_buf_put_u64(b, d->ttl_ms);
	bcn_buf_put_u64(b, d->deregister_after_ms);
	put_str(b, d->http);
	put_str(b, d->method);
	put_str(b, d->body);
	put_str(b, d->tcp);
	put_str(b, d->tls_server_name);
	put_strs(b, &d->header);
	bcn_buf_put_u8(b, d->tls_skip_verify);
	bcn_buf_put_u8(b, d->disable_redirects);
	bcn_buf_put_u32(b, d->output_max);
}

static void put_chk(struct bcn_buf *b, const struct cat_check *c)
{
	put_str(b, c->node);
	put_str(b, c->id);
	put_str(b, c->name);
	bcn_buf_put_u8(b, (uint8_t)c->status);
	put_str(b, c->notes);
	put_str(b, c->output);
	put_str(b, c->service_id);
	put_str(b, c->type);
	cat_def_encode(&c->def, b);
}

int cat_op_encode(const struct cat_op *op, struct bcn_buf *out)
{
	bcn_buf_put_u8(out, CODEC_VERSION);
	bcn_buf_put_u8(out, (uint8_t)op->verb);
	bcn_buf_put_u8(out, op->keep_status);
	switch (op->verb) {
	case CAT_NODE_SET:
	case CAT_NODE_DELETE:
		put_node(out, &op->node);
		break;
	case CAT_SERVICE_SET:
	case CAT_SERVICE_DELETE:
		put_svc(out, &op->svc);
		break;
	case CAT_CHECK_SET:
	case CAT_CHECK_DELETE:
	case CAT_CHECK_STATUS:
		put_chk(out, &op->chk);
		break;
	default:
		return BCN_EINVAL;
	}
	return bcn_buf_failed(out) ? BCN_ENOMEM : 0;
}

/* ---- decoding --------------------------------------------------------------
 */

static const char *get_str(struct bcn_cursor *c)
{
	uint32_t n = bcn_cursor_u32(c);
	const char *s = (const char *)c->p;

	if (c->err || n > CAT_MAX_STR || c->left < (size_t)n + 1 ||
	    s[n] != '\0' || memchr(s, '\0', n) != NULL) {
		c->err = true;
		return "";
	}
	c->p += n + 1;
	c->left -= n + 1;
	return s;
}

static struct cat_strs get_strs(struct bcn_cursor *c)
{
	struct cat_strs l = {0};
	size_t n;
	const char *p = bcn_cursor_blob(c, &n);

	if (c->err || n > CAT_MAX_STR || (n > 0 && p[n - 1] != '\0')) {
		c->err = true;
		return l;
	}
	l.data = n > 0 ? p : NULL;
	l.len = n;
	return l;
}

static void get_node(struct bcn_cursor *c, struct cat_node *n)
{
	n->name = get_str(c);
	n->id = get_str(c);
	n->address = get_str(c);
	n->tagged = get_strs(c);
	n->meta = get_strs(c);
}

static void get_svc(struct bcn_cursor *c, struct cat_service *v)
{
	v->node = get_str(c);
	v->id = get_str(c);
	v->name = get_str(c);
	v->kind = get_str(c);
	v->tags = get_strs(c);
	v->address = get_str(c);
	v->tagged = get_strs(c);
	v->meta = get_strs(c);
	v->port = bcn_cursor_u32(c);
	v->weight_passing = bcn_cursor_u32(c);
	v->weight_warning = bcn_cursor_u32(c);
	v->enable_tag_override = bcn_cursor_u8(c) != 0;
}

int cat_def_decode(struct bcn_cursor *c, struct cat_check_def *d)
{
	d->interval_ms = bcn_cursor_u64(c);
	d->timeout_ms = bcn_cursor_u64(c);
	d->ttl_ms = bcn_cursor_u64(c);
	d->deregister_after_ms = bcn_cursor_u64(c);
	d->http = get_str(c);
	d->method = get_str(c);
	d->body = get_str(c);
	d->tcp = get_str(c);
	d->tls_server_name = get_str(c);
	d->header = get_strs(c);
	d->tls_skip_verify = bcn_cursor_u8(c) != 0;
	d->disable_redirects = bcn_cursor_u8(c) != 0;
	d->output_max = bcn_cursor_u32(c);
	return c->err ? BCN_ECORRUPT : 0;
}

static void get_chk(struct bcn_cursor *c, struct cat_check *k)
{
	uint8_t st;

	k->node = get_str(c);
	k->id = get_str(c);
	k->name = get_str(c);
	st = bcn_cursor_u8(c);
	k->notes = get_str(c);
	k->output = get_str(c);
	k->service_id = get_str(c);
	k->service_name = "";
	k->type = get_str(c);
	if (st > CAT_CRITICAL)
		c->err = true;
	k->status = (enum cat_status)st;
	(void)cat_def_decode(c, &k->def);
}

int cat_op_decode(const void *buf, size_t len, struct cat_op *op)
{
	struct bcn_cursor c;
	uint8_t version, verb;

	memset(op, 0, sizeof *op);
	bcn_cursor_init(&c, buf, len);
	version = bcn_cursor_u8(&c);
	verb = bcn_cursor_u8(&c);
	op->keep_status = bcn_cursor_u8(&c) != 0;
	if (c.err || version != CODEC_VERSION || verb == 0 ||
	    verb >= CAT_VERB_NR)
		return BCN_ECORRUPT;
	op->verb = (enum cat_verb)verb;
	switch (op->verb) {
	case CAT_NODE_SET:
	case CAT_NODE_DELETE:
		get_node(&c, &op->node);
		break;
	case CAT_SERVICE_SET:
	case CAT_SERVICE_DELETE:
		get_svc(&c, &op->svc);
		break;
	default:
		get_chk(&c, &op->chk);
		break;
	}
	if (c.err || c.left != 0)
		return BCN_ECORRUPT;
	return cat_op_check(op, NULL, 0) == 0 ? 0 : BCN_ECORRUPT;
}

/* ---- request checks --------------------------------------------------------
 */

static int why_f(char *why, size_t len, const char *fmt, ...) BCN_PRINTF(3, 4);
static int why_f(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (why != NULL && len > 0) {
		va_start(ap, fmt);
		vsnprintf(why, len, fmt, ap);
		va_end(ap);
	}
	return BCN_EINVAL;
}

/* A name: present, within CAT_MAX_NAME, UTF-8 without control characters. */
static bool name_ok(const char *s)
{
	size_t n = s != NULL ? strlen(s) : 0;

	if (n == 0 || n > CAT_MAX_NAME || !bcn_utf8_valid(s, n))
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

static bool str_ok(const char *s)
{
	size_t n = s != NULL ? strlen(s) : 0;

	return n <= CAT_MAX_STR && bcn_utf8_valid(s != NULL ? s : "", n);
}

static bool strs_ok(const struct cat_strs *l, size_t max_items, size_t per)
{
	size_t n = 0, pos = 0;
	const char *s;

	if (l->data == NULL)
		return true;
	if (l->len == 0 || l->data[l->len - 1] != '\0')
		return false;
	while ((s = cat_strs_next(l, &pos)) != NULL) {
		if (++n > max_items || !str_ok(s))
			return false;
	}
	return n % per == 0;
}

/* Consul's rules for Meta: at most 64 pairs, keys of 1..128 characters
 * from [A-Za-z0-9_-] not starting with "consul-", values ≤ 512. */
static int meta_check(const struct cat_strs *m, char *why, size_t len)
{
	size_t pos = 0;
	const char *k;

	if (!strs_ok(m, 2 * CAT_MAX_LIST, 2))
		return why_f(why, len, "%s", "Invalid meta: at most 64 pairs");
	while ((k = cat_strs_next(m, &pos)) != NULL) {
		const char *v = cat_strs_next(m, &pos);
		size_t kl = strlen(k);
		if (kl == 0 || kl > 128)
			return why_f(why, len, "Invalid meta key: \"%s\"", k);
		if (strncmp(k, "consul-", 7) == 0)
			return why_f(why, len,
				     "Invalid meta key: \"%s\": the prefix "
				     "\"consul-\" is reserved",
				     k);
		for (size_t i = 0; i < kl; i++) {
			char ch = k[i];
			if (!((ch >= 'a' && ch <= 'z') ||
			      (ch >= 'A' && ch <= 'Z') ||
			      (ch >= '0' && ch <= '9') || ch == '_' ||
			      ch == '-'))
				return why_f(why, len,
					     "Invalid meta key: \"%s\"", k);
		}
		if (strlen(v) > 512)
			return why_f(why, len,
				     "Invalid meta value for key \"%s\": "
				     "longer than 512 characters",
				     k);
	}
	return 0;
}

static int node_check(const struct cat_node *n, bool full, char *why,
		      size_t len)
{
	if (!name_ok(n->name))
		return why_f(why, len, "%s",
			     n->name == NULL || n->name[0] == '\0'
				 ? "Must provide node"
				 : "Invalid node name");
	if (!full)
		return 0;
	if (n->address == NULL || n->address[0] == '\0')
		return why_f(why, len, "%s", "Must provide address");
	if (!str_ok(n->address) || !str_ok(n->id) ||
	    !strs_ok(&n->tagged, 2 * CAT_MAX_LIST, 2))
		return why_f(why, len, "%s", "Invalid node record");
	return meta_check(&n->meta, why, len);
}

static int svc_check(const struct cat_service *v, bool full, char *why,
		     size_t len)
{
	if (!name_ok(v->node))
		return why_f(why, len, "%s", "Must provide node");
	if (!name_ok(v->id))
		return why_f(why, len, "%s", "Missing service ID");
	if (!full)
		return 0;
	if (v->name == NULL || v->name[0] == '\0')
		return why_f(why, len, "%s", "Missing service name");
	if (!name_ok(v->name))
		return why_f(why, len, "%s", "Invalid service name");
	if (v->address != NULL &&
	    (strcmp(v->address, "0.0.0.0") == 0 ||
	     strcmp(v->address, "::") == 0 || strcmp(v->address, "[::]") == 0))
		return why_f(why, len, "%s", "Invalid service address");
	if (!str_ok(v->address) || !str_ok(v->kind) ||
	    !strs_ok(&v->tags, 4 * CAT_MAX_LIST, 1) ||
	    !strs_ok(&v->tagged, 3 * CAT_MAX_LIST, 3))
		return why_f(why, len, "%s", "Invalid service record");
	if (v->port > 65535)
		return why_f(why, len, "%s", "Invalid service port");
	if (v->weight_passing < 1)
		return why_f(why, len, "%s", "Passing must be greater than 0");
	return meta_check(&v->meta, why, len);
}

static int chk_check(const struct cat_check *k, bool full, char *why,
		     size_t len)
{
	const struct cat_check_def *d = &k->def;

	if (!name_ok(k->node))
		return why_f(why, len, "%s", "Must provide node");
	if (!name_ok(k->id))
		return why_f(why, len, "%s", "Missing check ID");
	if (full == false && k->status == 0)
		return 0; /* a delete */
	if (k->status < CAT_PASSING || k->status > CAT_CRITICAL)
		return why_f(why, len, "%s", "Bad check status");
	if (!str_ok(k->output))
		return why_f(why, len, "%s", "Invalid check output");
	if (!full)
		return 0;
	if (k->name == NULL || k->name[0] == '\0')
		return why_f(why, len, "%s", "Missing check name");
	if (!name_ok(k->name))
		return why_f(why, len, "%s", "Invalid check name");
	if (k->service_id != NULL && k->service_id[0] != '\0' &&
	    !name_ok(k->service_id))
		return why_f(why, len, "%s", "Invalid service ID");
	if (!str_ok(k->notes) || !str_ok(k->type) || !str_ok(d->http) ||
	    !str_ok(d->method) || !str_ok(d->body) || !str_ok(d->tcp) ||
	    !str_ok(d->tls_server_name) ||
	    !strs_ok(&d->header, 2 * CAT_MAX_LIST, 2))
		return why_f(why, len, "%s", "Invalid check: bad field");
	return 0;
}

int cat_op_check(const struct cat_op *op, char *why, size_t len)
{
	switch (op->verb) {
	case CAT_NODE_SET:
		return node_check(&op->node, true, why, len);
	case CAT_NODE_DELETE:
		return node_check(&op->node, false, why, len);
	case CAT_SERVICE_SET:
		return svc_check(&op->svc, true, why, len);
	case CAT_SERVICE_DELETE:
		return svc_check(&op->svc, false, why, len);
	case CAT_CHECK_SET:
		return chk_check(&op->chk, true, why, len);
	case CAT_CHECK_DELETE:
		if (op->chk.status != 0)
			return why_f(why, len, "%s", "Bad check status");
		return chk_check(&op->chk, false, why, len);
	case CAT_CHECK_STATUS:
		if (op->chk.status == 0)
			return why_f(why, len, "%s", "Bad check status");
		return chk_check(&op->chk, false, why, len);
	default:
		return why_f(why, len, "%s", "Unknown operation");
	}
}

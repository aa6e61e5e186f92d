#include "raft/codec.h"

#include <stdio.h>
#include <string.h>

#include "common/alloc.h"

/* libraft's disk backend wants entry lengths in multiples of 8. */
static int pad(struct bcn_buf *out)
{
	static const uint8_t zeros[8];

	bcn_buf_put(out, zeros, (8 - out->len % 8) % 8);
	return bcn_buf_failed(out) ? BCN_ENOMEM : 0;
}

int cluster_cmd_encode_kv(const struct kv_op *ops, size_t n,
			  struct bcn_buf *out)
{
	if (n == 0 || n > KV_MAX_TXN_OPS)
		return BCN_EINVAL;
	bcn_buf_put_u8(out, CLUSTER_CODEC_VERSION);
	bcn_buf_put_u8(out, CMD_KV);
	bcn_buf_put_u32(out, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		size_t klen = strlen(ops[i].key);
		if (ops[i].value_len > KV_MAX_VALUE_LEN ||
		    klen > KV_MAX_KEY_LEN)
			return BCN_EINVAL;
		bcn_buf_put_u8(out, (uint8_t)ops[i].verb);
		bcn_buf_put_blob(out, ops[i].key, klen + 1);
		bcn_buf_put_blob(out, ops[i].value, ops[i].value_len);
		bcn_buf_put_u64(out, ops[i].flags);
		bcn_buf_put_u64(out, ops[i].index);
		bcn_buf_put_blob(out, ops[i].session,
				 ops[i].session != NULL ? strlen(ops[i].session)
							: 0);
		bcn_buf_put_u64(out, ops[i].now_ms);
	}
	return pad(out);
}

int cluster_cmd_encode_reap(uint64_t before, struct bcn_buf *out)
{
	bcn_buf_put_u8(out, CLUSTER_CODEC_VERSION);
	bcn_buf_put_u8(out, CMD_REAP);
	bcn_buf_put_u64(out, before);
	return pad(out);
}

int cluster_cmd_encode_restore(const void *snap, size_t len,
			       struct bcn_buf *out)
{
	bcn_buf_put_u8(out, CLUSTER_CODEC_VERSION);
	bcn_buf_put_u8(out, CMD_RESTORE);
	bcn_buf_put_blob(out, snap, len);
	return pad(out);
}

int cluster_cmd_encode_server(const char *name, const char *raft_addr,
			      const char *http_addr, struct bcn_buf *out)
{
	const char *f[3] = {name, raft_addr, http_addr};

	bcn_buf_put_u8(out, CLUSTER_CODEC_VERSION);
	bcn_buf_put_u8(out, CMD_SERVER);
	for (int i = 0; i < 3; i++) {
		size_t n = strlen(f[i]);
		if (n >= CLUSTER_MAX_NAME)
			return BCN_EINVAL;
		bcn_buf_put_blob(out, f[i], n);
	}
	return pad(out);
}

int cluster_cmd_encode_catalog(const struct cat_op *ops, size_t n,
			       struct bcn_buf *out)
{
	if (n == 0 || n > CAT_MAX_OPS)
		return BCN_EINVAL;
	bcn_buf_put_u8(out, CLUSTER_CODEC_VERSION);
	bcn_buf_put_u8(out, CMD_CATALOG);
	bcn_buf_put_u32(out, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		struct bcn_buf one;
		int rc;

		bcn_buf_init(&one);
		rc = cat_op_encode(&ops[i], &one);
		if (rc == 0)
			bcn_buf_put_blob(out, one.data, one.len);
		bcn_buf_close(&one);
		if (rc != 0)
			return rc;
	}
	return pad(out);
}

int cluster_cmd_encode_session(enum cluster_session_op op,
			       const struct kv_session *sess, uint64_t now_ms,
			       struct bcn_buf *out)
{
	bcn_buf_put_u8(out, CLUSTER_CODEC_VERSION);
	bcn_buf_put_u8(out, CMD_SESSION);
	bcn_buf_put_u8(out, (uint8_t)op);
	bcn_buf_put_blob(out, sess->id, strlen(sess->id));
	bcn_buf_put_u64(out, now_ms);
	if (op == CMD_SESSION_CREATE) {
		bcn_buf_put_blob(out, sess->name, strlen(sess->name));
		bcn_buf_put_blob(out, sess->node, strlen(sess->node));
		bcn_buf_put_u64(out, sess->lock_delay_ms);
		bcn_buf_put_u8(out, (uint8_t)sess->behavior);
		bcn_buf_put_u64(out, sess->ttl_ms);
		bcn_buf_put_blob(out, sess->node_checks, sess->node_checks_len);
		bcn_buf_put_blob(out, sess->service_checks,
				 sess->service_checks_len);
	}
	return pad(out);
}

int cluster_cmd_encode_secret(enum cluster_secret_op op, const char *path,
			      const char *key_id, const void *box, size_t len,
			      bool cas, uint64_t cas_index, struct bcn_buf *out)
{
	if (strlen(path) > KV_MAX_KEY_LEN ||
	    strlen(key_id) > KV_SECRET_KEY_ID || len > KV_MAX_VALUE_LEN + 64)
		return BCN_EINVAL;
	bcn_buf_put_u8(out, CLUSTER_CODEC_VERSION);
	bcn_buf_put_u8(out, CMD_SECRET);
	bcn_buf_put_u8(out, (uint8_t)op);
	bcn_buf_put_blob(out, path, strlen(path));
	bcn_buf_put_blob(out, key_id, strlen(key_id));
	bcn_buf_put_blob(out, box, len);
	bcn_buf_put_u8(out, cas);
	bcn_buf_put_u64(out, cas_index);
	return pad(out);
}

static const char *take_str(struct bcn_cursor *c, char *mem, size_t *off,
			    size_t max);
static const char *take_list(struct bcn_cursor *c, char *mem, size_t *off,
			     size_t *len);

static void put_str0(struct bcn_buf *b, const char *s)
{
	bcn_buf_put_blob(b, s != NULL ? s : "", s != NULL ? strlen(s) : 0);
}

int cluster_cmd_encode_acl(enum kv_acl_op op, const struct kv_acl_token *t,
			   const struct kv_acl_policy *p, struct bcn_buf *out)
{
	static const struct kv_acl_token no_token;
	static const struct kv_acl_policy no_policy;

	if (t == NULL)
		t = &no_token;
	if (p == NULL)
		p = &no_policy;
	bcn_buf_put_u8(out, CLUSTER_CODEC_VERSION);
	bcn_buf_put_u8(out, CMD_ACL);
	bcn_buf_put_u8(out, (uint8_t)op);
	put_str0(out, t->accessor);
	bcn_buf_put_blob(out, t->hash, KV_ACL_HASH_LEN);
	put_str0(out, t->description);
	bcn_buf_put_blob(out, t->policies, t->policies_len);
	bcn_buf_put_u8(out, t->management);
	bcn_buf_put_u64(out, t->create_time_ms);
	put_str0(out, p->id);
	put_str0(out, p->name);
	put_str0(out, p->description);
	put_str0(out, p->rules);
	return pad(out);
}

static int decode_acl(struct bcn_cursor *c, size_t len, struct cluster_cmd *out)
{
	struct kv_acl_token *t = &out->acl_token;
	struct kv_acl_policy *p = &out->acl_policy;
	const char *s;
	const void *hash;
	size_t off = 0, hlen;

	out->acl_mem = bcn_malloc(len + 16);
	if (out->acl_mem == NULL)
		return BCN_ENOMEM;
	out->acl_op = bcn_cursor_u8(c);
	s = take_str(c, out->acl_mem, &off, KV_ACL_ID_LEN);
	snprintf(t->accessor, sizeof t->accessor, "%s", s);
	hash = bcn_cursor_blob(c, &hlen);
	if (c->err || hlen != KV_ACL_HASH_LEN)
		return BCN_ECORRUPT;
	memcpy(t->hash, hash, KV_ACL_HASH_LEN);
	t->description = take_str(c, out->acl_mem, &off, 65536);
	t->policies = take_list(c, out->acl_mem, &off, &t->policies_len);
	t->management = bcn_cursor_u8(c) != 0;
	t->create_time_ms = bcn_cursor_u64(c);
	s = take_str(c, out->acl_mem, &off, KV_ACL_ID_LEN);
	snprintf(p->id, sizeof p->id, "%s", s);
	p->name = take_str(c, out->acl_mem, &off, 512);
	p->description = take_str(c, out->acl_mem, &off, 65536);
	p->rules = take_str(c, out->acl_mem, &off, 65536);
	if (c->err || out->acl_op < KV_ACL_BOOTSTRAP ||
	    out->acl_op >= KV_ACL_OP_NR)
		return BCN_ECORRUPT;
	return 0;
}

static int decode_secret(struct bcn_cursor *c, struct cluster_cmd *out)
{
	size_t plen, klen;
	const char *path, *kid;
	uint8_t cas;

	out->secret_op = bcn_cursor_u8(c);
	path = bcn_cursor_blob(c, &plen);
	kid = bcn_cursor_blob(c, &klen);
	out->secret_box = bcn_cursor_blob(c, &out->secret_box_len);
	cas = bcn_cursor_u8(c);
	out->secret_cas_index = bcn_cursor_u64(c);
	if (c->err || out->secret_op < CMD_SECRET_PUT ||
	    out->secret_op > CMD_SECRET_DELETE_TREE || cas > 1 ||
	    klen > KV_SECRET_KEY_ID || memchr(kid, '\0', klen) != NULL ||
	    out->secret_box_len > KV_MAX_VALUE_LEN + 64 ||
	    kv_key_check(path, plen, out->secret_op == CMD_SECRET_DELETE_TREE,
			 NULL) != 0 ||
	    memchr(path, '\0', plen) != NULL)
		return BCN_ECORRUPT;
	out->secret_cas = cas != 0;
	memcpy(out->secret_key_id, kid, klen);
	out->secret_key_id[klen] = '\0';
	out->secret_path = bcn_strndup(path, plen);
	return out->secret_path == NULL ? BCN_ENOMEM : 0;
}

/* A blob that must hold no NUL, copied NUL-terminated into @mem at *@off. */
static const char *take_str(struct bcn_cursor *c, char *mem, size_t *off,
			    size_t max)
{
	size_t n;
	const char *p = bcn_cursor_blob(c, &n);
	char *dst = mem + *off;

	if (c->err || n > max || (n > 0 && memchr(p, '\0', n) != NULL)) {
		c->err = true;
		return "";
	}
	memcpy(dst, p, n);
	dst[n] = '\0';
	*off += n + 1;
	return dst;
}

/* A packed list ("a\0b\0"): empty, or ending with a NUL. */
static const char *take_list(struct bcn_cursor *c, char *mem, size_t *off,
			     size_t *len)
{
	const char *p = bcn_cursor_blob(c, len);
	char *dst = mem + *off;

	if (c->err || *len > 65536 || (*len > 0 && p[*len - 1] != '\0')) {
		c->err = true;
		*len = 0;
		return NULL;
	}
	memcpy(dst, p, *len);
	*off += *len + 1;
	return *len > 0 ? dst : NULL;
}

static int decode_session(struct bcn_cursor *c, size_t len,
			  struct cluster_cmd *out)
{
	struct kv_session *s = &out->sess;
	size_t off = 0;
	const char *id;

	/* Everything copied fits in the entry's length plus the NULs. */
	out->sess_mem = bcn_malloc(len + 8);
	if (out->sess_mem == NULL)
		return BCN_ENOMEM;
	out->sess_op = bcn_cursor_u8(c);
	id = take_str(c, out->sess_mem, &off, KV_SESSION_ID_LEN);
	out->now_ms = bcn_cursor_u64(c);
	if (c->err || id[0] == '\0' ||
	    (out->sess_op != CMD_SESSION_CREATE &&
	     out->sess_op != CMD_SESSION_DESTROY))
		return BCN_ECORRUPT;
	snprintf(s->id, sizeof s->id, "%s", id);
	if (out->sess_op == CMD_SESSION_DESTROY)
		return 0;
	s->name = take_str(c, out->sess_mem, &off, 4096);
	s->node = take_str(c, out->sess_mem, &off, 4096);
	s->lock_delay_ms = bcn_cursor_u64(c);
	s->behavior = bcn_cursor_u8(c);
	s->ttl_ms = bcn_cursor_u64(c);
	s->node_checks = take_list(c, out->sess_mem, &off, &s->node_checks_len);
	s->service_checks =
	    take_list(c, out->sess_mem, &off, &s->service_checks_len);
	if (c->err || s->behavior > KV_BEHAVIOR_DELETE)
		return BCN_ECORRUPT;
	return 0;
}

/* Copy a blob into a NUL-terminated field of CLUSTER_MAX_NAME bytes. */
static bool take_name(struct bcn_cursor *c, char *out)
{
	size_t n;
	const char *p = bcn_cursor_blob(c, &n);

	if (c->err || n >= CLUSTER_MAX_NAME || memchr(p, '\0', n) != NULL)
		return false;
	memcpy(out, p, n);
	out[n] = '\0';
	return true;
}

int cluster_cmd_decode(const void *buf, size_t len, struct cluster_cmd *out)
{
	struct bcn_cursor c;
	uint8_t version;
	uint32_t n;
	int rc;

	memset(out, 0, sizeof *out);
	bcn_cursor_init(&c, buf, len);
	version = bcn_cursor_u8(&c);
	if (version < 1 || version > CLUSTER_CODEC_VERSION)
		return BCN_ECORRUPT;
	out->type = bcn_cursor_u8(&c);
	switch (out->type) {
	case CMD_REAP:
		out->reap_before = bcn_cursor_u64(&c);
		break;
	case CMD_RESTORE:
		out->image = bcn_cursor_blob(&c, &out->image_len);
		break;
	case CMD_SERVER:
		if (!take_name(&c, out->server_name) ||
		    !take_name(&c, out->server_raft) ||
		    !take_name(&c, out->server_http))
			goto corrupt;
		break;
	case CMD_ACL:
		rc = decode_acl(&c, len, out);
		if (rc == BCN_ENOMEM)
			return rc;
		if (rc != 0)
			goto corrupt;
		break;
	case CMD_SECRET:
		rc = decode_secret(&c, out);
		if (rc == BCN_ENOMEM)
			return rc;
		if (rc != 0)
			goto corrupt;
		break;
	case CMD_SESSION:
		rc = decode_session(&c, len, out);
		if (rc == BCN_ENOMEM)
			return rc;
		if (rc != 0)
			goto corrupt;
		break;
	case CMD_CATALOG:
		n = bcn_cursor_u32(&c);
		if (c.err || n == 0 || n > CAT_MAX_OPS)
			return BCN_ECORRUPT;
		out->cat_ops = bcn_calloc(n, sizeof *out->cat_ops);
		if (out->cat_ops == NULL)
			return BCN_ENOMEM;
		out->n_cat_ops = n;
		for (uint32_t i = 0; i < n; i++) {
			size_t olen;
			const void *op = bcn_cursor_blob(&c, &olen);
			if (c.err ||
			    cat_op_decode(op, olen, &out->cat_ops[i]) != 0)
				goto corrupt;
		}
		break;
	case CMD_KV:
		n = bcn_cursor_u32(&c);
		if (c.err || n == 0 || n > KV_MAX_TXN_OPS)
			return BCN_ECORRUPT;
		out->ops = bcn_calloc(n, sizeof *out->ops);
		if (out->ops == NULL)
			return BCN_ENOMEM;
		out->n_ops = n;
		for (uint32_t i = 0; i < n; i++) {
			struct kv_op *op = &out->ops[i];
			size_t klen;
			const char *key;

			op->verb = bcn_cursor_u8(&c);
			key = bcn_cursor_blob(&c, &klen);
			op->value = bcn_cursor_blob(&c, &op->value_len);
			op->flags = bcn_cursor_u64(&c);
			op->index = bcn_cursor_u64(&c);
			if (version >= 2) {
				size_t slen;
				const char *sess = bcn_cursor_blob(&c, &slen);
				/* Points into the entry: no NUL there, so
				 * the session is copied below. */
				if (c.err || slen > KV_SESSION_ID_LEN)
					goto corrupt;
				op->session = NULL;
				if (slen > 0) {
					char *copy = bcn_strndup(sess, slen);
					if (copy == NULL ||
					    strlen(copy) != slen) {
						bcn_free(copy);
						goto corrupt;
					}
					op->session = copy;
				}
				op->now_ms = bcn_cursor_u64(&c);
			}
			if (c.err || op->verb < KV_SET ||
			    op->verb >= KV_VERB_NR || klen == 0 ||
			    klen > KV_MAX_KEY_LEN + 1 ||
			    key[klen - 1] != '\0' ||
			    memchr(key, '\0', klen - 1) != NULL ||
			    op->value_len > KV_MAX_VALUE_LEN)
				goto corrupt;
			op->key = key;
			if (op->value_len == 0)
				op->value = NULL;
		}
		break;
	default:
		return BCN_ECORRUPT;
	}
	/* Only the zero padding to a multiple of 8 may follow. */
	if (c.err || c.left >= 8)
		goto corrupt;
	for (size_t i = 0; i < c.left; i++)
		if (c.p[i] != 0)
			goto corrupt;
	return 0;
corrupt:
	cluster_cmd_close(out);
	return BCN_ECORRUPT;
}

void cluster_cmd_close(struct cluster_cmd *c)
{
	for (size_t i = 0; i < c->n_ops; i++)
		bcn_free((char *)c->ops[i].session);
	bcn_free(c->ops);
	bcn_free(c->cat_ops);
	bcn_free(c->sess_mem);
	bcn_free(c->secret_path);
	bcn_free(c->acl_mem);
	memset(c, 0, sizeof *c);
}

#include "raft/codec.h"

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
	uint32_t n;

	memset(out, 0, sizeof *out);
	bcn_cursor_init(&c, buf, len);
	if (bcn_cursor_u8(&c) != CLUSTER_CODEC_VERSION)
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
	bcn_free(c->ops);
	bcn_free(c->cat_ops);
	memset(c, 0, sizeof *c);
}

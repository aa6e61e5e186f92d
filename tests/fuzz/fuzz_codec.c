/* Fuzz the Raft command codec (raft/codec.h): every log entry a follower
 * applies went through cluster_cmd_decode(), so it must reject anything
 * malformed without reading outside the entry.
 *
 * On a successful decode the command is encoded again and decoded again; the
 * ops must come back the same (verb, key, value bytes, flags, index). The
 * format has one encoding per command, so when the input length is a multiple
 * of 8 (as every real entry is) the re-encoding must also equal the input
 * byte for byte. Any mismatch aborts. A command type this target does not
 * know yet is only decoded. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "kv/kv.h"
#include "raft/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same_op(const struct kv_op *a, const struct kv_op *b)
{
	if (a->verb != b->verb || strcmp(a->key, b->key) != 0 ||
	    a->value_len != b->value_len || a->flags != b->flags ||
	    a->index != b->index || a->now_ms != b->now_ms ||
	    (a->session == NULL) != (b->session == NULL) ||
	    (a->session != NULL && strcmp(a->session, b->session) != 0))
		return false;
	if (a->value_len == 0)
		return a->value == NULL && b->value == NULL;
	return memcmp(a->value, b->value, a->value_len) == 0;
}

/* Check that @out, a fresh encoding of @cmd, decodes back to @cmd and, for
 * a canonical input, equals it. */
static void check_again(const struct cluster_cmd *cmd, const uint8_t *data,
			size_t size, const struct bcn_buf *out)
{
	struct cluster_cmd again;

	if (out->len % 8 != 0)
		abort(); /* libraft's disk format needs the padding */
	/* Version 1 entries decode but are written again as version 2. */
	if (size % 8 == 0 && data[0] == CLUSTER_CODEC_VERSION &&
	    (out->len != size || memcmp(out->data, data, size) != 0))
		abort();
	if (cluster_cmd_decode(out->data, out->len, &again) != 0)
		abort();
	if (again.type != cmd->type || again.n_ops != cmd->n_ops ||
	    again.reap_before != cmd->reap_before ||
	    again.n_cat_ops != cmd->n_cat_ops ||
	    again.sess_op != cmd->sess_op || again.now_ms != cmd->now_ms ||
	    strcmp(again.sess.id, cmd->sess.id) != 0)
		abort();
	for (size_t i = 0; i < cmd->n_ops; i++)
		if (!same_op(&cmd->ops[i], &again.ops[i]))
			abort();
	if (strcmp(again.server_name, cmd->server_name) != 0 ||
	    strcmp(again.server_raft, cmd->server_raft) != 0 ||
	    strcmp(again.server_http, cmd->server_http) != 0)
		abort();
	if (again.image_len != cmd->image_len ||
	    (cmd->image_len > 0 &&
	     memcmp(again.image, cmd->image, cmd->image_len) != 0))
		abort();
	cluster_cmd_close(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cluster_cmd cmd;
	struct bcn_buf out;
	int rc;

	rc = cluster_cmd_decode(data, size, &cmd);
	if (rc != 0) {
		if (rc != BCN_ECORRUPT && rc != BCN_ENOMEM)
			abort();
		cluster_cmd_close(&cmd);
		return 0;
	}
	bcn_buf_init(&out);
	switch (cmd.type) {
	case CMD_KV:
		if (cmd.n_ops == 0 || cmd.n_ops > KV_MAX_TXN_OPS)
			abort();
		for (size_t i = 0; i < cmd.n_ops; i++) {
			const struct kv_op *op = &cmd.ops[i];
			if (op->verb < KV_SET || op->verb >= KV_VERB_NR ||
			    op->value_len > KV_MAX_VALUE_LEN ||
			    strlen(op->key) > KV_MAX_KEY_LEN)
				abort();
			/* Keys and values point into the input. */
			if ((const uint8_t *)op->key < data ||
			    (const uint8_t *)op->key + strlen(op->key) >=
				data + size)
				abort();
		}
		rc = cluster_cmd_encode_kv(cmd.ops, cmd.n_ops, &out);
		break;
	case CMD_REAP:
		rc = cluster_cmd_encode_reap(cmd.reap_before, &out);
		break;
	case CMD_SERVER:
		if (memchr(cmd.server_name, '\0', CLUSTER_MAX_NAME) == NULL ||
		    memchr(cmd.server_raft, '\0', CLUSTER_MAX_NAME) == NULL ||
		    memchr(cmd.server_http, '\0', CLUSTER_MAX_NAME) == NULL)
			abort();
		rc = cluster_cmd_encode_server(cmd.server_name, cmd.server_raft,
					       cmd.server_http, &out);
		break;
	case CMD_RESTORE:
		if (cmd.image_len > size ||
		    (cmd.image_len > 0 &&
		     ((const uint8_t *)cmd.image < data ||
		      (const uint8_t *)cmd.image + cmd.image_len >
			  data + size)))
			abort(); /* the image points into the input */
		rc = cluster_cmd_encode_restore(cmd.image, cmd.image_len, &out);
		break;
	case CMD_CATALOG:
		rc = cluster_cmd_encode_catalog(cmd.cat_ops, cmd.n_cat_ops,
						&out);
		break;
	case CMD_SESSION:
		rc = cluster_cmd_encode_session(cmd.sess_op, &cmd.sess,
						cmd.now_ms, &out);
		break;
	default:
		goto out; /* newer than this target */
	}
	if (rc == 0)
		check_again(&cmd, data, size, &out);
	else if (rc != BCN_ENOMEM)
		abort();
out:
	bcn_buf_close(&out);
	cluster_cmd_close(&cmd);
	return 0;
}

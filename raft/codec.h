/* The command codec: how a write is encoded in the Raft log.
 *
 * A compact, versioned binary format, never JSON:
 *   u8 version (2; 1 is still read) | u8 type | body
 *   CMD_KV:   u32 n | n × (u8 verb | blob key+NUL | blob value | u64 flags |
 *                          u64 index | blob session (v2) | u64 now_ms (v2))
 *   CMD_REAP: u64 before
 *   CMD_SERVER: blob name | blob raft address | blob HTTP address
 *   CMD_RESTORE: blob snapshot (header and image, cluster_snapshot_verify)
 *   CMD_CATALOG: u32 n | n × blob op (health/catalog.h: cat_op_encode)
 *   CMD_SESSION: u8 what (1 create, 2 destroy) | blob id | u64 now_ms |
 *                create: blob name | blob node | u64 lock_delay_ms |
 *                u8 behavior | u64 ttl_ms | blob node_checks |
 *                blob service_checks
 *   CMD_ACL: u8 op (enum kv_acl_op) | token: blob accessor | blob hash |
 *            blob description | blob policies | u8 management |
 *            u64 created | policy: blob id | blob name | blob description |
 *            blob rules
 *   CMD_SECRET: u8 what (1 put, 2 delete, 3 delete tree) | blob path |
 *               blob key id | blob box | u8 cas | u64 cas index
 * where blob = u32 length | bytes, integers big-endian. Keys carry their NUL
 * so that decoding points into the log buffer without copying. The whole
 * is zero-padded to a multiple of 8 bytes, as libraft's disk format needs. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"
#include "health/catalog.h"
#include "kv/kv.h"

#define CLUSTER_CODEC_VERSION 2

enum cluster_cmd_type {
	CMD_KV = 1,
	CMD_REAP = 2,
	CMD_SERVER = 3,
	CMD_RESTORE = 4,
	CMD_CATALOG = 5,
	CMD_SESSION = 6,
	CMD_SECRET = 7,
	CMD_ACL = 8
};

enum cluster_secret_op {
	CMD_SECRET_PUT = 1,
	CMD_SECRET_DELETE = 2,
	CMD_SECRET_DELETE_TREE = 3
};

enum cluster_session_op { CMD_SESSION_CREATE = 1, CMD_SESSION_DESTROY = 2 };

#define CLUSTER_MAX_NAME 256

struct cluster_cmd {
	enum cluster_cmd_type type;
	struct kv_op *ops; /* CMD_KV: bcn_malloc'd array; keys/values point
			      into the decoded buffer */
	size_t n_ops;
	uint64_t reap_before; /* CMD_REAP */
	/* CMD_SERVER: NUL-terminated copies */
	char server_name[CLUSTER_MAX_NAME];
	char server_raft[CLUSTER_MAX_NAME];
	char server_http[CLUSTER_MAX_NAME];
	/* CMD_RESTORE: points into the decoded buffer */
	const void *image;
	size_t image_len;
	/* CMD_CATALOG: bcn_malloc'd array pointing into the decoded buffer */
	struct cat_op *cat_ops;
	size_t n_cat_ops;
	/* CMD_SESSION: strings and lists are copied into @sess_mem */
	enum cluster_session_op sess_op;
	struct kv_session sess;
	uint64_t now_ms;
	char *sess_mem;
	/* CMD_SECRET: the path and key ID copied (NUL-terminated), the box
	 * pointing into the decoded buffer */
	enum cluster_secret_op secret_op;
	char *secret_path;
	char secret_key_id[KV_SECRET_KEY_ID + 1];
	const void *secret_box;
	size_t secret_box_len;
	bool secret_cas;
	uint64_t secret_cas_index;
	/* CMD_ACL: strings copied into @acl_mem */
	enum kv_acl_op acl_op;
	struct kv_acl_token acl_token;
	struct kv_acl_policy acl_policy;
	char *acl_mem;
};

/* Append the encoding of @ops to @out. Returns 0, BCN_ENOMEM, or BCN_EINVAL
 * if @n is 0 or above KV_MAX_TXN_OPS, a key is longer than KV_MAX_KEY_LEN or
 * a value longer than KV_MAX_VALUE_LEN. */
int cluster_cmd_encode_kv(const struct kv_op *ops, size_t n,
			  struct bcn_buf *out) BCN_MUST_CHECK;
int cluster_cmd_encode_reap(uint64_t before,
			    struct bcn_buf *out) BCN_MUST_CHECK;
/* A server's record: each string shorter than CLUSTER_MAX_NAME. */
int cluster_cmd_encode_restore(const void *snap, size_t len,
			       struct bcn_buf *out) BCN_MUST_CHECK;
int cluster_cmd_encode_server(const char *name, const char *raft_addr,
			      const char *http_addr,
			      struct bcn_buf *out) BCN_MUST_CHECK;

/* Append the encoding of catalog @ops: BCN_EINVAL if @n is 0 or above
 * CAT_MAX_OPS. */
int cluster_cmd_encode_catalog(const struct cat_op *ops, size_t n,
			       struct bcn_buf *out) BCN_MUST_CHECK;

/* A session's create (@op CMD_SESSION_CREATE, all of @sess) or destroy
 * (only @sess->id), at the leader's clock reading @now_ms. */
int cluster_cmd_encode_session(enum cluster_session_op op,
			       const struct kv_session *sess, uint64_t now_ms,
			       struct bcn_buf *out) BCN_MUST_CHECK;

/* A sealed secret's put or delete (@key_id and @box only for a put). */
int cluster_cmd_encode_secret(enum cluster_secret_op op, const char *path,
			      const char *key_id, const void *box, size_t len,
			      bool cas, uint64_t cas_index,
			      struct bcn_buf *out) BCN_MUST_CHECK;

/* An ACL change (kv.h: kv_acl_apply); both records are encoded, the op
 * says which counts. */
int cluster_cmd_encode_acl(enum kv_acl_op op, const struct kv_acl_token *t,
			   const struct kv_acl_policy *p,
			   struct bcn_buf *out) BCN_MUST_CHECK;

/* Decode @buf[0..len) (borrowed: @out points into it, so it must outlive
 * @out). Returns 0, BCN_ENOMEM, or BCN_ECORRUPT for anything malformed:
 * truncated, trailing bytes, unknown version/type/verb, bad key. Release
 * with cluster_cmd_close(). */
int cluster_cmd_decode(const void *buf, size_t len,
		       struct cluster_cmd *out) BCN_MUST_CHECK;
void cluster_cmd_close(struct cluster_cmd *c);

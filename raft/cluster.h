/* The replicated state: libraft setup, the FSM over SQLite, proposals,
 * consistent reads and snapshots.
 *
 * Everything runs on the loop thread given to cluster_start(). Callbacks
 * never fire inside the call that started the operation and never when
 * that call returned an error. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "health/catalog.h"
#include "kv/kv.h"
#include "raft/codec.h"

struct uv_loop_s;
struct cluster;

struct cluster_options {
	const char *node;      /* this server's name (raft ID source) */
	const char *data_dir;  /* raft log in <data_dir>/raft */
	const char *raft_addr; /* host:port to bind and advertise */
	const char *http_addr; /* recorded so that followers can forward */
	bool join; /* joining an existing cluster: never bootstrap */
	const char *initial_cluster; /* "n1=host:port,..."; "" = just me */
	unsigned election_timeout_ms;
	unsigned heartbeat_ms;
	unsigned snapshot_threshold; /* entries between snapshots */
	unsigned snapshot_trailing;  /* entries kept after a snapshot */
	unsigned cache_kib;	     /* SQLite page cache */
	uint64_t tombstone_ttl_ms;   /* reap tombstones older than this */
};

/* Derive the raft ID of a server from its name (never 0). */
uint64_t cluster_node_id(const char *name);

/* Open the state, load the raft log and start raft on @loop. A fresh data
 * directory is bootstrapped with the initial cluster. Returns 0, or an error
 * with details in @errmsg. */
int cluster_start(struct cluster **out, struct uv_loop_s *loop,
		  const struct cluster_options *o, char *errmsg) BCN_MUST_CHECK;

/* Close raft and free @c; @cb(@data) fires once everything is closed.
 * Pending proposals complete with BCN_EUNKNOWN and pending reads with
 * BCN_ESHUTDOWN before that. Never call from inside a cluster callback:
 * the caller defers it to the loop. */
void cluster_stop(struct cluster *c, void (*cb)(void *data), void *data);

/* End of a loop turn: commit the apply batch and notice leadership changes.
 * Returns true if the cluster became unavailable (libraft's
 * RAFT_UNAVAILABLE), which is permanent: the process should exit non-zero. */
bool cluster_tick(struct cluster *c);

/* True if this server leads and has applied an entry of its own term, so its
 * state includes everything any earlier leader acknowledged. */
bool cluster_serving(struct cluster *c);
bool cluster_is_leader(struct cluster *c);
/* The leader's raft address as this server knows it, or "" if none. */
const char *cluster_leader_addr(struct cluster *c);
/* Milliseconds since this server last heard from a leader (0 on the leader,
 * UINT64_MAX if never). */
uint64_t cluster_last_contact_ms(struct cluster *c);
uint64_t cluster_applied_index(struct cluster *c);
/* Copy the leader's HTTP address into @out. False if there is no known
 * leader or it has not recorded itself yet. */
bool cluster_leader_http(struct cluster *c, char *out, size_t cap);
const char *cluster_raft_addr(struct cluster *c);
/* Voters' raft addresses; returns the count written (at most @cap). */
size_t cluster_voters(struct cluster *c, const char **addrs, size_t cap);

/* The KV state (for reads; writes go through cluster_propose_kv()). */
struct kv_store *cluster_kv(struct cluster *c);
/* The catalog (for reads; writes go through cluster_propose_cat()). */
struct cat_store *cluster_cat(struct cluster *c);

/* A proposal. The caller embeds it and keeps it alive until @cb fires. */
struct cluster_req;
typedef void (*cluster_req_cb)(struct cluster_req *req, int status);
struct cluster_req {
	void *data;		 /* caller's */
	cluster_req_cb cb;	 /* status 0: committed, @result valid */
	struct kv_result result; /* owned; kv_result_close() after @cb */
	struct cat_result cat;	 /* outcome of a catalog proposal */
	uint64_t index;		 /* log index of the entry */
	bool no_entries;	 /* the caller wants no result entries */
	uint64_t start_ns;	 /* uv_hrtime() at the proposal */
	/* private */
	struct cluster *c;
	struct cluster_req *prev, *next;
	_Alignas(16) unsigned char raft_req[256]; /* struct raft_apply */
};

/* Propose @ops (copied) as one all-or-nothing command. Leader only: returns
 * BCN_ENOTLEADER on a follower. @cb fires with 0 once applied here (see
 * @req->result), or BCN_EUNKNOWN if leadership was lost or the server shut
 * down before that: the entry may or may not commit later. */
int cluster_propose_kv(struct cluster *c, const struct kv_op *ops, size_t n,
		       struct cluster_req *req,
		       cluster_req_cb cb) BCN_MUST_CHECK;

/* Propose catalog @ops (copied) as one all-or-nothing command; as
 * cluster_propose_kv(), the outcome in @req->cat. */
int cluster_propose_cat(struct cluster *c, const struct cat_op *ops, size_t n,
			struct cluster_req *req,
			cluster_req_cb cb) BCN_MUST_CHECK;

/* Propose a session's create or destroy (raft/codec.h); @req->result.ok
 * says whether it applied (a create whose ID is taken, a destroy of a
 * session already gone: false). */
int cluster_propose_session(struct cluster *c, enum cluster_session_op op,
			    const struct kv_session *sess, uint64_t now_ms,
			    struct cluster_req *req,
			    cluster_req_cb cb) BCN_MUST_CHECK;

/* Propose an ACL change (kv_acl_apply); @req->result.ok as it says. */
int cluster_propose_acl(struct cluster *c, enum kv_acl_op op,
			const struct kv_acl_token *t,
			const struct kv_acl_policy *p, struct cluster_req *req,
			cluster_req_cb cb) BCN_MUST_CHECK;

/* Propose a sealed secret's put or delete (raft/codec.h); @req->result.ok
 * false when a CAS did not match. */
int cluster_propose_secret(struct cluster *c, enum cluster_secret_op op,
			   const char *path, const char *key_id,
			   const void *box, size_t len, bool cas,
			   uint64_t cas_index, struct cluster_req *req,
			   cluster_req_cb cb) BCN_MUST_CHECK;

/* A consistent read: @cb fires with 0 once a barrier entry appended after
 * this call has committed in this leader's term (so this server led the
 * cluster at some point after the call), or BCN_ENOTLEADER. Barriers are
 * shared by every read waiting at the time one is issued. */
struct cluster_read;
typedef void (*cluster_read_cb)(struct cluster_read *rd, int status);
struct cluster_read {
	void *data;
	cluster_read_cb cb;
	/* private */
	struct cluster_read *next;
};

int cluster_read_barrier(struct cluster *c, struct cluster_read *rd,
			 cluster_read_cb cb) BCN_MUST_CHECK;
/* Forget @rd: its callback will not fire. */
void cluster_read_cancel(struct cluster *c, struct cluster_read *rd);

/* ---- statistics (for metrics) ---------------------------------------- */

#define CLUSTER_HIST_BUCKETS 14
/* Upper bounds of the latency histogram buckets, in milliseconds; the last
 * bucket is +Inf. */
extern const double cluster_hist_bounds_ms[CLUSTER_HIST_BUCKETS - 1];

struct cluster_hist {
	uint64_t buckets[CLUSTER_HIST_BUCKETS]; /* not cumulative */
	uint64_t count;
	double sum_ms;
};

void cluster_hist_add(struct cluster_hist *h, double ms);

struct cluster_stats {
	const char
	    *state; /* "leader", "follower", "candidate", "unavailable" */
	uint64_t term;
	uint64_t commit_index;
	uint64_t applied_index;
	uint64_t last_index;
	uint64_t leader_changes;   /* times the known leader changed */
	struct cluster_hist apply; /* proposal -> applied, on the leader */
	uint64_t snapshots;
	uint64_t snapshot_last_bytes;
	double snapshot_last_ms; /* time the loop was held by the copy */
};

void cluster_get_stats(struct cluster *c, struct cluster_stats *out);

/* ---- membership -------------------------------------------------------- */

struct cluster_server {
	uint64_t id;
	char name[256]; /* "" if the server never recorded itself */
	char raft_addr[256];
	char http_addr[256]; /* "" if unknown */
	const char *role;    /* "voter", "standby" or "spare" */
	bool leader;
};

/* The servers of the current configuration (as this server sees it), with
 * their records. Returns the number written, at most @cap. */
size_t cluster_servers(struct cluster *c, struct cluster_server *out,
		       size_t cap);

/* A membership change. The caller embeds it and keeps it alive until @cb. */
struct cluster_change;
typedef void (*cluster_change_cb)(struct cluster_change *ch, int status);
struct cluster_change {
	void *data;
	cluster_change_cb cb;
	char errmsg[BCN_ERRMSG_LEN]; /* with a non-zero status */
	/* private */
	struct cluster *c;
	uint64_t id;
	char name[256], raft_addr[256], http_addr[256];
	int step;
	struct cluster_req rec;
	_Alignas(16) unsigned char raft_req[512];
};

/* Leader only. Make @name a voter at @raft_addr and record its HTTP address:
 * add it as a spare if new, let it catch up, promote it; for a server that is
 * already a voter at that address, only (re)record it, unless @fresh: then it
 * lost its log, and is removed and added again. Errors: BCN_EINVAL
 * (the name is taken by another address), BCN_EBUSY (another change is in
 * progress), BCN_ENOTLEADER. */
int cluster_join(struct cluster *c, const char *name, const char *raft_addr,
		 const char *http_addr, bool fresh, struct cluster_change *ch,
		 cluster_change_cb cb) BCN_MUST_CHECK;
/* True if this server started with an empty raft directory and has applied
 * nothing yet: a new server, or one whose data was lost. A member whose log
 * was lost must be removed and added again (Raft assumes a server never
 * loses what it acknowledged): cluster_join() does that when @fresh. */
bool cluster_fresh(struct cluster *c);
/* Leader only. Remove the server with raft ID @id. */
int cluster_remove(struct cluster *c, uint64_t id, struct cluster_change *ch,
		   cluster_change_cb cb) BCN_MUST_CHECK;
/* Leader only. Hand leadership to @id (0: any voter). @cb gets 0 if another
 * server leads afterwards. */
int cluster_transfer(struct cluster *c, uint64_t id, struct cluster_change *ch,
		     cluster_change_cb cb) BCN_MUST_CHECK;
/* Record this server (name, addresses) if the state does not already have
 * it so. Leader only; a no-op elsewhere. */
void cluster_record_self(struct cluster *c);
/* True if the replicated state records this server as it is. */
bool cluster_self_recorded(struct cluster *c);

/* ---- backups ------------------------------------------------------------ */

/* A backup of the whole state in the snapshot format below: bcn_malloc'd in
 * @out (free with bcn_free). */
int cluster_backup(struct cluster *c, void **out, size_t *len) BCN_MUST_CHECK;
/* Leader only. Verify @buf (borrowed) and replace the state of every server
 * with it, through the log. BCN_ECORRUPT if it does not verify, BCN_EINVAL
 * with the reason in @why (@cap bytes) if the image is not one every
 * server can load and keep applying to (raft/image.h); then nothing
 * changes. */
int cluster_restore(struct cluster *c, const void *buf, size_t len,
		    struct cluster_req *req, cluster_req_cb cb, char *why,
		    size_t cap) BCN_MUST_CHECK;

/* The table of servers (name, addresses) kept beside the KV store and the
 * catalog in the state database; with theirs, the schema of a state image
 * (raft/image.h). */
extern const char cluster_servers_schema[];

/* Snapshot file format shared by raft snapshots and backups:
 * "BCNSNAP2" | u64 index | u64 term | u64 length | 16-byte XXH3-128 |
 * 16 bytes zero | image.
 * Verify @buf and return the offset/length of the SQLite image. */
#define CLUSTER_SNAP_HEADER 64
int cluster_snapshot_verify(const void *buf, size_t len, size_t *img_off,
			    size_t *img_len, uint64_t *index) BCN_MUST_CHECK;

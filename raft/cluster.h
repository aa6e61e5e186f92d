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
#include "kv/kv.h"

struct uv_loop_s;
struct cluster;

struct cluster_options {
	const char *node;      /* this server's name (raft ID source) */
	const char *data_dir;  /* raft log in <data_dir>/raft */
	const char *raft_addr; /* host:port to bind and advertise */
	const char *http_addr; /* recorded so that followers can forward */
	const char *initial_cluster; /* "n1=host:port,..."; "" = just me */
	unsigned election_timeout_ms;
	unsigned heartbeat_ms;
	unsigned snapshot_threshold; /* entries between snapshots */
	unsigned snapshot_trailing;  /* entries kept after a snapshot */
	unsigned cache_kib;	     /* SQLite page cache */
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
/* Copy the leader's HTTP address into @out. False if there is no known
 * leader or it has not recorded itself yet. */
bool cluster_leader_http(struct cluster *c, char *out, size_t cap);
const char *cluster_raft_addr(struct cluster *c);
/* Voters' raft addresses; returns the count written (at most @cap). */
size_t cluster_voters(struct cluster *c, const char **addrs, size_t cap);

/* The KV state (for reads; writes go through cluster_propose_kv()). */
struct kv_store *cluster_kv(struct cluster *c);

/* A proposal. The caller embeds it and keeps it alive until @cb fires. */
struct cluster_req;
typedef void (*cluster_req_cb)(struct cluster_req *req, int status);
struct cluster_req {
	void *data;		 /* caller's */
	cluster_req_cb cb;	 /* status 0: committed, @result valid */
	struct kv_result result; /* owned; kv_result_close() after @cb */
	uint64_t index;		 /* log index of the entry */
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

/* Snapshot file format shared by raft snapshots and backups:
 * "BCNSNAP1" | u64 index | u64 term | u64 length | 32-byte SHA-256 | image.
 * Verify @buf and return the offset/length of the SQLite image. */
#define CLUSTER_SNAP_HEADER 64
int cluster_snapshot_verify(const void *buf, size_t len, size_t *img_off,
			    size_t *img_len, uint64_t *index) BCN_MUST_CHECK;

/* libraft wiring and the FSM.
 *
 * Happy path of a write: cluster_propose_kv() encodes the ops and calls
 * raft_apply(); once the entry commits, fsm_apply() runs kv_apply() at the
 * entry's index inside the turn's batch transaction and, when this server
 * holds the proposal, writes the outcome straight into it; then libraft
 * fires apply_cb() and the proposer answers its client.
 *
 * Why results are not returned through libraft's `result` pointer: on
 * followers (and for proposals already failed) nobody receives it, so a
 * heap result would leak. The FSM finds the waiting proposal by index
 * instead.
 *
 * Failure modes: a committed entry that cannot be applied (corrupt, out of
 * memory, I/O) stops the process, since skipping it would fork this
 * server's state from the others'. Leadership lost or shutdown while a
 * proposal waits: BCN_EUNKNOWN, because the entry may still commit. */
#include "raft/cluster.h"

#include <assert.h>
#include <raft.h>
#include <raft/uv.h>
#include <xxhash.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "common/alloc.h"
#include "common/log.h"
#include "raft/codec.h"
#include "raft/image.h"

#define MOD "raft"

_Static_assert(sizeof(struct raft_apply) <=
		   sizeof(((struct cluster_req *)0)->raft_req),
	       "cluster_req.raft_req too small");

struct cluster {
	uv_loop_t *loop;
	struct raft raft;
	struct raft_io io;
	struct raft_uv_transport transport;
	struct raft_fsm fsm;
	raft_id id;
	char raft_addr[CLUSTER_MAX_NAME];
	char http_addr[CLUSTER_MAX_NAME];
	char node[CLUSTER_MAX_NAME];
	sqlite3_stmt *srv_put, *srv_by_raft, *srv_by_name;
	struct cluster_req self_req; /* our own server record */
	bool self_busy;

	/* Tombstone reaping, leader only: (time, applied index) samples; the
	 * leader reaps what was deleted before the newest sample older than
	 * the TTL, and writes that index into the log. */
	uint64_t tomb_ttl_ms;
	struct {
		uint64_t at, index;
	} samples[32];
	unsigned n_samples;
	uint64_t last_sample;
	struct cluster_req reap_req;
	bool reap_busy;
	bool pristine; /* the raft directory was empty at start */

	/* Statistics. */
	raft_id last_leader;
	uint64_t leader_changes;
	struct cluster_hist apply_hist;
	uint64_t snapshots, snap_bytes;
	double snap_ms;
	sqlite3 *db;
	struct kv_store *kv;
	struct cat_store *cat;
	bool in_batch;
	uint64_t last_index;	    /* last index applied to the FSM */
	struct cluster_req pending; /* list head: proposals by index */

	/* Consistent reads: those covered by the barrier in flight, and those
	 * that arrived after it was issued. */
	struct raft_barrier read_barrier;
	bool read_barrier_busy;
	struct cluster_read *reads_inflight;
	struct cluster_read *reads_waiting;

	/* Own-term barrier after winning an election. */
	struct raft_barrier ready_barrier;
	bool ready_busy;
	bool leader_seen; /* leader at the last tick */
	bool ready;
	uint64_t last_contact; /* uv_now() when a leader was last known */
	bool ever_contact;

	void (*stop_cb)(void *data);
	void *stop_data;

	/* libraft's own send and snapshot load, wrapped (see io_send). */
	int (*uv_send)(struct raft_io *io, struct raft_io_send *req,
		       const struct raft_message *message, raft_io_send_cb cb);
	int (*uv_snapshot_get)(struct raft_io *io,
			       struct raft_io_snapshot_get *req,
			       raft_io_snapshot_get_cb cb);
	struct {
		raft_id id;
		char addr[CLUSTER_MAX_NAME];
	} addrs[16]; /* last known address of every server seen */
	unsigned n_addrs, next_addr;

	/* libraft's receive and tick callbacks, wrapped (see io_recv). */
	raft_io_recv_cb uv_recv;
	raft_io_tick_cb uv_tick;
	int (*uv_start)(struct raft_io *io, unsigned msecs,
			raft_io_tick_cb tick, raft_io_recv_cb recv);
	bool snap_taking;	      /* between fsm_snapshot and _finalize */
	bool held;		      /* an InstallSnapshot is held back */
	struct raft_message held_msg; /* owns its conf and data */
	char held_addr[CLUSTER_MAX_NAME];

	/* Test hook (BEACON_TEST_SNAPSHOT_PUT_DELAY_MS): start writing each
	 * snapshot this server takes only after a delay. */
	int (*uv_snapshot_put)(struct raft_io *io, unsigned trailing,
			       struct raft_io_snapshot_put *req,
			       const struct raft_snapshot *snapshot,
			       raft_io_snapshot_put_cb cb);
	unsigned put_delay_ms;
	struct put_delay *put_delayed;
};

uint64_t cluster_node_id(const char *name)
{
	/* FNV-1a: stable across versions and machines. */
	uint64_t h = 1469598103934665603ULL;

	for (; *name != '\0'; name++) {
		h ^= (unsigned char)*name;
		h *= 1099511628211ULL;
	}
	return h == 0 ? 1 : h;
}

static const struct raft_server *config_find(struct cluster *c, uint64_t id)
{
	for (unsigned i = 0; i < c->raft.configuration.n; i++)
		if (c->raft.configuration.servers[i].id == id)
			return &c->raft.configuration.servers[i];
	return NULL;
}

/* ---- addresses of libraft's messages ------------------------------------
 *
 * libraft 0.22 loads a snapshot for an InstallSnapshot message
 * asynchronously and sends the message from the load's callback; the
 * message's server_address still points into the configuration of the
 * moment it was built. A membership change in between (raft_remove of a
 * wiped server rejoining, any raft_add or raft_assign: each replaces the
 * configuration and frees every address string) leaves it dangling, and
 * uvSend reads it (heap-use-after-free found by the fault suite). So every
 * send is re-addressed here from the current configuration, or, for a
 * server no longer in it, from our own copy of its last known address.
 * libraft's uvSend uses the message only during the call. */

static struct cluster *io_cluster(struct raft_io *io)
{
	return (struct cluster *)(void *)((char *)io -
					  offsetof(struct cluster, io));
}

static const char *addr_remember(struct cluster *c, raft_id id,
				 const char *addr)
{
	unsigned i;

	for (i = 0; i < c->n_addrs; i++)
		if (c->addrs[i].id == id)
			break;
	if (i == c->n_addrs) {
		if (c->n_addrs < sizeof c->addrs / sizeof c->addrs[0]) {
			c->n_addrs++;
		} else {
			i = c->next_addr;
			c->next_addr = (c->next_addr + 1) % c->n_addrs;
		}
		c->addrs[i].id = id;
		c->addrs[i].addr[0] = '\0';
	}
	if (strcmp(c->addrs[i].addr, addr) != 0)
		snprintf(c->addrs[i].addr, sizeof c->addrs[i].addr, "%s", addr);
	return c->addrs[i].addr;
}

static void addr_remember_all(struct cluster *c)
{
	for (unsigned i = 0; i < c->raft.configuration.n; i++)
		addr_remember(c, c->raft.configuration.servers[i].id,
			      c->raft.configuration.servers[i].address);
}

static int io_send(struct raft_io *io, struct raft_io_send *req,
		   const struct raft_message *message, raft_io_send_cb cb)
{
	struct cluster *c = io_cluster(io);
	const struct raft_server *rs = config_find(c, message->server_id);
	struct raft_message m = *message;
	unsigned i;

	/* libraft 0.22.1 (and its upstream as of this writing) records a
	 * configuration entry received at position k > 0 of an AppendEntries
	 * batch as uncommitted at the batch's first index instead of its own;
	 * when the entry commits, the follower does not recognise it, keeps
	 * an uncommitted change forever and, once leader, refuses every
	 * membership change ("a configuration change is already in
	 * progress"), and its committed configuration goes stale. So a batch
	 * stops before any configuration entry that is not its first: the
	 * follower acknowledges less, the leader sends the rest again with
	 * the configuration entry first (Raft allows any prefix). */
	if (m.type == RAFT_APPEND_ENTRIES) {
		for (i = 1; i < m.append_entries.n_entries; i++)
			if (m.append_entries.entries[i].type == RAFT_CHANGE) {
				m.append_entries.n_entries = i;
				break;
			}
	}
	if (rs != NULL) {
		m.server_address = addr_remember(c, rs->id, rs->address);
		return c->uv_send(io, req, &m, cb);
	}
	for (i = 0; i < c->n_addrs; i++)
		if (c->addrs[i].id == message->server_id)
			break;
	/* Neither in the configuration nor seen: a reply to a server we do
	 * not know yet (a wiped server has no configuration until its
	 * snapshot arrives), addressed by libraft from the connection it
	 * came on, which is alive. A delayed send is never in this case:
	 * its target was recorded when the load started. */
	if (i == c->n_addrs)
		return c->uv_send(io, req, &m, cb);
	m.server_address = c->addrs[i].addr;
	return c->uv_send(io, req, &m, cb);
}

/* A load starts from the current configuration: record it, so that the
 * send after the load finds the target even if it is removed meanwhile. */
static int io_snapshot_get(struct raft_io *io, struct raft_io_snapshot_get *req,
			   raft_io_snapshot_get_cb cb)
{
	struct cluster *c = io_cluster(io);

	addr_remember_all(c);
	return c->uv_snapshot_get(io, req, cb);
}

/* ---- InstallSnapshot while taking a snapshot ---------------------------
 *
 * libraft 0.22.1 (and its upstream as of this writing) parks an
 * InstallSnapshot that arrives while this server is writing a snapshot of
 * its own, and resumes it when the write completes; but takeSnapshotCb
 * clears the parked request before reading it back and dereferences NULL
 * (a follower catching up after a rejoin died of SIGSEGV in a fault run).
 * So such a message never reaches libraft during a take: it is held here
 * and delivered at the first tick after the take ends, as if the network
 * had delayed it. A newer one replaces an older one (the leader sends its
 * latest snapshot anyway). */

static void held_drop(struct cluster *c)
{
	if (!c->held)
		return;
	raft_configuration_close(&c->held_msg.install_snapshot.conf);
	raft_free(c->held_msg.install_snapshot.data.base);
	c->held = false;
}

static void io_recv(struct raft_io *io, struct raft_message *m)
{
	struct cluster *c = io_cluster(io);

	if (m->type != RAFT_INSTALL_SNAPSHOT) {
		c->uv_recv(io, m);
		return;
	}
	if (!c->snap_taking) {
		held_drop(c); /* superseded by this one */
		c->uv_recv(io, m);
		return;
	}
	/* The leader sends it again at every heartbeat: say it once. */
	if (!c->held)
		bcn_debug(MOD,
			  "InstallSnapshot at %llu from %llx held until "
			  "our own snapshot is written",
			  (unsigned long long)m->install_snapshot.last_index,
			  (unsigned long long)m->server_id);
	held_drop(c);
	c->held_msg = *m; /* the receiver reuses *m once we return */
	snprintf(c->held_addr, sizeof c->held_addr, "%s",
		 m->server_address != NULL ? m->server_address : "");
	c->held_msg.server_address = c->held_addr;
	c->held = true;
}

static void io_tick(struct raft_io *io)
{
	struct cluster *c = io_cluster(io);

	if (c->held && !c->snap_taking) {
		struct raft_message m = c->held_msg;

		c->held = false;
		bcn_debug(MOD, "InstallSnapshot at %llu delivered",
			  (unsigned long long)m.install_snapshot.last_index);
		c->uv_recv(io, &m);
	}
	c->uv_tick(io);
}

static int io_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
		    raft_io_recv_cb recv)
{
	struct cluster *c = io_cluster(io);

	c->uv_tick = tick;
	c->uv_recv = recv;
	return c->uv_start(io, msecs, io_tick, io_recv);
}

struct put_delay {
	uv_timer_t timer;
	struct cluster *c;
	unsigned trailing;
	struct raft_io_snapshot_put *req;
	const struct raft_snapshot *snapshot;
	raft_io_snapshot_put_cb cb;
};

static void put_delay_closed(uv_handle_t *h)
{
	bcn_free(h->data);
}

static void put_delay_fire(uv_timer_t *t)
{
	struct put_delay *d = t->data;
	struct cluster *c = d->c;
	int rc;

	c->put_delayed = NULL;
	rc =
	    c->uv_snapshot_put(&c->io, d->trailing, d->req, d->snapshot, d->cb);
	if (rc != 0) {
		bcn_error(MOD, "delayed snapshot write: %s", raft_strerror(rc));
		d->cb(d->req, rc);
	}
	uv_close((uv_handle_t *)t, put_delay_closed);
}

/* Installs (trailing 0) are never delayed: only our own takes. */
static int io_snapshot_put(struct raft_io *io, unsigned trailing,
			   struct raft_io_snapshot_put *req,
			   const struct raft_snapshot *snapshot,
			   raft_io_snapshot_put_cb cb)
{
	struct cluster *c = io_cluster(io);
	struct put_delay *d;

	if (trailing == 0 || c->put_delayed != NULL ||
	    (d = bcn_calloc(1, sizeof *d)) == NULL)
		return c->uv_snapshot_put(io, trailing, req, snapshot, cb);
	*d = (struct put_delay){.c = c,
				.trailing = trailing,
				.req = req,
				.snapshot = snapshot,
				.cb = cb};
	uv_timer_init(c->loop, &d->timer);
	d->timer.data = d;
	uv_timer_start(&d->timer, put_delay_fire, c->put_delay_ms, 0);
	c->put_delayed = d;
	return 0;
}

/* ---- batch transactions ------------------------------------------------ */

static int exec(sqlite3 *db, const char *sqlstr)
{
	int rc = sqlite3_exec(db, sqlstr, NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0
			       : (rc == SQLITE_NOMEM ? BCN_ENOMEM : BCN_EIO);
}

static void fatal(struct cluster *c, const char *what, int rc)
{
	bcn_error(MOD,
		  "%s at index %llu: %s (%s); stopping so that this "
		  "server's state cannot diverge",
		  what, (unsigned long long)c->last_index + 1, bcn_strerror(rc),
		  sqlite3_errmsg(c->db));
	fflush(stderr);
	_exit(70);
}

static void batch_begin(struct cluster *c)
{
	if (c->in_batch)
		return;
	int rc = exec(c->db, "BEGIN");
	if (rc != 0)
		fatal(c, "begin batch", rc);
	c->in_batch = true;
}

static void batch_commit(struct cluster *c)
{
	if (!c->in_batch)
		return;
	int rc = exec(c->db, "COMMIT");
	if (rc != 0)
		fatal(c, "commit batch", rc);
	c->in_batch = false;
}

/* ---- FSM ----------------------------------------------------------------- */

static struct cluster_req *pending_find(struct cluster *c, uint64_t index)
{
	for (struct cluster_req *r = c->pending.next; r != &c->pending;
	     r = r->next) {
		if (r->index == index)
			return r;
		if (r->index > index)
			break;
	}
	return NULL;
}

/* ---- the servers table ----------------------------------------------------
 */

const char cluster_servers_schema[] =
    "CREATE TABLE IF NOT EXISTS servers(name TEXT PRIMARY KEY,"
    " raft_addr TEXT NOT NULL, http_addr TEXT NOT NULL,"
    " idx INTEGER NOT NULL) WITHOUT ROWID";

static const struct {
	const char *sql;
	size_t off; /* of the statement in struct cluster */
} srv_sql[] = {
    {"INSERT OR REPLACE INTO servers(name, raft_addr, http_addr, idx) "
     "VALUES(?1, ?2, ?3, ?4)",
     offsetof(struct cluster, srv_put)},
    {"SELECT name, raft_addr, http_addr FROM servers WHERE raft_addr = ?1",
     offsetof(struct cluster, srv_by_raft)},
    {"SELECT name, raft_addr, http_addr FROM servers WHERE name = ?1",
     offsetof(struct cluster, srv_by_name)},
};

static int server_put(struct cluster *c, const struct cluster_cmd *cmd,
		      uint64_t index)
{
	sqlite3_stmt *st = c->srv_put;
	int rc;

	sqlite3_bind_text(st, 1, cmd->server_name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, cmd->server_raft, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, cmd->server_http, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)index);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : BCN_EIO;
}

/* Copy column @col of the row that @st finds for @key into @out. */
static bool server_lookup(sqlite3_stmt *st, const char *key, int col, char *out,
			  size_t cap)
{
	bool found = false;

	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		const char *v = (const char *)sqlite3_column_text(st, col);
		if (v != NULL) {
			snprintf(out, cap, "%s", v);
			found = true;
		}
	}
	sqlite3_reset(st);
	return found;
}

bool cluster_leader_http(struct cluster *c, char *out, size_t cap)
{
	const char *raft = cluster_leader_addr(c);

	return raft[0] != '\0' &&
	       server_lookup(c->srv_by_raft, raft, 2, out, cap);
}

static int load_image(struct cluster *c, const void *img, size_t len);

/* A backup restored through the log: every server replaces its state. The
 * leader verified the checksum before proposing; a bad one here means the
 * entry itself is damaged, which stops the server like any bad entry. */
static int apply_restore(struct cluster *c, const struct cluster_cmd *cmd)
{
	size_t off, len;
	int rc = cluster_snapshot_verify(cmd->image, cmd->image_len, &off, &len,
					 NULL);

	if (rc == 0)
		rc = load_image(c, (const uint8_t *)cmd->image + off, len);
	if (rc == 0) {
		kv_changes_mark_all(c->kv);
		cat_changes_mark_all(c->cat);
		bcn_info(MOD, "restored a backup of %zu bytes", len);
	}
	return rc;
}

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf,
		     void **result)
{
	struct cluster *c = fsm->data;
	uint64_t index = raft_last_applied(&c->raft) + 1;
	struct cluster_req *req;
	struct cluster_cmd cmd;
	int rc;

	*result = NULL;
	assert(index > c->last_index);
	rc = cluster_cmd_decode(buf->base, buf->len, &cmd);
	if (rc != 0)
		fatal(c, "decode entry", rc);
	batch_begin(c);
	req = pending_find(c, index);
	switch (cmd.type) {
	case CMD_KV:
		rc = kv_apply(c->kv, cmd.ops, cmd.n_ops, index,
			      req != NULL ? &req->result : NULL);
		break;
	case CMD_REAP:
		rc = kv_reap(c->kv, cmd.reap_before);
		break;
	case CMD_SERVER:
		rc = server_put(c, &cmd, index);
		break;
	case CMD_RESTORE:
		rc = apply_restore(c, &cmd);
		break;
	case CMD_CATALOG:
		rc = cat_apply(c->cat, cmd.cat_ops, cmd.n_cat_ops, index,
			       req != NULL ? &req->cat : NULL);
		break;
	case CMD_SECRET: {
		bool ok = true;
		if (cmd.secret_op == CMD_SECRET_PUT)
			rc = kv_secret_put(c->kv, cmd.secret_path,
					   cmd.secret_key_id, cmd.secret_box,
					   cmd.secret_box_len, cmd.secret_cas,
					   cmd.secret_cas_index, index, &ok);
		else
			rc = kv_secret_delete(
			    c->kv, cmd.secret_path,
			    cmd.secret_op == CMD_SECRET_DELETE_TREE, index);
		if (rc == 0 && req != NULL)
			req->result.ok = ok;
		break;
	}
	case CMD_ACL: {
		bool ok;
		rc = kv_acl_apply(c->kv, cmd.acl_op, &cmd.acl_token,
				  &cmd.acl_policy, index, &ok);
		if (rc == 0 && req != NULL)
			req->result.ok = ok;
		break;
	}
	case CMD_SESSION: {
		bool ok;
		rc = cmd.sess_op == CMD_SESSION_CREATE
			 ? kv_session_create(c->kv, &cmd.sess, index, &ok)
			 : kv_session_destroy(c->kv, cmd.sess.id, cmd.now_ms,
					      index, &ok);
		if (rc == 0 && req != NULL)
			req->result.ok = ok;
		break;
	}
	}
	cluster_cmd_close(&cmd);
	if (rc != 0)
		fatal(c, "apply entry", rc);
	c->last_index = index;
	return 0;
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

static const char snap_magic[8] = {'B', 'C', 'N', 'S', 'N', 'A', 'P', '2'};

/* The checksum is XXH3-128 of the image: corruption detection, fast enough
 * to run on the loop (libraft's legacy path calls snapshot_async right
 * after snapshot, on the loop thread). */
static void image_sum(const void *img, size_t len, uint8_t out[16])
{
	XXH128_hash_t h = XXH3_128bits(img, len);
	XXH128_canonical_t c;

	XXH128_canonicalFromHash(&c, h);
	memcpy(out, c.digest, 16);
}

int cluster_snapshot_verify(const void *bufp, size_t len, size_t *img_off,
			    size_t *img_len, uint64_t *index)
{
	const uint8_t *buf = bufp;
	uint8_t sum[16];
	uint64_t n;

	if (buf == NULL || len < CLUSTER_SNAP_HEADER ||
	    memcmp(buf, snap_magic, 8) != 0)
		return BCN_ECORRUPT;
	n = get_u64(buf + 24);
	if (n != len - CLUSTER_SNAP_HEADER)
		return BCN_ECORRUPT;
	image_sum(buf + CLUSTER_SNAP_HEADER, n, sum);
	if (memcmp(sum, buf + 32, sizeof sum) != 0)
		return BCN_ECORRUPT;
	*img_off = CLUSTER_SNAP_HEADER;
	*img_len = (size_t)n;
	if (index != NULL)
		*index = get_u64(buf + 8);
	return 0;
}

/* Runs on the loop thread: copy the database image (memcpy of its pages),
 * which is what must not race with later applies. */
static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[],
			unsigned *n_bufs)
{
	struct cluster *c = fsm->data;
	sqlite3_int64 size = 0;
	unsigned char *img;
	struct raft_buffer *b;
	uint8_t *hdr;

	uint64_t t0 = uv_hrtime();

	batch_commit(c);
	img = sqlite3_serialize(c->db, "main", &size, 0);
	if (img == NULL)
		return RAFT_NOMEM;
	c->snapshots++;
	c->snap_bytes = (uint64_t)size;
	c->snap_ms = (double)(uv_hrtime() - t0) / 1e6;
	bcn_info(MOD, "snapshot at index %llu: %lld bytes, copied in %.1f ms",
		 (unsigned long long)c->last_index, (long long)size,
		 c->snap_ms);
	b = raft_calloc(2, sizeof *b);
	hdr = raft_calloc(1, CLUSTER_SNAP_HEADER);
	if (b == NULL || hdr == NULL) {
		raft_free(b);
		raft_free(hdr);
		sqlite3_free(img);
		return RAFT_NOMEM;
	}
	memcpy(hdr, snap_magic, 8);
	put_u64(hdr + 8, c->last_index);
	put_u64(hdr + 16, raft_current_term(&c->raft));
	put_u64(hdr + 24, (uint64_t)size);
	b[0].base = hdr;
	b[0].len = CLUSTER_SNAP_HEADER;
	b[1].base = img;
	b[1].len = (size_t)size;
	*bufs = b;
	*n_bufs = 2;
	/* libraft calls snapshot_finalize once it is written, or failed. */
	c->snap_taking = true;
	return 0;
}

/* May run on a worker thread: touches only the private copy. */
static int fsm_snapshot_async(struct raft_fsm *fsm, struct raft_buffer *bufs[],
			      unsigned *n_bufs)
{
	struct raft_buffer *b = *bufs;

	(void)fsm;
	assert(*n_bufs == 2);
	image_sum(b[1].base, b[1].len, (uint8_t *)b[0].base + 32);
	return 0;
}

static int fsm_snapshot_finalize(struct raft_fsm *fsm,
				 struct raft_buffer *bufs[], unsigned *n_bufs)
{
	struct cluster *c = fsm->data;

	c->snap_taking = false;
	if (*bufs != NULL) {
		raft_free((*bufs)[0].base);
		sqlite3_free((*bufs)[1].base);
		raft_free(*bufs);
	}
	*bufs = NULL;
	*n_bufs = 0;
	return 0;
}

/* Replace the whole state with a snapshot image. */
static int load_image(struct cluster *c, const void *img, size_t len)
{
	int rc;

	batch_commit(c);
	rc = image_load(c->db, img, len);
	/* An image from an older version may lack newer tables or
	 * indexes. */
	if (rc == 0)
		rc = exec(c->db, cluster_servers_schema);
	if (rc == 0)
		rc = kv_store_migrate(c->kv);
	return rc == 0 ? cat_store_migrate(c->cat) : rc;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	struct cluster *c = fsm->data;
	size_t off, len;
	uint64_t index;
	int rc;

	rc = cluster_snapshot_verify(buf->base, buf->len, &off, &len, &index);
	if (rc == 0)
		rc = load_image(c, (const uint8_t *)buf->base + off, len);
	if (rc != 0) {
		bcn_error(MOD, "snapshot restore failed: %s", bcn_strerror(rc));
		return RAFT_CORRUPT;
	}
	c->last_index = raft_last_applied(&c->raft) > index
			    ? raft_last_applied(&c->raft)
			    : index;
	kv_changes_mark_all(c->kv);
	cat_changes_mark_all(c->cat);
	bcn_info(MOD, "restored snapshot at index %llu (%zu bytes)",
		 (unsigned long long)index, len);
	raft_free(buf->base); /* ours on success */
	return 0;
}

/* ---- setup --------------------------------------------------------------- */

static int open_db(struct cluster *c, const struct cluster_options *o,
		   char *errmsg)
{
	/* One thread uses SQLite: no mutexes, no memory statistics. Refused
	 * (harmlessly) if SQLite is already initialised, as in unit tests. */
	(void)sqlite3_config(SQLITE_CONFIG_SINGLETHREAD);
	(void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
	char path[4096], pragmas[256];
	int rc;

	/* The database is a cache of the log: rebuilt from the last snapshot
	 * and the log at every start, never trusted across restarts. */
	snprintf(path, sizeof path, "%s/state.db", o->data_dir);
	unlink(path);
	rc = sqlite3_open_v2(path, &c->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				 SQLITE_OPEN_NOMUTEX,
			     NULL);
	if (rc != SQLITE_OK) {
		bcn_errf(errmsg, "open %s: %s", path, sqlite3_errstr(rc));
		return BCN_EIO;
	}
	snprintf(pragmas, sizeof pragmas,
		 "PRAGMA journal_mode=MEMORY; PRAGMA synchronous=OFF;"
		 "PRAGMA locking_mode=EXCLUSIVE; PRAGMA cache_size=-%u;",
		 o->cache_kib);
	rc = exec(c->db, pragmas);
	if (rc != 0) {
		bcn_errf(errmsg, "configure %s: %s", path,
			 sqlite3_errmsg(c->db));
		return rc;
	}
	rc = exec(c->db, cluster_servers_schema);
	for (size_t i = 0; rc == 0 && i < sizeof srv_sql / sizeof srv_sql[0];
	     i++)
		if (sqlite3_prepare_v2(
			c->db, srv_sql[i].sql, -1,
			(sqlite3_stmt **)((char *)c + srv_sql[i].off),
			NULL) != SQLITE_OK)
			rc = BCN_EIO;
	if (rc != 0) {
		bcn_errf(errmsg, "servers table: %s", sqlite3_errmsg(c->db));
		return rc;
	}
	rc = kv_store_open(&c->kv, c->db, errmsg);
	if (rc == 0)
		rc = cat_store_open(&c->cat, c->db, errmsg);
	return rc;
}

/* Parse "n1=addr,n2=addr" into @conf. */
static int parse_initial(const struct cluster_options *o,
			 struct raft_configuration *conf, char *errmsg)
{
	char *list, *save = NULL, *item;
	bool self = false;
	int rc = 0;

	if (o->initial_cluster == NULL || o->initial_cluster[0] == '\0') {
		if (raft_configuration_add(conf, cluster_node_id(o->node),
					   o->raft_addr, RAFT_VOTER) != 0)
			return BCN_ENOMEM;
		return 0;
	}
	list = bcn_strdup(o->initial_cluster);
	if (list == NULL)
		return BCN_ENOMEM;
	for (item = strtok_r(list, ",", &save); item != NULL;
	     item = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(item, '=');
		if (eq == NULL || eq == item || eq[1] == '\0') {
			bcn_errf(errmsg,
				 "--initial-cluster: '%s' is not "
				 "NAME=HOST:PORT",
				 item);
			rc = BCN_EINVAL;
			break;
		}
		*eq = '\0';
		if (strcmp(item, o->node) == 0) {
			if (strcmp(eq + 1, o->raft_addr) != 0) {
				bcn_errf(errmsg,
					 "--initial-cluster gives %s "
					 "the address %s but "
					 "--raft-addr is %s",
					 item, eq + 1, o->raft_addr);
				rc = BCN_EINVAL;
				break;
			}
			self = true;
		}
		if (raft_configuration_add(conf, cluster_node_id(item), eq + 1,
					   RAFT_VOTER) != 0) {
			bcn_errf(errmsg,
				 "--initial-cluster: duplicate server "
				 "%s",
				 item);
			rc = BCN_EINVAL;
			break;
		}
	}
	bcn_free(list);
	if (rc == 0 && !self) {
		bcn_errf(errmsg,
			 "--initial-cluster does not name this node "
			 "(%s)",
			 o->node);
		rc = BCN_EINVAL;
	}
	return rc;
}

static void close_stmts(struct cluster *c);

static int mkdir_p(const char *dir)
{
	char tmp[4096];
	size_t n = strlen(dir);

	if (n == 0 || n >= sizeof tmp)
		return BCN_EINVAL;
	memcpy(tmp, dir, n + 1);
	for (char *p = tmp + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int cluster_start(struct cluster **out, struct uv_loop_s *loop,
		  const struct cluster_options *o, char *errmsg)
{
	struct raft_configuration conf;
	char dir[4096];
	struct cluster *c;
	int rc;

	c = bcn_calloc(1, sizeof *c);
	if (c == NULL)
		return BCN_ENOMEM;
	c->loop = loop;
	c->pending.next = c->pending.prev = &c->pending;
	c->id = cluster_node_id(o->node);
	snprintf(c->raft_addr, sizeof c->raft_addr, "%s", o->raft_addr);
	snprintf(c->http_addr, sizeof c->http_addr, "%s",
		 o->http_addr != NULL ? o->http_addr : "");
	snprintf(c->node, sizeof c->node, "%s", o->node);
	c->tomb_ttl_ms = o->tombstone_ttl_ms;
	snprintf(dir, sizeof dir, "%s/raft", o->data_dir);
	rc = mkdir_p(dir);
	if (rc != 0) {
		bcn_errf(errmsg, "create %s: %s", dir, bcn_strerror(rc));
		goto err_free;
	}
	{
		char meta[4200];
		snprintf(meta, sizeof meta, "%s/metadata1", dir);
		c->pristine = access(meta, F_OK) != 0;
		snprintf(meta, sizeof meta, "%s/metadata2", dir);
		c->pristine = c->pristine && access(meta, F_OK) != 0;
	}
	if (c->pristine && !o->join && o->initial_cluster != NULL &&
	    o->initial_cluster[0] != '\0')
		bcn_warn(MOD, "empty data directory: bootstrapping a new log. "
			      "If this server was a member of a running "
			      "cluster and lost its data, stop it and start "
			      "it with --join <member's HTTP address>");
	rc = open_db(c, o, errmsg);
	if (rc != 0)
		goto err_db;

	c->fsm.version = 3;
	c->fsm.data = c;
	c->fsm.apply = fsm_apply;
	c->fsm.snapshot = fsm_snapshot;
	c->fsm.restore = fsm_restore;
	c->fsm.snapshot_finalize = fsm_snapshot_finalize;
	c->fsm.snapshot_async = fsm_snapshot_async;

	c->transport.version = 1;
	c->transport.data = c;
	rc = raft_uv_tcp_init(&c->transport, loop);
	if (rc != 0) {
		bcn_errf(errmsg, "raft transport: %s", raft_strerror(rc));
		rc = BCN_EINTERNAL;
		goto err_db;
	}
	rc = raft_uv_init(&c->io, loop, dir, &c->transport);
	if (rc != 0) {
		bcn_errf(errmsg, "raft I/O in %s: %s", dir, c->io.errmsg);
		rc = BCN_EIO;
		goto err_transport;
	}
	c->uv_send = c->io.send;
	c->io.send = io_send;
	c->uv_snapshot_get = c->io.snapshot_get;
	c->io.snapshot_get = io_snapshot_get;
	c->uv_start = c->io.start;
	c->io.start = io_start;
	{
		const char *d = getenv("BEACON_TEST_SNAPSHOT_PUT_DELAY_MS");

		if (d != NULL && atoi(d) > 0) {
			c->put_delay_ms = (unsigned)atoi(d);
			c->uv_snapshot_put = c->io.snapshot_put;
			c->io.snapshot_put = io_snapshot_put;
			bcn_warn(MOD, "test hook: snapshots written %u ms late",
				 c->put_delay_ms);
		}
	}
	rc = raft_init(&c->raft, &c->io, &c->fsm, c->id, c->raft_addr);
	if (rc != 0) {
		bcn_errf(errmsg, "raft init: %s", raft_errmsg(&c->raft));
		rc = BCN_EINTERNAL;
		goto err_io;
	}
	c->raft.data = c;
	/* libraft 0.22 formats every trace message (snprintf on each step and
	 * apply, ~6% of a server's CPU under load) whenever a tracer is set,
	 * and sets its default one: keep it only when asked for. */
	if (getenv("LIBRAFT_TRACE") == NULL)
		c->raft.tracer = NULL;
	raft_set_election_timeout(&c->raft, o->election_timeout_ms);
	raft_set_heartbeat_timeout(&c->raft, o->heartbeat_ms);
	raft_set_pre_vote(&c->raft, true);
	/* Offset each server's threshold (by up to 15/32 of it, from its ID)
	 * so that the servers do not all pause for a snapshot at the same
	 * entry: one at a time, the quorum keeps going. */
	raft_set_snapshot_threshold(
	    &c->raft,
	    o->snapshot_threshold + (unsigned)((uint64_t)o->snapshot_threshold *
					       (c->id % 16) / 32));
	raft_set_snapshot_trailing(&c->raft, o->snapshot_trailing);

	raft_configuration_init(&conf);
	rc = o->join ? 0 : parse_initial(o, &conf, errmsg);
	if (rc == 0 && !o->join) {
		int brc = raft_bootstrap(&c->raft, &conf);
		if (brc != 0 && brc != RAFT_CANTBOOTSTRAP) {
			bcn_errf(errmsg, "raft bootstrap: %s",
				 raft_errmsg(&c->raft));
			rc = BCN_EIO;
		} else if (brc == 0) {
			bcn_info(MOD, "bootstrapped a new cluster of %u",
				 conf.n);
		}
	}
	raft_configuration_close(&conf);
	if (rc != 0)
		goto err_raft;
	rc = raft_start(&c->raft);
	if (rc != 0) {
		bcn_errf(errmsg, "raft start: %s", raft_errmsg(&c->raft));
		rc = BCN_EIO;
		goto err_raft;
	}
	bcn_info(MOD, "node %s (id %llx) raft at %s, log in %s", o->node,
		 (unsigned long long)c->id, c->raft_addr, dir);
	*out = c;
	return 0;

err_raft:
	/* raft_init succeeded: only raft_close can release it, and that
	 * needs the loop. Run the loop until it is done. */
	c->stop_cb = NULL;
	cluster_stop(c, NULL, NULL);
	uv_run(loop, UV_RUN_DEFAULT);
	return rc;
err_io:
	raft_uv_close(&c->io);
err_transport:
	raft_uv_tcp_close(&c->transport);
err_db:
	kv_store_close(c->kv);
	cat_store_close(c->cat);
	close_stmts(c);
	sqlite3_close(c->db);
err_free:
	bcn_free(c);
	return rc;
}

static void close_stmts(struct cluster *c)
{
	sqlite3_finalize(c->srv_put);
	sqlite3_finalize(c->srv_by_raft);
	sqlite3_finalize(c->srv_by_name);
}

static void fire_reads(struct cluster_read **list, int status)
{
	struct cluster_read *rd = *list;

	*list = NULL;
	while (rd != NULL) {
		struct cluster_read *next = rd->next;
		rd->cb(rd, status);
		rd = next;
	}
}

static void on_raft_closed(struct raft *r)
{
	struct cluster *c = r->data;
	void (*cb)(void *) = c->stop_cb;
	void *data = c->stop_data;

	held_drop(c);
	if (c->put_delayed != NULL) /* the test stopped us too early */
		uv_close((uv_handle_t *)&c->put_delayed->timer,
			 put_delay_closed);
	raft_uv_close(&c->io);
	raft_uv_tcp_close(&c->transport);
	batch_commit(c);
	fire_reads(&c->reads_inflight, BCN_ESHUTDOWN);
	fire_reads(&c->reads_waiting, BCN_ESHUTDOWN);
	kv_store_close(c->kv);
	cat_store_close(c->cat);
	close_stmts(c);
	sqlite3_close(c->db);
	bcn_free(c);
	if (cb != NULL)
		cb(data);
}

void cluster_stop(struct cluster *c, void (*cb)(void *data), void *data)
{
	c->stop_cb = cb;
	c->stop_data = data;
	raft_close(&c->raft, on_raft_closed);
}

/* ---- leadership ---------------------------------------------------------- */

static void record_self(struct cluster *c);
static int propose(struct cluster *c, const struct bcn_buf *enc,
		   struct cluster_req *req, cluster_req_cb cb);

static void ready_barrier_cb(struct raft_barrier *b, int status)
{
	struct cluster *c = b->data;

	c->ready_busy = false;
	if (status == 0 && raft_state(&c->raft) == RAFT_LEADER) {
		c->ready = true;
		bcn_info(MOD, "leader of term %llu, serving",
			 (unsigned long long)raft_current_term(&c->raft));
		record_self(c);
	} else {
		c->leader_seen = false; /* retry at the next tick */
	}
}

static void reap_cb(struct cluster_req *req, int status)
{
	struct cluster *c = req->data;

	c->reap_busy = false;
	kv_result_close(&req->result);
	if (status != 0)
		bcn_debug(MOD, "tombstone reap: %s", bcn_strerror(status));
}

/* Sample the applied index every TTL/16 and propose a reap of tombstones
 * older than the TTL. Samples are kept on every server, so that a new
 * leader has history; only the leader proposes. */
static void reap_tick(struct cluster *c)
{
	uint64_t now = uv_now(c->loop), every = c->tomb_ttl_ms / 16, before = 0;
	unsigned n = sizeof c->samples / sizeof c->samples[0];
	struct bcn_buf enc;

	if (c->tomb_ttl_ms == 0 || now - c->last_sample < every)
		return;
	c->last_sample = now;
	if (c->n_samples == n) {
		memmove(c->samples, c->samples + 1,
			(n - 1) * sizeof c->samples[0]);
		c->n_samples--;
	}
	c->samples[c->n_samples].at = now;
	c->samples[c->n_samples].index = c->last_index;
	c->n_samples++;
	for (unsigned i = 0; i < c->n_samples; i++)
		if (now - c->samples[i].at >= c->tomb_ttl_ms)
			before = c->samples[i].index;
	if (before == 0 || c->reap_busy || !cluster_serving(c))
		return;
	bcn_buf_init(&enc);
	c->reap_req.data = c;
	if (cluster_cmd_encode_reap(before, &enc) == 0 &&
	    propose(c, &enc, &c->reap_req, reap_cb) == 0)
		c->reap_busy = true;
	bcn_buf_close(&enc);
}

bool cluster_tick(struct cluster *c)
{
	int state = raft_state(&c->raft);
	raft_id lid;
	const char *laddr;

	batch_commit(c);
	if (state == RAFT_UNAVAILABLE)
		return true;
	if (state == RAFT_LEADER) {
		if (!c->leader_seen && !c->ready_busy) {
			c->ready_barrier.data = c;
			if (raft_barrier(&c->raft, &c->ready_barrier,
					 ready_barrier_cb) == 0) {
				c->ready_busy = true;
				c->leader_seen = true;
			}
		}
	} else {
		if (c->ready)
			bcn_info(MOD, "no longer leader");
		c->leader_seen = false;
		c->ready = false;
	}
	raft_leader(&c->raft, &lid, &laddr);
	if (lid != 0) {
		c->last_contact = uv_now(c->loop);
		c->ever_contact = true;
		if (lid != c->last_leader)
			c->leader_changes++;
		c->last_leader = lid;
	}
	reap_tick(c);
	return false;
}

bool cluster_serving(struct cluster *c)
{
	return c->ready && raft_state(&c->raft) == RAFT_LEADER;
}

bool cluster_is_leader(struct cluster *c)
{
	return raft_state(&c->raft) == RAFT_LEADER;
}

const char *cluster_leader_addr(struct cluster *c)
{
	raft_id id;
	const char *addr;

	raft_leader(&c->raft, &id, &addr);
	return id == 0 || addr == NULL ? "" : addr;
}

uint64_t cluster_last_contact_ms(struct cluster *c)
{
	if (raft_state(&c->raft) == RAFT_LEADER)
		return 0;
	if (!c->ever_contact)
		return UINT64_MAX;
	return uv_now(c->loop) - c->last_contact;
}

uint64_t cluster_applied_index(struct cluster *c)
{
	return c->last_index;
}

const char *cluster_raft_addr(struct cluster *c)
{
	return c->raft_addr;
}

size_t cluster_voters(struct cluster *c, const char **addrs, size_t cap)
{
	size_t n = 0;

	for (unsigned i = 0; i < c->raft.configuration.n && n < cap; i++) {
		const struct raft_server *s = &c->raft.configuration.servers[i];
		if (s->role == RAFT_VOTER)
			addrs[n++] = s->address;
	}
	return n;
}

struct kv_store *cluster_kv(struct cluster *c)
{
	return c->kv;
}

struct cat_store *cluster_cat(struct cluster *c)
{
	return c->cat;
}

/* ---- proposals ----------------------------------------------------------- */

static void apply_cb(struct raft_apply *a, int status, void *result)
{
	struct cluster_req *req = a->data;

	if (status == 0 && req->c != NULL)
		cluster_hist_add(&req->c->apply_hist,
				 (double)(uv_hrtime() - req->start_ns) / 1e6);

	(void)result; /* always NULL: see the top of this file */
	req->prev->next = req->next;
	req->next->prev = req->prev;
	req->prev = req->next = NULL;
	if (status != 0) {
		bcn_debug(MOD, "proposal at %llu: %s",
			  (unsigned long long)req->index,
			  raft_strerror(status));
		kv_result_close(&req->result);
		/* Whatever libraft says (RAFT_NOTLEADER included), the entry
		 * was in this server's log when raft_apply() returned 0, and a
		 * later leader may commit it: the outcome is unknown, never
		 * "not done" (the fault suite saw such a write applied). */
		status = BCN_EUNKNOWN;
	}
	req->cb(req, status);
}

/* Propose the encoded command in @enc (borrowed). */
static int propose(struct cluster *c, const struct bcn_buf *enc,
		   struct cluster_req *req, cluster_req_cb cb)
{
	struct raft_apply *a = (struct raft_apply *)req->raft_req;
	struct raft_buffer buf;
	int rc;

	buf.len = enc->len;
	buf.base = raft_malloc(buf.len);
	if (buf.base == NULL)
		return BCN_ENOMEM;
	memcpy(buf.base, enc->data, enc->len);
	memset(a, 0, sizeof *a);
	a->data = req;
	req->c = c;
	req->cb = cb;
	kv_result_init(&req->result);
	req->result.want_entries = !req->no_entries;
	memset(&req->cat, 0, sizeof req->cat);
	rc = raft_apply(&c->raft, a, &buf, 1, apply_cb);
	if (rc != 0) {
		/* libraft 0.22.1 frees @buf itself when raft_apply() fails,
		 * although its header says the caller keeps it: never free
		 * it here (a double free; at worst this leaks one entry). */
		bcn_warn(MOD, "raft_apply: %s (%d)", raft_strerror(rc), rc);
		return rc == RAFT_NOTLEADER ? BCN_ENOTLEADER : BCN_EINTERNAL;
	}
	req->index = a->index;
	req->start_ns = uv_hrtime();
	/* Entries are appended in index order: keep the list sorted. */
	req->next = &c->pending;
	req->prev = c->pending.prev;
	c->pending.prev->next = req;
	c->pending.prev = req;
	return 0;
}

int cluster_propose_cat(struct cluster *c, const struct cat_op *ops, size_t n,
			struct cluster_req *req, cluster_req_cb cb)
{
	struct bcn_buf enc;
	int rc;

	if (!cluster_serving(c))
		return BCN_ENOTLEADER;
	bcn_buf_init(&enc);
	rc = cluster_cmd_encode_catalog(ops, n, &enc);
	if (rc == 0)
		rc = propose(c, &enc, req, cb);
	bcn_buf_close(&enc);
	return rc;
}

int cluster_propose_session(struct cluster *c, enum cluster_session_op op,
			    const struct kv_session *sess, uint64_t now_ms,
			    struct cluster_req *req, cluster_req_cb cb)
{
	struct bcn_buf enc;
	int rc;

	if (!cluster_serving(c))
		return BCN_ENOTLEADER;
	bcn_buf_init(&enc);
	rc = cluster_cmd_encode_session(op, sess, now_ms, &enc);
	if (rc == 0)
		rc = propose(c, &enc, req, cb);
	bcn_buf_close(&enc);
	return rc;
}

int cluster_propose_acl(struct cluster *c, enum kv_acl_op op,
			const struct kv_acl_token *t,
			const struct kv_acl_policy *p, struct cluster_req *req,
			cluster_req_cb cb)
{
	struct bcn_buf enc;
	int rc;

	if (!cluster_serving(c))
		return BCN_ENOTLEADER;
	bcn_buf_init(&enc);
	rc = cluster_cmd_encode_acl(op, t, p, &enc);
	if (rc == 0)
		rc = propose(c, &enc, req, cb);
	bcn_buf_close(&enc);
	return rc;
}

int cluster_propose_secret(struct cluster *c, enum cluster_secret_op op,
			   const char *path, const char *key_id,
			   const void *box, size_t len, bool cas,
			   uint64_t cas_index, struct cluster_req *req,
			   cluster_req_cb cb)
{
	struct bcn_buf enc;
	int rc;

	if (!cluster_serving(c))
		return BCN_ENOTLEADER;
	bcn_buf_init(&enc);
	rc = cluster_cmd_encode_secret(op, path, key_id, box, len, cas,
				       cas_index, &enc);
	if (rc == 0)
		rc = propose(c, &enc, req, cb);
	bcn_buf_close(&enc);
	return rc;
}

int cluster_propose_kv(struct cluster *c, const struct kv_op *ops, size_t n,
		       struct cluster_req *req, cluster_req_cb cb)
{
	struct bcn_buf enc;
	int rc;

	if (!cluster_serving(c))
		return BCN_ENOTLEADER;
	bcn_buf_init(&enc);
	rc = cluster_cmd_encode_kv(ops, n, &enc);
	if (rc == 0)
		rc = propose(c, &enc, req, cb);
	bcn_buf_close(&enc);
	return rc;
}

static void self_record_cb(struct cluster_req *req, int status)
{
	struct cluster *c = req->data;

	c->self_busy = false;
	kv_result_close(&req->result);
	if (status != 0)
		bcn_warn(MOD, "recording this server: %s",
			 bcn_strerror(status));
}

/* A new leader records itself, so that followers can reach its HTTP API. */
static void record_self(struct cluster *c)
{
	char raft[CLUSTER_MAX_NAME] = "", http[CLUSTER_MAX_NAME] = "";
	struct bcn_buf enc;

	if (c->self_busy || c->http_addr[0] == '\0')
		return;
	server_lookup(c->srv_by_name, c->node, 1, raft, sizeof raft);
	server_lookup(c->srv_by_name, c->node, 2, http, sizeof http);
	if (strcmp(raft, c->raft_addr) == 0 && strcmp(http, c->http_addr) == 0)
		return;
	bcn_buf_init(&enc);
	c->self_req.data = c;
	if (cluster_cmd_encode_server(c->node, c->raft_addr, c->http_addr,
				      &enc) == 0 &&
	    propose(c, &enc, &c->self_req, self_record_cb) == 0)
		c->self_busy = true;
	bcn_buf_close(&enc);
}

/* ---- consistent reads ---------------------------------------------------- */

static int read_barrier_issue(struct cluster *c);

static void read_barrier_cb(struct raft_barrier *b, int status)
{
	struct cluster *c = b->data;

	c->read_barrier_busy = false;
	fire_reads(&c->reads_inflight, status == 0 ? 0 : BCN_ENOTLEADER);
	if (c->reads_waiting != NULL && read_barrier_issue(c) != 0)
		fire_reads(&c->reads_waiting, BCN_ENOTLEADER);
}

static int read_barrier_issue(struct cluster *c)
{
	c->read_barrier.data = c;
	if (raft_barrier(&c->raft, &c->read_barrier, read_barrier_cb) != 0)
		return BCN_ENOTLEADER;
	c->read_barrier_busy = true;
	c->reads_inflight = c->reads_waiting;
	c->reads_waiting = NULL;
	return 0;
}

int cluster_read_barrier(struct cluster *c, struct cluster_read *rd,
			 cluster_read_cb cb)
{
	if (!cluster_serving(c))
		return BCN_ENOTLEADER;
	rd->cb = cb;
	rd->next = c->reads_waiting;
	c->reads_waiting = rd;
	if (!c->read_barrier_busy && read_barrier_issue(c) != 0) {
		c->reads_waiting = rd->next;
		return BCN_ENOTLEADER;
	}
	return 0;
}

static bool list_remove(struct cluster_read **list, struct cluster_read *rd)
{
	for (struct cluster_read **p = list; *p != NULL; p = &(*p)->next) {
		if (*p == rd) {
			*p = rd->next;
			return true;
		}
	}
	return false;
}

void cluster_read_cancel(struct cluster *c, struct cluster_read *rd)
{
	if (!list_remove(&c->reads_inflight, rd))
		list_remove(&c->reads_waiting, rd);
}

/* ---- membership ---------------------------------------------------------- */

_Static_assert(sizeof(struct raft_change) <=
		   sizeof(((struct cluster_change *)0)->raft_req),
	       "cluster_change.raft_req too small");
_Static_assert(sizeof(struct raft_transfer) <=
		   sizeof(((struct cluster_change *)0)->raft_req),
	       "cluster_change.raft_req too small");

static const char *role_name(int role)
{
	return role == RAFT_VOTER     ? "voter"
	       : role == RAFT_STANDBY ? "standby"
				      : "spare";
}

size_t cluster_servers(struct cluster *c, struct cluster_server *out,
		       size_t cap)
{
	raft_id lid;
	const char *laddr;
	size_t n = 0;

	raft_leader(&c->raft, &lid, &laddr);
	for (unsigned i = 0; i < c->raft.configuration.n && n < cap; i++) {
		const struct raft_server *rs =
		    &c->raft.configuration.servers[i];
		struct cluster_server *o = &out[n++];

		memset(o, 0, sizeof *o);
		o->id = rs->id;
		snprintf(o->raft_addr, sizeof o->raft_addr, "%s", rs->address);
		o->role = role_name(rs->role);
		o->leader = rs->id == lid;
		server_lookup(c->srv_by_raft, rs->address, 0, o->name,
			      sizeof o->name);
		server_lookup(c->srv_by_raft, rs->address, 2, o->http_addr,
			      sizeof o->http_addr);
	}
	return n;
}

static int change_err(int rv)
{
	switch (rv) {
	case RAFT_NOTLEADER:
	case RAFT_LEADERSHIPLOST:
		return BCN_ENOTLEADER;
	case RAFT_CANTCHANGE:
		return BCN_EBUSY;
	case RAFT_BADID:
	case RAFT_NOTFOUND:
		return BCN_ENOTFOUND;
	case RAFT_DUPLICATEADDRESS:
	case RAFT_DUPLICATEID:
	case RAFT_BADROLE:
		return BCN_EINVAL;
	default:
		return BCN_EINTERNAL;
	}
}

/* Start @ch afresh for a change of server @id; @cb fires at its end. */
static void change_init(struct cluster_change *ch, struct cluster *c,
			cluster_change_cb cb, uint64_t id)
{
	memset(ch->errmsg, 0, sizeof ch->errmsg);
	memset(ch->raft_req, 0, sizeof ch->raft_req);
	ch->c = c;
	ch->cb = cb;
	ch->id = id;
}

static void change_done(struct cluster_change *ch, int status)
{
	ch->cb(ch, status);
}

enum { JOIN_REMOVE = 1, JOIN_ADD, JOIN_ASSIGN, JOIN_RECORD };

static void join_step(struct cluster_change *ch);

static void join_record_cb(struct cluster_req *req, int status)
{
	struct cluster_change *ch = req->data;

	kv_result_close(&req->result);
	if (status != 0)
		bcn_errf(ch->errmsg, "recording %s: %s", ch->name,
			 bcn_strerror(status));
	change_done(ch, status);
}

static const char *const join_verb[] = {
    [JOIN_REMOVE] = "removing (to add again)",
    [JOIN_ADD] = "adding",
    [JOIN_ASSIGN] = "promoting",
    [JOIN_RECORD] = "recording",
};

static void join_change_cb(struct raft_change *req, int status)
{
	struct cluster_change *ch = req->data;

	if (status != 0) {
		bcn_errf(ch->errmsg, "%s %s: %s", join_verb[ch->step], ch->name,
			 raft_strerror(status));
		change_done(ch, change_err(status));
		return;
	}
	bcn_info(MOD, "%s %s (%s): done", join_verb[ch->step], ch->name,
		 ch->raft_addr);
	ch->step++;
	join_step(ch);
}

/* Run the next step; on a synchronous failure report it (we are inside a
 * callback or deferred from the start call, never inside cluster_join). */
static int join_next(struct cluster_change *ch)
{
	struct cluster *c = ch->c;
	struct raft_change *rc = (struct raft_change *)ch->raft_req;
	const struct raft_server *rs = config_find(c, ch->id);
	struct bcn_buf enc;
	int rv;

	memset(rc, 0, sizeof *rc);
	rc->data = ch;
	if (ch->step == JOIN_REMOVE && rs == NULL)
		ch->step = JOIN_ADD;
	if (ch->step == JOIN_ADD && rs != NULL)
		ch->step = JOIN_ASSIGN;
	if (ch->step == JOIN_ASSIGN && rs != NULL && rs->role == RAFT_VOTER)
		ch->step = JOIN_RECORD;
	switch (ch->step) {
	case JOIN_REMOVE:
		rv = raft_remove(&c->raft, rc, ch->id, join_change_cb);
		break;
	case JOIN_ADD:
		rv = raft_add(&c->raft, rc, ch->id, ch->raft_addr,
			      join_change_cb);
		break;
	case JOIN_ASSIGN:
		/* libraft catches the server up before it counts as a voter. */
		rv = raft_assign(&c->raft, rc, ch->id, RAFT_VOTER,
				 join_change_cb);
		break;
	default:
		bcn_buf_init(&enc);
		ch->rec.data = ch;
		rv = cluster_cmd_encode_server(ch->name, ch->raft_addr,
					       ch->http_addr, &enc);
		if (rv == 0)
			rv = propose(c, &enc, &ch->rec, join_record_cb);
		bcn_buf_close(&enc);
		if (rv != 0)
			bcn_errf(ch->errmsg, "recording %s: %s", ch->name,
				 bcn_strerror(rv));
		return rv;
	}
	if (rv != 0) {
		bcn_errf(ch->errmsg, "%s %s: %s", join_verb[ch->step], ch->name,
			 raft_strerror(rv));
		return change_err(rv);
	}
	return 0;
}

static void join_step(struct cluster_change *ch)
{
	int rv = join_next(ch);

	if (rv != 0)
		change_done(ch, rv);
}

int cluster_join(struct cluster *c, const char *name, const char *raft_addr,
		 const char *http_addr, bool fresh, struct cluster_change *ch,
		 cluster_change_cb cb)
{
	const struct raft_server *rs;

	if (!cluster_serving(c))
		return BCN_ENOTLEADER;
	change_init(ch, c, cb, cluster_node_id(name));
	snprintf(ch->name, sizeof ch->name, "%s", name);
	snprintf(ch->raft_addr, sizeof ch->raft_addr, "%s", raft_addr);
	snprintf(ch->http_addr, sizeof ch->http_addr, "%s", http_addr);
	rs = config_find(c, ch->id);
	if (rs != NULL && strcmp(rs->address, raft_addr) != 0) {
		bcn_errf(ch->errmsg, "server %s is a member at %s, not %s",
			 name, rs->address, raft_addr);
		return BCN_EINVAL;
	}
	for (unsigned i = 0; i < c->raft.configuration.n; i++) {
		const struct raft_server *o = &c->raft.configuration.servers[i];
		if (o->id != ch->id && strcmp(o->address, raft_addr) == 0) {
			bcn_errf(ch->errmsg,
				 "address %s belongs to another "
				 "server",
				 raft_addr);
			return BCN_EINVAL;
		}
	}
	if (fresh && ch->id == c->id) {
		bcn_errf(ch->errmsg, "the leader cannot rejoin itself");
		return BCN_EINVAL;
	}
	ch->step = fresh ? JOIN_REMOVE : JOIN_ADD;
	return join_next(ch);
}

static void remove_cb(struct raft_change *req, int status)
{
	struct cluster_change *ch = req->data;

	if (status != 0)
		bcn_errf(ch->errmsg, "removing %llx: %s",
			 (unsigned long long)ch->id, raft_strerror(status));
	else
		bcn_info(MOD, "removed server %llx",
			 (unsigned long long)ch->id);
	change_done(ch, status == 0 ? 0 : change_err(status));
}

int cluster_remove(struct cluster *c, uint64_t id, struct cluster_change *ch,
		   cluster_change_cb cb)
{
	struct raft_change *rc = (struct raft_change *)ch->raft_req;
	int rv;

	if (!cluster_serving(c))
		return BCN_ENOTLEADER;
	if (config_find(c, id) == NULL)
		return BCN_ENOTFOUND;
	change_init(ch, c, cb, id);
	rc->data = ch;
	rv = raft_remove(&c->raft, rc, id, remove_cb);
	if (rv != 0) {
		bcn_errf(ch->errmsg, "removing %llx: %s",
			 (unsigned long long)id, raft_strerror(rv));
		return change_err(rv);
	}
	return 0;
}

static void transfer_cb(struct raft_transfer *req)
{
	struct cluster_change *ch = req->data;
	raft_id lid;
	const char *laddr;

	raft_leader(&ch->c->raft, &lid, &laddr);
	if (lid != 0 && lid != ch->c->id && (ch->id == 0 || lid == ch->id)) {
		change_done(ch, 0);
		return;
	}
	bcn_errf(ch->errmsg, "leadership was not transferred");
	change_done(ch, BCN_EINTERNAL);
}

int cluster_transfer(struct cluster *c, uint64_t id, struct cluster_change *ch,
		     cluster_change_cb cb)
{
	struct raft_transfer *t = (struct raft_transfer *)ch->raft_req;
	int rv;

	if (!cluster_is_leader(c))
		return BCN_ENOTLEADER;
	change_init(ch, c, cb, id);
	t->data = ch;
	rv = raft_transfer(&c->raft, t, id, transfer_cb);
	if (rv != 0) {
		bcn_errf(ch->errmsg, "transfer: %s", raft_strerror(rv));
		return change_err(rv);
	}
	return 0;
}

void cluster_record_self(struct cluster *c)
{
	if (cluster_serving(c))
		record_self(c);
}

bool cluster_fresh(struct cluster *c)
{
	return c->pristine && c->last_index == 0;
}

bool cluster_self_recorded(struct cluster *c)
{
	char raft[CLUSTER_MAX_NAME] = "", http[CLUSTER_MAX_NAME] = "";

	server_lookup(c->srv_by_name, c->node, 1, raft, sizeof raft);
	server_lookup(c->srv_by_name, c->node, 2, http, sizeof http);
	return strcmp(raft, c->raft_addr) == 0 &&
	       strcmp(http, c->http_addr) == 0;
}

/* ---- backups ------------------------------------------------------------- */

int cluster_backup(struct cluster *c, void **out, size_t *len)
{
	struct raft_buffer *bufs = NULL;
	unsigned n = 0;
	uint8_t *b;
	int rv;

	rv = fsm_snapshot(&c->fsm, &bufs, &n);
	if (rv != 0)
		return BCN_ENOMEM;
	fsm_snapshot_async(&c->fsm, &bufs, &n);
	b = bcn_malloc(bufs[0].len + bufs[1].len);
	if (b != NULL) {
		memcpy(b, bufs[0].base, bufs[0].len);
		memcpy(b + bufs[0].len, bufs[1].base, bufs[1].len);
		*out = b;
		*len = bufs[0].len + bufs[1].len;
	}
	fsm_snapshot_finalize(&c->fsm, &bufs, &n);
	return b == NULL ? BCN_ENOMEM : 0;
}

int cluster_restore(struct cluster *c, const void *buf, size_t len,
		    struct cluster_req *req, cluster_req_cb cb, char *why,
		    size_t cap)
{
	struct bcn_buf enc;
	size_t off, ilen;
	int rc;

	why[0] = '\0';
	if (!cluster_serving(c))
		return BCN_ENOTLEADER;
	rc = cluster_snapshot_verify(buf, len, &off, &ilen, NULL);
	if (rc != 0)
		return rc;
	rc = image_check(c->db, (const uint8_t *)buf + off, ilen, why, cap);
	if (rc != 0) {
		bcn_warn(MOD, "restore refused: %s", why);
		return rc;
	}
	bcn_buf_init(&enc);
	rc = cluster_cmd_encode_restore(buf, len, &enc);
	if (rc == 0)
		rc = propose(c, &enc, req, cb);
	bcn_buf_close(&enc);
	return rc;
}

/* ---- statistics ------------------------------------------------------------
 */

const double cluster_hist_bounds_ms[CLUSTER_HIST_BUCKETS - 1] = {
    0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000};

void cluster_hist_add(struct cluster_hist *h, double ms)
{
	unsigned i = 0;

	while (i < CLUSTER_HIST_BUCKETS - 1 && ms > cluster_hist_bounds_ms[i])
		i++;
	h->buckets[i]++;
	h->count++;
	h->sum_ms += ms;
}

void cluster_get_stats(struct cluster *c, struct cluster_stats *out)
{
	static const char *const names[] = {
	    [RAFT_UNAVAILABLE] = "unavailable",
	    [RAFT_FOLLOWER] = "follower",
	    [RAFT_CANDIDATE] = "candidate",
	    [RAFT_LEADER] = "leader",
	};
	int st = raft_state(&c->raft);

	memset(out, 0, sizeof *out);
	out->state = st >= 0 && st <= RAFT_LEADER ? names[st] : "unknown";
	out->term = raft_current_term(&c->raft);
	out->commit_index = raft_commit_index(&c->raft);
	out->applied_index = c->last_index;
	out->last_index = raft_last_index(&c->raft);
	out->leader_changes = c->leader_changes;
	out->apply = c->apply_hist;
	out->snapshots = c->snapshots;
	out->snapshot_last_bytes = c->snap_bytes;
	out->snapshot_last_ms = c->snap_ms;
}

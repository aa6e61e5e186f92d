/* beacon operator raft list-peers|remove-peer|transfer-leader and
 * beacon snapshot save|restore|inspect.
 *
 * A backup (GET /v1/snapshot) is Beacon's snapshot file: a 64-byte header
 * "BCNSNAP2" | u64 index | u64 term | u64 image length | XXH3-128 of the
 * image | 16 zero bytes, then the image (raft/cluster.h). The CLI checks
 * it before it writes or sends one, so that a truncated download is never
 * saved as a backup and a damaged file never reaches a server. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "client/cli.h"
#include "client/client_int.h"

#define SNAP_HEADER	    64
#define SNAPSHOT_TIMEOUT_MS 300000

static int no_args(struct cli *c, int argc)
{
	return argc > 0 ? cli_usage(c,
				    "Too many arguments (expected 0, got "
				    "%d)",
				    argc)
			: 0;
}

int cli_raft_list_peers(struct cli *c, int argc, char **argv)
{
	struct beacon_meta m = {0};
	struct cli_table t;
	json_t *root, *s;
	size_t i;
	int pos, rc;

	if (!cli_parse(c, NULL, 0, argc, argv, &pos, &rc))
		return rc;
	if ((rc = no_args(c, argc - pos)) != 0 ||
	    (rc = cli_connect(c, 10000)) != 0)
		return rc;
	rc =
	    cli_get_json(c, "/v1/operator/raft/configuration", NULL, &root, &m);
	if (rc != 0)
		return cli_fail(rc, &m,
				"Failed to retrieve raft configuration");
	if (c->json) {
		cli_print_json(root);
		return CLI_OK;
	}
	cli_table_init(&t, 6);
	cli_table_row(&t, "Node", "ID", "Address", "State", "Voter",
		      "RaftProtocol");
	json_array_foreach (json_object_get(root, "Servers"), i, s) {
		json_t *pv = json_object_get(s, "ProtocolVersion");
		char proto[32];
		if (json_is_string(pv))
			snprintf(proto, sizeof proto, "%s",
				 json_string_value(pv));
		else
			snprintf(proto, sizeof proto, "%" JSON_INTEGER_FORMAT,
				 json_integer_value(pv));
		cli_table_row(
		    &t, json_string_value(json_object_get(s, "Node")),
		    json_string_value(json_object_get(s, "ID")),
		    json_string_value(json_object_get(s, "Address")),
		    json_is_true(json_object_get(s, "Leader")) ? "leader"
							       : "follower",
		    json_is_true(json_object_get(s, "Voter")) ? "true"
							      : "false",
		    proto);
	}
	cli_table_print(&t);
	cli_table_close(&t);
	json_decref(root);
	return CLI_OK;
}

static int op_request(struct cli *c, const char *method, const char *path,
		      const char *what, const char *value,
		      struct beacon_meta *m)
{
	char *esc = value != NULL ? beacon_escape(value) : NULL, *q = NULL;
	struct beacon_req req = {.method = method, .path = path};
	int rc;

	if (value != NULL) {
		size_t n = strlen(what) + (esc != NULL ? strlen(esc) : 0) + 2;
		q = esc != NULL ? malloc(n) : NULL;
		if (q == NULL) {
			free(esc);
			return BEACON_ENOMEM;
		}
		snprintf(q, n, "%s=%s", what, esc);
		req.query = q;
	}
	rc = beacon_request(c->b, &req, NULL, NULL, m);
	free(esc);
	free(q);
	return rc;
}

int cli_raft_remove_peer(struct cli *c, int argc, char **argv)
{
	const char *id = NULL, *address = NULL;
	struct cli_flag flags[] = {
	    {"id", CLI_STR, &id, NULL, "ID", "the server's name or Raft ID"},
	    {"address", CLI_STR, &address, NULL, "HOST:PORT",
	     "the server's Raft address"},
	};
	struct beacon_meta m = {0};
	int pos, rc;

	if (!cli_parse(c, flags, N_OF(flags), argc, argv, &pos, &rc))
		return rc;
	if ((rc = no_args(c, argc - pos)) != 0)
		return rc;
	if ((id == NULL) == (address == NULL))
		return cli_usage(c, "Give exactly one of -id and -address");
	if ((rc = cli_connect(c, 30000)) != 0)
		return rc;
	rc = op_request(c, "DELETE", "/v1/operator/raft/peer",
			id != NULL ? "id" : "address",
			id != NULL ? id : address, &m);
	if (rc != 0)
		return cli_fail(rc, &m, "Failed to remove raft peer");
	if (c->json)
		cli_print_json(
		    json_pack("{s:s,s:b}", id != NULL ? "ID" : "Address",
			      id != NULL ? id : address, "Success", 1));
	else
		printf("Removed peer with %s \"%s\"\n",
		       id != NULL ? "id" : "address",
		       id != NULL ? id : address);
	return CLI_OK;
}

int cli_raft_transfer(struct cli *c, int argc, char **argv)
{
	const char *id = NULL;
	struct cli_flag flags[] = {
	    {"id", CLI_STR, &id, NULL, "ID",
	     "the server to lead (default: any other)"},
	};
	struct beacon_meta m = {0};
	int pos, rc;

	if (!cli_parse(c, flags, N_OF(flags), argc, argv, &pos, &rc))
		return rc;
	if ((rc = no_args(c, argc - pos)) != 0 ||
	    (rc = cli_connect(c, 30000)) != 0)
		return rc;
	rc = op_request(c, "POST", "/v1/operator/raft/transfer-leader", "id",
			id, &m);
	if (rc != 0)
		return cli_fail(rc, &m, "Failed to transfer leadership");
	if (c->json)
		cli_print_json(json_pack("{s:b}", "Success", 1));
	else if (id != NULL)
		printf("Success! Leadership transferred to %s\n", id);
	else
		printf("Success! Leadership transferred\n");
	return CLI_OK;
}

/* ---- snapshots -------------------------------------------------------------
 */

struct snap_info {
	uint64_t index, term, size;
	char sum[33];
};

static uint64_t be64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* Check a backup. Returns NULL if it is whole, else what is wrong. */
static const char *snap_verify(const char *buf, size_t len,
			       struct snap_info *si)
{
	const unsigned char *p = (const unsigned char *)buf;
	XXH128_canonical_t can;

	if (len < SNAP_HEADER || memcmp(p, "BCNSNAP2", 8) != 0)
		return "not a Beacon snapshot (bad header)";
	si->index = be64(p + 8);
	si->term = be64(p + 16);
	si->size = be64(p + 24);
	if (si->size != len - SNAP_HEADER)
		return "truncated or extended (length does not match)";
	XXH128_canonicalFromHash(
	    &can, XXH3_128bits(p + SNAP_HEADER, (size_t)si->size));
	if (memcmp(can.digest, p + 32, 16) != 0)
		return "corrupt (checksum does not match)";
	for (int i = 0; i < 16; i++)
		snprintf(si->sum + 2 * i, 3, "%02x", can.digest[i]);
	return NULL;
}

static int read_file(const char *path, char **buf, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || cli_read_fd(fd, buf, len) != 0) {
		fprintf(stderr, "Error! Cannot read %s: %s\n", path,
			strerror(errno));
		if (fd >= 0)
			close(fd);
		return CLI_FAIL;
	}
	close(fd);
	return 0;
}

/* Write @buf to @path through a temp file renamed into place. */
static int write_file(const char *path, const char *buf, size_t len)
{
	size_t n = strlen(path) + 16;
	char *tmp = malloc(n);
	int fd, rc = 0;

	if (tmp == NULL)
		return -1;
	snprintf(tmp, n, "%s.tmpXXXXXX", path);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		free(tmp);
		return -1;
	}
	while (len > 0 && rc == 0) {
		ssize_t w = write(fd, buf, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			rc = -1;
		else {
			buf += w;
			len -= (size_t)w;
		}
	}
	if (rc == 0 && (fsync(fd) != 0 || fchmod(fd, 0600) != 0))
		rc = -1;
	if (close(fd) != 0)
		rc = -1;
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -1;
	if (rc != 0)
		unlink(tmp);
	free(tmp);
	return rc;
}

int cli_snapshot_save(struct cli *c, int argc, char **argv)
{
	struct beacon_req req = {.path = "/v1/snapshot"};
	struct beacon_meta m = {0};
	struct snap_info si;
	const char *bad;
	char *body = NULL;
	size_t len;
	int pos, rc;

	if (!cli_parse(c, NULL, 0, argc, argv, &pos, &rc))
		return rc;
	argc -= pos;
	argv += pos;
	if (argc != 1)
		return cli_usage(c, "Expected one FILE argument, got %d", argc);
	if ((rc = cli_connect(c, SNAPSHOT_TIMEOUT_MS)) != 0)
		return rc;
	rc = beacon_request(c->b, &req, &body, &len, &m);
	if (rc != 0) {
		free(body);
		return cli_fail(rc, &m, "Failed to get snapshot");
	}
	bad = snap_verify(body, len, &si);
	if (bad != NULL) {
		free(body);
		fprintf(stderr, "Error! The snapshot received is %s\n", bad);
		return CLI_FAIL;
	}
	if (write_file(argv[0], body, len) != 0) {
		free(body);
		fprintf(stderr, "Error! Cannot write %s: %s\n", argv[0],
			strerror(errno));
		return CLI_FAIL;
	}
	free(body);
	if (c->json)
		cli_print_json(json_pack("{s:s,s:I,s:I}", "File", argv[0],
					 "Index", (json_int_t)si.index, "Size",
					 (json_int_t)len));
	else
		printf("Saved and verified snapshot to index %" PRIu64 "\n",
		       si.index);
	return CLI_OK;
}

int cli_snapshot_restore(struct cli *c, int argc, char **argv)
{
	struct beacon_req req = {
	    .method = "PUT",
	    .path = "/v1/snapshot",
	    .content_type = "application/octet-stream",
	};
	struct beacon_meta m = {0};
	struct snap_info si;
	const char *bad;
	char *buf;
	size_t len;
	int pos, rc;

	if (!cli_parse(c, NULL, 0, argc, argv, &pos, &rc))
		return rc;
	argc -= pos;
	argv += pos;
	if (argc != 1)
		return cli_usage(c, "Expected one FILE argument, got %d", argc);
	if ((rc = read_file(argv[0], &buf, &len)) != 0)
		return rc;
	bad = snap_verify(buf, len, &si);
	if (bad != NULL) {
		free(buf);
		fprintf(stderr, "Error! %s is %s; nothing was restored\n",
			argv[0], bad);
		return CLI_FAIL;
	}
	if ((rc = cli_connect(c, SNAPSHOT_TIMEOUT_MS)) != 0) {
		free(buf);
		return rc;
	}
	req.body = buf;
	req.body_len = len;
	rc = beacon_request(c->b, &req, NULL, NULL, &m);
	free(buf);
	if (rc != 0)
		return cli_fail(rc, &m, "Error restoring snapshot");
	if (c->json)
		cli_print_json(json_pack("{s:b,s:I}", "Success", 1, "Index",
					 (json_int_t)si.index));
	else
		printf("Restored snapshot\n");
	return CLI_OK;
}

int cli_snapshot_inspect(struct cli *c, int argc, char **argv)
{
	struct snap_info si;
	const char *bad;
	char *buf, id[64];
	size_t len;
	int pos, rc;

	if (!cli_parse(c, NULL, 0, argc, argv, &pos, &rc))
		return rc;
	argc -= pos;
	argv += pos;
	if (argc != 1)
		return cli_usage(c, "Expected one FILE argument, got %d", argc);
	if ((rc = read_file(argv[0], &buf, &len)) != 0)
		return rc;
	bad = snap_verify(buf, len, &si);
	free(buf);
	if (bad != NULL) {
		fprintf(stderr, "Error! %s is %s\n", argv[0], bad);
		return CLI_FAIL;
	}
	snprintf(id, sizeof id, "%" PRIu64 "-%" PRIu64 "-%.8s", si.term,
		 si.index, si.sum);
	if (c->json) {
		cli_print_json(json_pack(
		    "{s:s,s:I,s:I,s:I,s:i,s:s}", "ID", id, "Size",
		    (json_int_t)len, "Index", (json_int_t)si.index, "Term",
		    (json_int_t)si.term, "Version", 2, "Checksum", si.sum));
		return CLI_OK;
	}
	printf(" %-13s%s\n", "ID", id);
	printf(" %-13s%zu\n", "Size", len);
	printf(" %-13s%" PRIu64 "\n", "Index", si.index);
	printf(" %-13s%" PRIu64 "\n", "Term", si.term);
	printf(" %-13s%d\n", "Version", 2);
	printf(" %-13sxxh3-128:%s\n", "Checksum", si.sum);
	return CLI_OK;
}

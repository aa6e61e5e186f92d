/* Fuzz the DNS lookup (dns/lookup.h): the whole path from a datagram to a
 * reply, over a small fixed catalog in an in-memory SQLite database.
 *
 * The input is a query as it arrives over UDP or TCP (without the TCP
 * length prefix). The low bits of its ID choose the transport and one of
 * four configurations (TC on or off, a recursor or none, only passing
 * instances or not), so that every corpus file of DNS queries is a valid
 * input; rcode bits 0xf (meaningless in a query) change the catalog first.
 * Whatever comes in: DROP writes nothing; FORWARD only with a recursor; a reply
 * stays within the size limit (512 bytes without EDNS0 over UDP,
 * DNS_LOOKUP_UDP_MAX with it, 65535 over TCP), carries the query's ID with QR
 * set, and reads back record by record with its counts matching and nothing
 * left over. */
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns/lookup.h"
#include "dns/wire.h"
#include "health/catalog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                           \
	do {                                                               \
		if (!(x)) {                                                \
			fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, \
				#x);                                       \
			abort();                                           \
		}                                                          \
	} while (0)

#define N_CONFIGS 4

static sqlite3 *db;
static struct cat_store *store;
static struct dns_lookup *lookups[N_CONFIGS];
static uint8_t out[DNS_MAX_MSG];
static uint64_t rng_state = 88172645463325252ULL;
static uint64_t next_index = 1;

static uint64_t rng(void *data)
{
	uint64_t *s = data;

	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void apply(struct cat_op *op)
{
	struct cat_result res;

	CHECK(cat_apply(store, op, 1, next_index++, &res) == 0 && res.ok);
}

static void node(const char *name, const char *address, const char *meta,
		 size_t meta_len)
{
	struct cat_op op = {.verb = CAT_NODE_SET};

	op.node.name = name;
	op.node.id = "";
	op.node.address = address;
	op.node.meta = (struct cat_strs){meta, meta_len};
	apply(&op);
}

static void service(const char *node_name, const char *id, const char *name,
		    const char *address, uint32_t port, const char *tags,
		    size_t tags_len)
{
	struct cat_op op = {.verb = CAT_SERVICE_SET};

	op.svc.node = node_name;
	op.svc.id = id;
	op.svc.name = name;
	op.svc.kind = "";
	op.svc.address = address;
	op.svc.port = port;
	op.svc.tags = (struct cat_strs){tags, tags_len};
	op.svc.weight_passing = 3;
	op.svc.weight_warning = 1;
	apply(&op);
}

static void check(const char *node_name, const char *id, const char *svc_id,
		  enum cat_status status)
{
	struct cat_op op = {.verb = CAT_CHECK_SET};

	op.chk.node = node_name;
	op.chk.id = id;
	op.chk.name = id;
	op.chk.status = status;
	op.chk.notes = "";
	op.chk.output = "";
	op.chk.service_id = svc_id;
	op.chk.type = "ttl";
	apply(&op);
}

/* The catalog: a few services in every state, names with dots and odd
 * bytes, IPv6 and host-name addresses, and "many" with 40 instances for the
 * truncation paths. */
static void fill(void)
{
	static const char meta[] = "env\0prod\0a=b\0c\0rfc1035-x\0raw";

	node("n1", "10.0.0.1", meta, sizeof meta);
	node("n2", "10.0.0.2", NULL, 0);
	node("n3", "fd00::3", NULL, 0);
	node("web.a", "10.0.0.9", NULL, 0);
	node("Odd Node\\x", "10.0.0.10", NULL, 0);
	node("ext", "db.example.com", NULL, 0);
	service("n1", "web-1", "web", "", 80, "primary\0v1.2", 13);
	service("n2", "web-2", "web", "", 80, "secondary", 10);
	service("n3", "web-3", "web", "10.0.0.33", 81, NULL, 0);
	service("n3", "web-4", "Web", "fd00::4", 82, NULL, 0);
	service("n1", "api-1", "api", "api.example.com", 9000, NULL, 0);
	service("ext", "ext-1", "ext", "", 1, NULL, 0);
	service("web.a", "dot-1", "dot", "", 2, NULL, 0);
	service("Odd Node\\x", "odd-1", "odd", "", 3, NULL, 0);
	service("n2", "db-1", "db", "", 5432, NULL, 0);
	check("n2", "db-ttl", "db-1", CAT_CRITICAL);
	check("n3", "web-3-ttl", "web-3", CAT_WARNING);
	check("n1", "serfHealth", "", CAT_PASSING);
	service("n1", "consul", "consul", "", 8300, NULL, 0);
	service("n2", "consul", "consul", "", 8300, NULL, 0);
	for (int i = 0; i < 40; i++) {
		char name[16], addr[16], id[16];

		snprintf(name, sizeof name, "m%02d", i);
		snprintf(addr, sizeof addr, "10.3.0.%d", i + 1);
		snprintf(id, sizeof id, "many-%d", i);
		node(name, addr, NULL, 0);
		service(name, id, "many", "", (uint32_t)(1000 + i), NULL, 0);
	}
}

static void init(void)
{
	char errmsg[BCN_ERRMSG_LEN] = "";

	CHECK(sqlite3_open(":memory:", &db) == SQLITE_OK);
	CHECK(cat_store_open(&store, db, errmsg) == 0);
	fill();
	for (int i = 0; i < N_CONFIGS; i++) {
		struct dns_lookup_config c = {
		    .domain = "consul",
		    .alt_domain = i % 2 == 0 ? "alt.test" : "",
		    .datacenter = "dc1",
		    .enable_truncate = (i & 1) == 0,
		    .recursor = (i & 2) != 0,
		    .only_passing = i == 3,
		    .udp_answer_limit = i == 1 ? 100 : 3,
		    .node_ttl = 30,
		    .service_ttl = "web=10s,a*=5s,*=1s",
		};

		CHECK(dns_lookup_new(&lookups[i], &c, errmsg) == 0);
	}
}

/* The reply reads back whole: the header as said, every record framed,
 * nothing after the last. */
static void check_reply(const uint8_t *q, size_t qlen, size_t len, size_t limit)
{
	struct dns_reader r;
	struct dns_header h;
	struct dns_rr_view rr;
	struct dns_question question;
	int rc;

	CHECK(len >= DNS_HEADER_LEN && len <= limit);
	CHECK(dns_reader_init(&r, &h, out, len) == 0);
	CHECK(h.flags & DNS_FLAG_QR);
	CHECK(qlen >= 2 && h.id == (uint16_t)(q[0] << 8 | q[1]));
	CHECK(h.count[DNS_SEC_QUESTION] <= 1);
	if (h.count[DNS_SEC_QUESTION] == 1)
		CHECK(dns_reader_question(&r, &question) == 0);
	while ((rc = dns_reader_rr(&r, &rr)) == 0)
		;
	CHECK(rc == BCN_ENOTFOUND);
	CHECK(dns_reader_trailing(&r) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dns_lookup_req req = {
	    .msg = data,
	    .len = size,
	    .now = 1700000000u,
	    .rand = rng,
	    .rand_data = &rng_state,
	};
	unsigned sel = size >= 2 ? data[1] : 0;
	unsigned cfg = sel % N_CONFIGS;
	struct dns_query q;
	enum dns_action act;
	size_t len = 1, limit;

	if (db == NULL)
		init();
	/* Rcode bits 0xf in a query (ignored otherwise): the catalog changes
	 * first, so that the lookup's caches are rebuilt under the fuzzer. */
	if (size >= 4 && (data[3] & 0x0f) == 0x0f) {
		static bool critical;

		critical = !critical;
		check("n3", "web-3-ttl", "web-3",
		      critical ? CAT_CRITICAL : CAT_WARNING);
		if (data[3] & 0x10)
			node("n2", critical ? "10.0.0.2" : "fd00::2", NULL, 0);
	}
	req.tcp = (sel & 4) != 0;
	act =
	    dns_lookup_answer(lookups[cfg], store, &req, out, sizeof out, &len);
	limit = req.tcp ? DNS_MAX_MSG : DNS_LOOKUP_UDP_MAX;
	if (!req.tcp && dns_query_parse(&q, data, size) == 0 &&
	    (!q.edns.present || q.edns.udp_size <= DNS_MAX_UDP))
		limit = DNS_MAX_UDP;
	switch (act) {
	case DNS_ACT_DROP:
		CHECK(len == 0);
		break;
	case DNS_ACT_FORWARD:
		CHECK(len == 0);
		CHECK((cfg & 2) != 0);
		break;
	case DNS_ACT_REPLY:
		check_reply(data, size, len, limit);
		break;
	default:
		CHECK(!"unknown action");
	}
	/* A second catalog handle of NULL: SERVFAIL, never a crash. */
	if (size > 0 && data[size - 1] == 0x5a) {
		act = dns_lookup_answer(lookups[cfg], NULL, &req, out,
					sizeof out, &len);
		CHECK(act != DNS_ACT_FORWARD || (cfg & 2) != 0);
	}
	return 0;
}

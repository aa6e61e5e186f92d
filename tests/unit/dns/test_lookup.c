/* Unit tests for dns/lookup.c over an in-memory catalog: every name form
 * and query type, NXDOMAIN/NODATA with the SOA, health filtering, the
 * shuffle, truncation (UDP, EDNS0 sizes, the answer limit, TCP), TTL rules,
 * case, the alternate domain, bad configurations, and every allocation
 * failure of a lookup. The answer cache: every answer the same bytes as a
 * lookup without one gives, with the same random draws (the ID and the
 * name's case patched in, EDNS, DO, client subnet, sizes and transports
 * apart), dropped by any catalog change or a new second for the SOA,
 * shuffled orders kept uniform, bounded, and right under every allocation
 * failure. */
#include <arpa/inet.h>
#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "dns/cache.h"
#include "dns/lookup.h"
#include "dns/wire.h"
#include "health/catalog.h"
#include "tests/lib/fault_alloc.h"
#include "tests/lib/unit_run.h"

#define N_OF(a)	  (sizeof(a) / sizeof((a)[0]))
#define STRS(lit) ((struct cat_strs){(lit), sizeof(lit) - 1})
#define NOW	  1700000000u
#define LONG_A	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define LONG_B	  "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define LONG_C	  "ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
#define LONG_D	  "ddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"

/* Fixture: setup() opens ":memory:", the store and a lookup with the
 * default configuration; teardown() closes them. */
static sqlite3 *db;
static struct cat_store *store;
static struct dns_lookup *lk;
static uint64_t index_at = 1;
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint32_t ask_now = NOW; /* req.now of ask_raw() */
static uint64_t ask_version;   /* req.version of ask_raw() */

static struct dns_lookup_config default_config(void)
{
	return (struct dns_lookup_config){
	    .domain = "consul",
	    .alt_domain = "",
	    .datacenter = "dc1",
	    .enable_truncate = true,
	    .udp_answer_limit = 3,
	};
}

static void relookup(const struct dns_lookup_config *c)
{
	char errmsg[BCN_ERRMSG_LEN] = "";

	dns_lookup_free(lk);
	lk = NULL;
	ck_assert_msg(dns_lookup_new(&lk, c, errmsg) == 0, "%s", errmsg);
}

static void setup(void)
{
	char errmsg[BCN_ERRMSG_LEN] = "";
	struct dns_lookup_config c = default_config();

	fault_alloc_fail_at(-1);
	ask_now = NOW;
	ask_version = 0;
	ck_assert_int_eq(sqlite3_open(":memory:", &db), SQLITE_OK);
	ck_assert_msg(cat_store_open(&store, db, errmsg) == 0, "%s", errmsg);
	relookup(&c);
}

static void teardown(void)
{
	fault_alloc_fail_at(-1);
	dns_lookup_free(lk);
	lk = NULL;
	cat_store_close(store);
	store = NULL;
	ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
	db = NULL;
}

/* ---- catalog helpers ----------------------------------------------------- */

static void apply(const struct cat_op *ops, size_t n)
{
	struct cat_result res;

	ck_assert_int_eq(cat_apply(store, ops, n, ++index_at, &res), 0);
	ck_assert_msg(res.ok, "%s", res.what);
}

static void add_node(const char *name, const char *address)
{
	struct cat_op op = {.verb = CAT_NODE_SET};

	op.node.name = name;
	op.node.id = "";
	op.node.address = address;
	apply(&op, 1);
}

static void add_node_meta(const char *name, const char *address,
			  struct cat_strs meta)
{
	struct cat_op op = {.verb = CAT_NODE_SET};

	op.node.name = name;
	op.node.id = "";
	op.node.address = address;
	op.node.meta = meta;
	apply(&op, 1);
}

static void add_svc_full(const char *node, const char *id, const char *name,
			 const char *address, uint32_t port,
			 struct cat_strs tags, uint32_t wp, uint32_t ww)
{
	struct cat_op op = {.verb = CAT_SERVICE_SET};

	op.svc.node = node;
	op.svc.id = id;
	op.svc.name = name;
	op.svc.kind = "";
	op.svc.address = address;
	op.svc.port = port;
	op.svc.tags = tags;
	op.svc.weight_passing = wp;
	op.svc.weight_warning = ww;
	apply(&op, 1);
}

static void add_svc(const char *node, const char *id, const char *name,
		    uint32_t port)
{
	add_svc_full(node, id, name, "", port, (struct cat_strs){0}, 1, 1);
}

static void del_svc(const char *node, const char *id)
{
	struct cat_op op = {.verb = CAT_SERVICE_DELETE};

	op.svc.node = node;
	op.svc.id = id;
	apply(&op, 1);
}

/* A check named after its id; @svc_id "" for a node-level check. */
static void set_check(const char *node, const char *id, const char *svc_id,
		      enum cat_status status, const char *type)
{
	struct cat_op op = {.verb = CAT_CHECK_SET};

	op.chk.node = node;
	op.chk.id = id;
	op.chk.name = id;
	op.chk.status = status;
	op.chk.notes = "";
	op.chk.output = "";
	op.chk.service_id = svc_id;
	op.chk.type = type;
	apply(&op, 1);
}

/* The fixed catalog of most tests:
 *   n1 10.0.0.1: web-1 web:80 [primary, v1.2], api-1 Api:9000
 *   n2 10.0.0.2: web-2 web:80 [secondary]
 *   n3 fd00::3:  web-3 web:81, own address 10.0.0.33, weights 7/2
 *   n4 10.0.0.4: db-1 db:5432, its own check critical
 *   Consul servers s1 s2 (127.0.0.1, .2) with serfHealth passing. */
static void fill(void)
{
	add_node("n1", "10.0.0.1");
	add_node("n2", "10.0.0.2");
	add_node("n3", "fd00::3");
	add_node("n4", "10.0.0.4");
	add_svc_full("n1", "web-1", "web", "", 80, STRS("primary\0v1.2"), 1, 1);
	add_svc_full("n2", "web-2", "web", "", 80, STRS("secondary"), 1, 1);
	add_svc_full("n3", "web-3", "web", "10.0.0.33", 81,
		     (struct cat_strs){0}, 7, 2);
	add_svc("n1", "api-1", "Api", 9000);
	add_svc("n4", "db-1", "db", 5432);
	set_check("n4", "db-alive", "db-1", CAT_CRITICAL, "ttl");
	add_node("s1", "127.0.0.1");
	add_node("s2", "127.0.0.2");
	add_svc("s1", "consul", CAT_SERVER_SVC, 8300);
	add_svc("s2", "consul", CAT_SERVER_SVC, 8300);
	set_check("s1", CAT_NODE_CHECK, "", CAT_PASSING, "");
	set_check("s2", CAT_NODE_CHECK, "", CAT_PASSING, "");
}

/* ---- queries and responses ----------------------------------------------- */

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* A query for @name/@qtype; @edns < 0: no OPT, else its UDP size. */
static size_t mkquery(uint8_t *buf, const char *name, uint16_t qtype, int edns,
		      uint8_t edns_version)
{
	struct dns_name n;
	size_t o = DNS_HEADER_LEN;

	memset(buf, 0, DNS_HEADER_LEN);
	put16(buf, 0x1234);
	put16(buf + 2, DNS_FLAG_RD);
	put16(buf + 4, 1);
	put16(buf + 10, edns >= 0 ? 1 : 0);
	ck_assert_msg(dns_name_from_text(&n, name, strlen(name)) == 0, "%s",
		      name);
	memcpy(buf + o, n.data, n.len);
	o += n.len;
	put16(buf + o, qtype);
	put16(buf + o + 2, DNS_CLASS_IN);
	o += 4;
	if (edns >= 0) {
		buf[o] = 0;
		put16(buf + o + 1, DNS_TYPE_OPT);
		put16(buf + o + 3, (uint16_t)edns);
		buf[o + 5] = 0;
		buf[o + 6] = edns_version;
		put16(buf + o + 7, 0);
		put16(buf + o + 9, 0);
		o += 11;
	}
	return o;
}

struct rr {
	int sec;
	char owner[DNS_MAX_TEXT + 1];
	uint16_t type;
	uint32_t ttl;
	char data[1400];
};

struct resp {
	enum dns_action act;
	uint8_t msg[DNS_MAX_MSG];
	size_t len;
	struct dns_header hdr;
	unsigned rcode;
	bool aa, tc, ra;
	size_t n;
	struct rr rr[1200];
	bool edns;
	uint16_t edns_size;
	unsigned ext_rcode;
	bool edns_do;
};

static struct resp R; /* big: static */

static void name_at(const struct resp *r, size_t off, char *out)
{
	struct dns_name n;
	size_t len;

	ck_assert_int_eq(dns_name_unpack(&n, r->msg, r->len, &off), 0);
	ck_assert_int_eq(dns_name_to_text(&n, out, DNS_MAX_TEXT + 1, &len), 0);
}

static void decode(struct resp *r)
{
	struct dns_reader rd;
	struct dns_question q;
	struct dns_rr_view v;
	int rc;

	r->n = 0;
	r->edns = false;
	ck_assert_int_eq(dns_reader_init(&rd, &r->hdr, r->msg, r->len), 0);
	r->rcode = r->hdr.rcode;
	r->aa = (r->hdr.flags & DNS_FLAG_AA) != 0;
	r->tc = (r->hdr.flags & DNS_FLAG_TC) != 0;
	r->ra = (r->hdr.flags & DNS_FLAG_RA) != 0;
	ck_assert(r->hdr.flags & DNS_FLAG_QR);
	if (r->hdr.count[DNS_SEC_QUESTION] > 0)
		ck_assert_int_eq(dns_reader_question(&rd, &q), 0);
	while ((rc = dns_reader_rr(&rd, &v)) == 0) {
		struct rr *x = &r->rr[r->n];
		const uint8_t *p = r->msg + v.rdoff;
		size_t len;

		if (v.type == DNS_TYPE_OPT) {
			r->edns = true;
			r->edns_size = v.rclass;
			r->ext_rcode = v.ttl >> 24;
			r->edns_do = (v.ttl & 0x8000) != 0;
			continue;
		}
		ck_assert_uint_lt(r->n, N_OF(r->rr));
		x->sec = (int)v.section;
		x->type = v.type;
		x->ttl = v.ttl;
		ck_assert_int_eq(
		    dns_name_to_text(&v.owner, x->owner, sizeof x->owner, &len),
		    0);
		x->data[0] = '\0';
		switch (v.type) {
		case DNS_TYPE_A:
			ck_assert_int_eq(v.rdlen, 4);
			inet_ntop(AF_INET, p, x->data, sizeof x->data);
			break;
		case DNS_TYPE_AAAA:
			ck_assert_int_eq(v.rdlen, 16);
			inet_ntop(AF_INET6, p, x->data, sizeof x->data);
			break;
		case DNS_TYPE_SRV: {
			char t[DNS_MAX_TEXT + 1];

			name_at(r, v.rdoff + 6, t);
			snprintf(x->data, sizeof x->data, "%u %u %u %s",
				 get16(p), get16(p + 2), get16(p + 4), t);
			break;
		}
		case DNS_TYPE_CNAME:
		case DNS_TYPE_PTR:
		case DNS_TYPE_NS:
			name_at(r, v.rdoff, x->data);
			break;
		case DNS_TYPE_TXT: {
			size_t o = 0, i = 0;

			while (i < v.rdlen) {
				size_t l = p[i++];

				ck_assert_uint_le(i + l, v.rdlen);
				memcpy(x->data + o, p + i, l);
				o += l;
				i += l;
			}
			x->data[o] = '\0';
			break;
		}
		case DNS_TYPE_SOA: {
			struct dns_name a, b;
			size_t off = v.rdoff;
			char ta[DNS_MAX_TEXT + 1], tb[DNS_MAX_TEXT + 1];
			size_t l1, l2;

			ck_assert_int_eq(
			    dns_name_unpack(&a, r->msg, r->len, &off), 0);
			ck_assert_int_eq(
			    dns_name_unpack(&b, r->msg, r->len, &off), 0);
			ck_assert_int_eq(
			    dns_name_to_text(&a, ta, sizeof ta, &l1), 0);
			ck_assert_int_eq(
			    dns_name_to_text(&b, tb, sizeof tb, &l2), 0);
			p = r->msg + off;
			snprintf(
			    x->data, sizeof x->data, "%s %s %u %u %u %u %u", ta,
			    tb, (unsigned)(get16(p) << 16 | get16(p + 2)),
			    (unsigned)(get16(p + 4) << 16 | get16(p + 6)),
			    (unsigned)(get16(p + 8) << 16 | get16(p + 10)),
			    (unsigned)(get16(p + 12) << 16 | get16(p + 14)),
			    (unsigned)(get16(p + 16) << 16 | get16(p + 18)));
			break;
		}
		default:
			break;
		}
		r->n++;
	}
	ck_assert_int_eq(rc, BCN_ENOTFOUND);
	ck_assert_uint_eq(dns_reader_trailing(&rd), 0);
}

static uint64_t rng(void *data)
{
	uint64_t *s = data;

	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static enum dns_action ask_raw(const uint8_t *q, size_t qlen, bool tcp,
			       size_t cap)
{
	struct dns_lookup_req req = {
	    .msg = q,
	    .len = qlen,
	    .tcp = tcp,
	    .now = ask_now,
	    .rand = rng,
	    .rand_data = &rng_state,
	    .version = ask_version,
	};

	R.act = dns_lookup_answer(lk, store, &req, R.msg, cap, &R.len);
	if (R.act == DNS_ACT_REPLY)
		decode(&R);
	else
		ck_assert_uint_eq(R.len, 0);
	return R.act;
}

/* Ask @name/@qtype over UDP (@tcp false) or TCP; @edns as mkquery(). */
static struct resp *ask_opt(const char *name, uint16_t qtype, int edns,
			    bool tcp)
{
	uint8_t q[600];
	size_t len = mkquery(q, name, qtype, edns, 0);

	ck_assert_int_eq(ask_raw(q, len, tcp, sizeof R.msg), DNS_ACT_REPLY);
	ck_assert_int_eq(R.hdr.id, 0x1234);
	ck_assert(R.hdr.flags & DNS_FLAG_RD); /* copied */
	if (!tcp)
		ck_assert_uint_le(R.len, edns > 512 ? (size_t)edns : 512);
	return &R;
}

static struct resp *ask(const char *name, uint16_t qtype)
{
	return ask_opt(name, qtype, -1, false);
}

static size_t count(const struct resp *r, int sec, uint16_t type)
{
	size_t n = 0;

	for (size_t i = 0; i < r->n; i++)
		n += r->rr[i].sec == sec && r->rr[i].type == type;
	return n;
}

static size_t count_sec(const struct resp *r, int sec)
{
	size_t n = 0;

	for (size_t i = 0; i < r->n; i++)
		n += r->rr[i].sec == sec;
	return n;
}

/* The record of @sec and @type whose data is @data, or NULL. */
static const struct rr *find(const struct resp *r, int sec, uint16_t type,
			     const char *data)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->rr[i].sec == sec && r->rr[i].type == type &&
		    strcmp(r->rr[i].data, data) == 0)
			return &r->rr[i];
	return NULL;
}

static bool has(const struct resp *r, int sec, uint16_t type, const char *data)
{
	return find(r, sec, type, data) != NULL;
}

/* NXDOMAIN or NODATA: the SOA alone, in the authority section. */
static void assert_negative(const struct resp *r, unsigned rcode,
			    const char *zone)
{
	char soa[300];

	ck_assert_uint_eq(r->rcode, rcode);
	ck_assert(r->aa);
	ck_assert_uint_eq(count_sec(r, DNS_SEC_ANSWER), 0);
	ck_assert_uint_eq(count_sec(r, DNS_SEC_AUTHORITY), 1);
	ck_assert_uint_eq(count(r, DNS_SEC_AUTHORITY, DNS_TYPE_SOA), 1);
	snprintf(soa, sizeof soa, "ns.%s hostmaster.%s %u 3600 600 86400 0",
		 zone, zone, NOW);
	ck_assert_msg(has(r, DNS_SEC_AUTHORITY, DNS_TYPE_SOA, soa), "%s",
		      r->rr[0].data);
	ck_assert_str_eq(r->rr[0].owner, zone);
}

/* ---- services ------------------------------------------------------------ */

START_TEST(service_srv)
{
	struct resp *r;

	fill();
	r = ask("web.service.consul", DNS_TYPE_SRV);
	ck_assert_uint_eq(r->rcode, DNS_RCODE_NOERROR);
	ck_assert(r->aa);
	ck_assert(!r->tc);
	ck_assert(!r->ra);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_SRV), 3);
	ck_assert(
	    has(r, DNS_SEC_ANSWER, DNS_TYPE_SRV, "1 1 80 n1.node.dc1.consul"));
	ck_assert(
	    has(r, DNS_SEC_ANSWER, DNS_TYPE_SRV, "1 1 80 n2.node.dc1.consul"));
	/* Its own address: the addr form, and the Passing weight. */
	ck_assert(has(r, DNS_SEC_ANSWER, DNS_TYPE_SRV,
		      "1 7 81 0a000021.addr.dc1.consul"));
	ck_assert_str_eq(r->rr[0].owner, "web.service.consul");
	/* The additional section: the address of each target. */
	ck_assert_uint_eq(count_sec(r, DNS_SEC_ADDITIONAL), 3);
	ck_assert_str_eq(
	    find(r, DNS_SEC_ADDITIONAL, DNS_TYPE_A, "10.0.0.1")->owner,
	    "n1.node.dc1.consul");
	ck_assert_str_eq(
	    find(r, DNS_SEC_ADDITIONAL, DNS_TYPE_A, "10.0.0.2")->owner,
	    "n2.node.dc1.consul");
	ck_assert_str_eq(
	    find(r, DNS_SEC_ADDITIONAL, DNS_TYPE_A, "10.0.0.33")->owner,
	    "0a000021.addr.dc1.consul");
	ck_assert_uint_eq(r->rr[0].ttl, 0);
}
END_TEST

START_TEST(service_a_aaaa_any)
{
	struct resp *r;

	fill();
	r = ask("web.service.consul", DNS_TYPE_A);
	ck_assert_uint_eq(r->rcode, DNS_RCODE_NOERROR);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_A), 3);
	ck_assert(has(r, DNS_SEC_ANSWER, DNS_TYPE_A, "10.0.0.1"));
	ck_assert(has(r, DNS_SEC_ANSWER, DNS_TYPE_A, "10.0.0.2"));
	ck_assert(has(r, DNS_SEC_ANSWER, DNS_TYPE_A, "10.0.0.33"));
	ck_assert_uint_eq(count_sec(r, DNS_SEC_ADDITIONAL), 0);

	/* An IPv6 node whose service has an IPv4 address of its own. */
	add_svc("n3", "web-4", "web6", 82);
	r = ask("web6.service.consul", DNS_TYPE_AAAA);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_AAAA), 1);
	ck_assert(has(r, DNS_SEC_ANSWER, DNS_TYPE_AAAA, "fd00::3"));
	r = ask("web6.service.consul", DNS_TYPE_SRV);
	ck_assert(has(r, DNS_SEC_ADDITIONAL, DNS_TYPE_AAAA, "fd00::3"));
	/* NODATA: the name exists, not the type. */
	assert_negative(ask("web6.service.consul", DNS_TYPE_A),
			DNS_RCODE_NOERROR, "consul");
	assert_negative(ask("web.service.consul", DNS_TYPE_AAAA),
			DNS_RCODE_NOERROR, "consul");
	assert_negative(ask("web.service.consul", DNS_TYPE_TXT),
			DNS_RCODE_NOERROR, "consul");
	assert_negative(ask("web.service.consul", DNS_TYPE_MX),
			DNS_RCODE_NOERROR, "consul");

	add_svc("n1", "mix-1", "mix", 1);
	add_svc("n3", "mix-3", "mix", 1);
	r = ask("mix.service.consul", DNS_TYPE_ANY);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_A), 1);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_AAAA), 1);
}
END_TEST

START_TEST(service_dedupes_addresses)
{
	struct resp *r;

	add_node("n1", "10.0.0.1");
	add_svc("n1", "a", "web", 80);
	add_svc("n1", "b", "web", 81);
	add_svc("n1", "c", "web", 80);
	r = ask("web.service.consul", DNS_TYPE_A);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_A), 1);
	/* One SRV per node, address and port; one A for the two targets. */
	r = ask("web.service.consul", DNS_TYPE_SRV);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_SRV), 2);
	ck_assert_uint_eq(count(r, DNS_SEC_ADDITIONAL, DNS_TYPE_A), 1);
}
END_TEST

START_TEST(service_hostname_address)
{
	struct resp *r;

	add_node("n1", "10.0.0.1");
	add_svc_full("n1", "ext", "ext", "db.example.com", 5432,
		     (struct cat_strs){0}, 1, 1);
	r = ask("ext.service.consul", DNS_TYPE_SRV);
	ck_assert(
	    has(r, DNS_SEC_ANSWER, DNS_TYPE_SRV, "1 1 5432 db.example.com"));
	ck_assert_uint_eq(count_sec(r, DNS_SEC_ADDITIONAL), 0);
	r = ask("ext.service.consul", DNS_TYPE_A);
	ck_assert_uint_eq(r->n, 1);
	ck_assert(has(r, DNS_SEC_ANSWER, DNS_TYPE_CNAME, "db.example.com"));
}
END_TEST

START_TEST(service_tags)
{
	struct resp *r;

	fill();
	r = ask("primary.web.service.consul", DNS_TYPE_SRV);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_SRV), 1);
	ck_assert(
	    has(r, DNS_SEC_ANSWER, DNS_TYPE_SRV, "1 1 80 n1.node.dc1.consul"));
	/* A tag with a dot: every label left of the service. */
	r = ask("v1.2.web.service.consul", DNS_TYPE_A);
	ck_assert_uint_eq(r->n, 1);
	ck_assert(has(r, DNS_SEC_ANSWER, DNS_TYPE_A, "10.0.0.1"));
	r = ask("SECONDARY.web.service.consul", DNS_TYPE_A);
	ck_assert(has(r, DNS_SEC_ANSWER, DNS_TYPE_A, "10.0.0.2"));
	assert_negative(ask("nope.web.service.consul", DNS_TYPE_SRV),
			DNS_RCODE_NXDOMAIN, "consul");
}
END_TEST

START_TEST(service_rfc2782)
{
	static const char *const names[] = {
	    "_web._tcp.service.consul",
	    "_web._tcp.service.dc1.consul",
	    "_web._tcp.consul",
	    "_web._tcp.dc1.consul",
	};
	struct resp *r;

	fill();
	for (size_t i = 0; i < N_OF(names); i++) {
		r = ask(names[i], DNS_TYPE_SRV);
		ck_assert_msg(count(r, DNS_SEC_ANSWER, DNS_TYPE_SRV) == 3, "%s",
			      names[i]);
		ck_assert_str_eq(r->rr[0].owner, names[i]);
	}
	r = ask("_web._primary.service.consul", DNS_TYPE_SRV);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_SRV), 1);
	ck_assert(
	    has(r, DNS_SEC_ANSWER, DNS_TYPE_SRV, "1 1 80 n1.node.dc1.consul"));
	assert_negative(ask("_web._udp.service.consul", DNS_TYPE_SRV),
			DNS_RCODE_NXDOMAIN, "consul");
	assert_negative(ask("_nope._tcp.service.consul", DNS_TYPE_SRV),
			DNS_RCODE_NXDOMAIN, "consul");
	assert_negative(ask("_web._tcp.dc2.consul", DNS_TYPE_SRV),
			DNS_RCODE_NXDOMAIN, "consul");
}
END_TEST

START_TEST(service_datacenters)
{
	fill();
	ck_assert_uint_eq(count(ask("web.service.dc1.consul", DNS_TYPE_A),
				DNS_SEC_ANSWER, DNS_TYPE_A),
			  3);
	ck_assert_uint_eq(count(ask("web.service.DC1.dc.consul", DNS_TYPE_A),
				DNS_SEC_ANSWER, DNS_TYPE_A),
			  3);
	assert_negative(ask("web.service.dc2.consul", DNS_TYPE_A),
			DNS_RCODE_NXDOMAIN, "consul");
	assert_negative(ask("web.service.dc1.x.consul", DNS_TYPE_A),
			DNS_RCODE_NXDOMAIN, "consul");
	assert_negative(ask("nope.service.consul", DNS_TYPE_SRV),
			DNS_RCODE_NXDOMAIN, "consul");
	assert_negative(ask("web.nothing.consul", DNS_TYPE_SRV),
			DNS_RCODE_NXDOMAIN, "consul");
	assert_negative(ask("x.query.consul", DNS_TYPE_SRV), DNS_RCODE_NXDOMAIN,
			"consul");
	/* Names that lead to names exist: NODATA, not NXDOMAIN (RFC 8020). */
	assert_negative(ask("service.consul", DNS_TYPE_A), DNS_RCODE_NOERROR,
			"consul");
	assert_negative(ask("node.dc1.consul", DNS_TYPE_A), DNS_RCODE_NOERROR,
			"consul");
	assert_negative(ask("dc1.consul", DNS_TYPE_A), DNS_RCODE_NOERROR,
			"consul");
}
END_TEST

START_TEST(service_case_insensitive)
{
	struct resp *r;

	fill();
	r = ask("WeB.SeRvIcE.CoNsUl", DNS_TYPE_SRV);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_SRV), 3);
	/* The owner keeps the question's spelling (0x20 resolvers). */
	ck_assert_str_eq(r->rr[0].owner, "WeB.SeRvIcE.CoNsUl");
	/* The catalog spells it "Api". */
	r = ask("api.service.consul", DNS_TYPE_A);
	ck_assert(has(r, DNS_SEC_ANSWER, DNS_TYPE_A, "10.0.0.1"));
	/* Registered later: the name cache follows the catalog. */
	add_svc("n2", "api-2", "API", 9000);
	r = ask("api.service.consul", DNS_TYPE_A);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_A), 2);
	del_svc("n1", "api-1");
	del_svc("n2", "api-2");
	assert_negative(ask("api.service.consul", DNS_TYPE_A),
			DNS_RCODE_NXDOMAIN, "consul");
}
END_TEST

/* ---- health -------------------------------------------------------------- */

START_TEST(health_filtering)
{
	struct resp *r;

	fill();
	/* db's only instance is critical: as if it did not exist. */
	assert_negative(ask("db.service.consul", DNS_TYPE_A),
			DNS_RCODE_NXDOMAIN, "consul");
	set_check("n4", "db-alive", "db-1", CAT_PASSING, "ttl");
	ck_assert_uint_eq(ask("db.service.consul", DNS_TYPE_A)->n, 1);

	/* A critical node-level check drops every service of the node. */
	set_check("n1", "serfHealth", "", CAT_CRITICAL, "");
	r = ask("web.service.consul", DNS_TYPE_A);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_A), 2);
	ck_assert(!has(r, DNS_SEC_ANSWER, DNS_TYPE_A, "10.0.0.1"));
	set_check("n1", "serfHealth", "", CAT_PASSING, "");

	/* Maintenance is a critical check. */
	set_check("n2", "_service_maintenance:web-2", "web-2", CAT_CRITICAL,
		  "maintenance");
	r = ask("web.service.consul", DNS_TYPE_A);
	ck_assert(!has(r, DNS_SEC_ANSWER, DNS_TYPE_A, "10.0.0.2"));
	set_check("n2", "_node_maintenance", "", CAT_CRITICAL, "maintenance");
	set_check("n2", "_service_maintenance:web-2", "web-2", CAT_PASSING,
		  "maintenance");
	r = ask("web.service.consul", DNS_TYPE_A);
	ck_assert(!has(r, DNS_SEC_ANSWER, DNS_TYPE_A, "10.0.0.2"));
	set_check("n2", "_node_maintenance", "", CAT_PASSING, "maintenance");

	/* Warning: answered, with the Warning weight... */
	set_check("n3", "web-3-ttl", "web-3", CAT_WARNING, "ttl");
	r = ask("web.service.consul", DNS_TYPE_SRV);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_SRV), 3);
	ck_assert(has(r, DNS_SEC_ANSWER, DNS_TYPE_SRV,
		      "1 2 81 0a000021.addr.dc1.consul"));
	/* ...unless only passing ones are wanted. */
	{
		struct dns_lookup_config c = default_config();

		c.only_passing = true;
		relookup(&c);
	}
	r = ask("web.service.consul", DNS_TYPE_SRV);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_SRV), 2);
	ck_assert_uint_eq(count_sec(r, DNS_SEC_ADDITIONAL), 2);
	/* The other instance's check does not matter. */
	ck_assert(
	    has(r, DNS_SEC_ANSWER, DNS_TYPE_SRV, "1 1 80 n1.node.dc1.consul"));
}
END_TEST

/* The caches follow every kind of change: a node's address, a new
 * instance, a check, a deregistration, a new node (asked with EDNS0:
 * more than three answers). */
START_TEST(caches_follow_the_catalog)
{
	struct resp *r;

	fill();
	ck_assert(has(ask_opt("web.service.consul", DNS_TYPE_A, 4096, false),
		      DNS_SEC_ANSWER, DNS_TYPE_A, "10.0.0.1"));
	add_node("n1", "10.0.0.100");
	r = ask("web.service.consul", DNS_TYPE_SRV);
	ck_assert_str_eq(
	    find(r, DNS_SEC_ADDITIONAL, DNS_TYPE_A, "10.0.0.100")->owner,
	    "n1.node.dc1.consul");
	ck_assert(!has(r, DNS_SEC_ADDITIONAL, DNS_TYPE_A, "10.0.0.1"));
	ck_assert(has(ask("100.0.0.10.in-addr.arpa", DNS_TYPE_PTR),
		      DNS_SEC_ANSWER, DNS_TYPE_PTR, "n1.node.dc1.consul"));
	add_svc("n4", "web-5", "web", 80);
	ck_assert(has(ask_opt("web.service.consul", DNS_TYPE_A, 4096, false),
		      DNS_SEC_ANSWER, DNS_TYPE_A, "10.0.0.4"));
	set_check("n4", "serfHealth", "", CAT_CRITICAL, "");
	ck_assert(!has(ask_opt("web.service.consul", DNS_TYPE_A, 4096, false),
		       DNS_SEC_ANSWER, DNS_TYPE_A, "10.0.0.4"));
	del_svc("n2", "web-2");
	ck_assert(!has(ask_opt("web.service.consul", DNS_TYPE_A, 4096, false),
		       DNS_SEC_ANSWER, DNS_TYPE_A, "10.0.0.2"));
	add_node("n5", "10.0.0.5");
	ck_assert(has(ask("n5.node.consul", DNS_TYPE_A), DNS_SEC_ANSWER,
		      DNS_TYPE_A, "10.0.0.5"));
	/* Something unrelated changes: the answers stay right. */
	add_svc("n5", "other", "other", 1);
	ck_assert_uint_eq(
	    count(ask_opt("web.service.consul", DNS_TYPE_A, 4096, false),
		  DNS_SEC_ANSWER, DNS_TYPE_A),
	    2);
}
END_TEST

START_TEST(shuffled)
{
	char first[64][DNS_MAX_TEXT + 1];
	size_t distinct = 0;

	for (int i = 0; i < 8; i++) {
		char name[16], addr[16], id[16];

		snprintf(name, sizeof name, "m%d", i);
		snprintf(addr, sizeof addr, "10.1.0.%d", i + 1);
		snprintf(id, sizeof id, "s%d", i);
		add_node(name, addr);
		add_svc(name, id, "many", 80);
	}
	for (int t = 0; t < 32; t++) {
		struct resp *r =
		    ask_opt("many.service.consul", DNS_TYPE_A, 1232, false);
		bool seen = false;

		ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_A), 8);
		for (size_t k = 0; k < distinct; k++)
			seen |= strcmp(first[k], r->rr[0].data) == 0;
		if (!seen)
			strcpy(first[distinct++], r->rr[0].data);
	}
	ck_assert_uint_ge(distinct, 4); /* 8 candidates, 32 draws */
}
END_TEST

/* ---- nodes, addresses, the apex, reverse --------------------------------- */

START_TEST(node_lookups)
{
	struct resp *r;

	fill();
	add_node_meta("web.a", "10.0.0.9",
		      STRS("env\0prod\0a=b\0c\0rfc1035-x\0raw"));
	r = ask("n1.node.consul", DNS_TYPE_A);
	ck_assert_uint_eq(r->rcode, DNS_RCODE_NOERROR);
	ck_assert(r->aa);
	ck_assert_uint_eq(r->n, 1);
	ck_assert(has(r, DNS_SEC_ANSWER, DNS_TYPE_A, "10.0.0.1"));
	ck_assert(has(ask("N1.NODE.dc1.consul", DNS_TYPE_A), DNS_SEC_ANSWER,
		      DNS_TYPE_A, "10.0.0.1"));
	ck_assert(has(ask("n3.node.dc1.dc.consul", DNS_TYPE_AAAA),
		      DNS_SEC_ANSWER, DNS_TYPE_AAAA, "fd00::3"));
	assert_negative(ask("n3.node.consul", DNS_TYPE_A), DNS_RCODE_NOERROR,
			"consul");
	assert_negative(ask("n1.node.consul", DNS_TYPE_SRV), DNS_RCODE_NOERROR,
			"consul");
	assert_negative(ask("n9.node.consul", DNS_TYPE_A), DNS_RCODE_NXDOMAIN,
			"consul");
	assert_negative(ask("n1.node.dc2.consul", DNS_TYPE_A),
			DNS_RCODE_NXDOMAIN, "consul");

	/* A node name with a dot, and its meta as TXT (RFC 1464). */
	r = ask("web.a.node.consul", DNS_TYPE_A);
	ck_assert(has(r, DNS_SEC_ANSWER, DNS_TYPE_A, "10.0.0.9"));
	ck_assert_uint_eq(count(r, DNS_SEC_ADDITIONAL, DNS_TYPE_TXT), 3);
	r = ask("web.a.node.consul", DNS_TYPE_TXT);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_TXT), 3);
	ck_assert(has(r, DNS_SEC_ANSWER, DNS_TYPE_TXT, "env=prod"));
	ck_assert(has(r, DNS_SEC_ANSWER, DNS_TYPE_TXT, "a`=b=c"));
	ck_assert(has(r, DNS_SEC_ANSWER, DNS_TYPE_TXT, "raw"));
	r = ask_opt("web.a.node.consul", DNS_TYPE_ANY, 1232, false);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_A), 1);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_TXT), 3);
	/* Without EDNS: the answer limit (3), and TC. */
	r = ask("web.a.node.consul", DNS_TYPE_ANY);
	ck_assert_uint_eq(count_sec(r, DNS_SEC_ANSWER), 3);
	ck_assert(r->tc);
	assert_negative(ask("n1.node.consul", DNS_TYPE_TXT), DNS_RCODE_NOERROR,
			"consul");
}
END_TEST

START_TEST(addr_lookups)
{
	struct resp *r;

	r = ask("0a000021.addr.dc1.consul", DNS_TYPE_A);
	ck_assert_uint_eq(r->n, 1);
	ck_assert(has(r, DNS_SEC_ANSWER, DNS_TYPE_A, "10.0.0.33"));
	ck_assert(has(ask("0A000021.addr.consul", DNS_TYPE_ANY), DNS_SEC_ANSWER,
		      DNS_TYPE_A, "10.0.0.33"));
	r = ask("fd000000000000000000000000000003.addr.consul", DNS_TYPE_AAAA);
	ck_assert(has(r, DNS_SEC_ANSWER, DNS_TYPE_AAAA, "fd00::3"));
	assert_negative(ask("0a000021.addr.consul", DNS_TYPE_AAAA),
			DNS_RCODE_NOERROR, "consul");
	assert_negative(ask("0a00002g.addr.consul", DNS_TYPE_A),
			DNS_RCODE_NXDOMAIN, "consul");
	assert_negative(ask("0a0000.addr.consul", DNS_TYPE_A),
			DNS_RCODE_NXDOMAIN, "consul");
	assert_negative(ask("x.0a000021.addr.consul", DNS_TYPE_A),
			DNS_RCODE_NXDOMAIN, "consul");
}
END_TEST

START_TEST(apex_soa_ns)
{
	struct resp *r;
	char soa[128];

	fill();
	r = ask("consul", DNS_TYPE_SOA);
	ck_assert_uint_eq(r->rcode, DNS_RCODE_NOERROR);
	ck_assert(r->aa);
	ck_assert_uint_eq(r->n, 1);
	snprintf(soa, sizeof soa,
		 "ns.consul hostmaster.consul %u 3600 600 86400 0", NOW);
	ck_assert(has(r, DNS_SEC_ANSWER, DNS_TYPE_SOA, soa));

	r = ask("consul", DNS_TYPE_NS);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_NS), 2);
	ck_assert(has(r, DNS_SEC_ANSWER, DNS_TYPE_NS, "s1.node.dc1.consul"));
	ck_assert(has(r, DNS_SEC_ANSWER, DNS_TYPE_NS, "s2.node.dc1.consul"));
	ck_assert_str_eq(
	    find(r, DNS_SEC_ADDITIONAL, DNS_TYPE_A, "127.0.0.2")->owner,
	    "s2.node.dc1.consul");
	r = ask_opt("consul", DNS_TYPE_ANY, 1232, false);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_SOA), 1);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_NS), 2);
	assert_negative(ask("consul", DNS_TYPE_A), DNS_RCODE_NOERROR, "consul");
	/* A server whose serfHealth is critical is not named. */
	set_check("s2", CAT_NODE_CHECK, "", CAT_CRITICAL, "");
	r = ask("consul", DNS_TYPE_NS);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_NS), 1);
	/* At most three. */
	for (int i = 3; i <= 6; i++) {
		char n[8];

		snprintf(n, sizeof n, "s%d", i);
		add_node(n, "127.0.0.9");
		add_svc(n, "consul", CAT_SERVER_SVC, 8300);
	}
	ck_assert_uint_eq(
	    count(ask("consul", DNS_TYPE_NS), DNS_SEC_ANSWER, DNS_TYPE_NS), 3);
}
END_TEST

START_TEST(reverse_ptr)
{
	struct resp *r;

	fill();
	add_node("n1b", "10.0.0.1");
	r = ask("1.0.0.10.in-addr.arpa", DNS_TYPE_PTR);
	ck_assert_uint_eq(r->rcode, DNS_RCODE_NOERROR);
	ck_assert(r->aa);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_PTR), 2);
	ck_assert(has(r, DNS_SEC_ANSWER, DNS_TYPE_PTR, "n1.node.dc1.consul"));
	ck_assert(has(r, DNS_SEC_ANSWER, DNS_TYPE_PTR, "n1b.node.dc1.consul"));
	r = ask("3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0."
		"d.f.ip6.arpa",
		DNS_TYPE_PTR);
	ck_assert(has(r, DNS_SEC_ANSWER, DNS_TYPE_PTR, "n3.node.dc1.consul"));
	assert_negative(ask("1.0.0.10.in-addr.arpa", DNS_TYPE_A),
			DNS_RCODE_NOERROR, "consul");
	assert_negative(ask("9.9.9.9.in-addr.arpa", DNS_TYPE_PTR),
			DNS_RCODE_NXDOMAIN, "consul");
	assert_negative(ask("0.10.in-addr.arpa", DNS_TYPE_PTR),
			DNS_RCODE_NXDOMAIN, "consul");
}
END_TEST

/* ---- what we do not serve ------------------------------------------------ */

START_TEST(refused_notimp_forward)
{
	uint8_t q[600];
	size_t len;
	struct resp *r;

	fill();
	r = ask("example.com", DNS_TYPE_A);
	ck_assert_uint_eq(r->rcode, DNS_RCODE_REFUSED);
	ck_assert(!r->aa);
	ck_assert_uint_eq(r->n, 0);
	r = ask("consulx", DNS_TYPE_A);
	ck_assert_uint_eq(r->rcode, DNS_RCODE_REFUSED);
	r = ask("web.service.consul", DNS_TYPE_AXFR);
	ck_assert_uint_eq(r->rcode, DNS_RCODE_NOTIMP);
	r = ask("consul", DNS_TYPE_IXFR);
	ck_assert_uint_eq(r->rcode, DNS_RCODE_NOTIMP);

	/* Another opcode: NOTIMP, no question echoed. */
	len = mkquery(q, "web.service.consul", DNS_TYPE_A, -1, 0);
	q[2] |= DNS_OPCODE_UPDATE << 3;
	ck_assert_int_eq(ask_raw(q, len, false, sizeof R.msg), DNS_ACT_REPLY);
	ck_assert_uint_eq(R.rcode, DNS_RCODE_NOTIMP);
	ck_assert_uint_eq(R.hdr.count[DNS_SEC_QUESTION], 0);
	/* A response, or a scrap: nothing. */
	len = mkquery(q, "web.service.consul", DNS_TYPE_A, -1, 0);
	q[2] |= 0x80;
	ck_assert_int_eq(ask_raw(q, len, false, sizeof R.msg), DNS_ACT_DROP);
	ck_assert_int_eq(ask_raw(q, 5, false, sizeof R.msg), DNS_ACT_DROP);
	/* Malformed: FORMERR. */
	len = mkquery(q, "web.service.consul", DNS_TYPE_A, -1, 0);
	ck_assert_int_eq(ask_raw(q, len - 3, false, sizeof R.msg),
			 DNS_ACT_REPLY);
	ck_assert_uint_eq(R.rcode, DNS_RCODE_FORMERR);
	/* A class we do not serve. */
	len = mkquery(q, "web.service.consul", DNS_TYPE_A, -1, 0);
	put16(q + len - 2, DNS_CLASS_CH);
	ck_assert_int_eq(ask_raw(q, len, false, sizeof R.msg), DNS_ACT_REPLY);
	ck_assert_uint_eq(R.rcode, DNS_RCODE_REFUSED);

	/* With a recursor: forwarded, and RA set on our answers. */
	{
		struct dns_lookup_config c = default_config();

		c.recursor = true;
		relookup(&c);
	}
	len = mkquery(q, "example.com", DNS_TYPE_A, -1, 0);
	ck_assert_int_eq(ask_raw(q, len, false, sizeof R.msg), DNS_ACT_FORWARD);
	len = mkquery(q, "9.9.9.9.in-addr.arpa", DNS_TYPE_PTR, -1, 0);
	ck_assert_int_eq(ask_raw(q, len, false, sizeof R.msg), DNS_ACT_FORWARD);
	r = ask("web.service.consul", DNS_TYPE_A);
	ck_assert(r->ra);
	ck_assert(r->aa);
	r = ask("nope.service.consul", DNS_TYPE_A);
	ck_assert_uint_eq(r->rcode, DNS_RCODE_NXDOMAIN);
}
END_TEST

START_TEST(error_reply)
{
	uint8_t q[600], out[600];
	size_t len = mkquery(q, "example.com", DNS_TYPE_A, 1232, 0), olen;

	ck_assert_int_eq(dns_lookup_error(q, len, DNS_RCODE_SERVFAIL, true, out,
					  sizeof out, &olen),
			 0);
	memcpy(R.msg, out, olen);
	R.len = olen;
	decode(&R);
	ck_assert_uint_eq(R.rcode, DNS_RCODE_SERVFAIL);
	ck_assert(R.ra);
	ck_assert(R.edns);
	ck_assert_uint_eq(R.hdr.count[DNS_SEC_QUESTION], 1);
	ck_assert_int_eq(dns_lookup_error(q, 5, DNS_RCODE_SERVFAIL, true, out,
					  sizeof out, &olen),
			 BCN_EINVAL);
}
END_TEST

/* ---- sizes --------------------------------------------------------------- */

/* 50 instances of "big" on 50 nodes. */
static void fill_big(void)
{
	for (int i = 0; i < 50; i++) {
		char name[32], addr[32], id[32];

		snprintf(name, sizeof name, "node-%02d", i);
		snprintf(addr, sizeof addr, "10.2.0.%d", i + 1);
		snprintf(id, sizeof id, "big-%d", i);
		add_node(name, addr);
		add_svc(name, id, "big", (uint32_t)(8000 + i));
	}
}

/* Every additional record serves an answer, and each answer's target
 * has its address. */
static void assert_additional_synced(const struct resp *r)
{
	for (size_t i = 0; i < r->n; i++) {
		const struct rr *x = &r->rr[i];
		bool served = false;

		if (x->sec == DNS_SEC_ANSWER && x->type == DNS_TYPE_SRV) {
			const char *t = strrchr(x->data, ' ') + 1;
			bool found = false;

			for (size_t j = 0; j < r->n; j++)
				found |= r->rr[j].sec == DNS_SEC_ADDITIONAL &&
					 strcmp(r->rr[j].owner, t) == 0;
			ck_assert_msg(found, "no address for %s", t);
		}
		if (x->sec != DNS_SEC_ADDITIONAL)
			continue;
		for (size_t j = 0; j < r->n; j++) {
			const char *d = r->rr[j].data;
			const char *t = strrchr(d, ' ');

			served |= r->rr[j].sec == DNS_SEC_ANSWER &&
				  r->rr[j].type == DNS_TYPE_SRV &&
				  strcmp(t + 1, x->owner) == 0;
		}
		ck_assert_msg(served, "%s serves no answer", x->owner);
	}
}

START_TEST(truncation_udp)
{
	struct resp *r;

	fill_big();
	/* Plain UDP: the answer limit (3), TC set. */
	r = ask("big.service.consul", DNS_TYPE_SRV);
	ck_assert(r->tc);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_SRV), 3);
	ck_assert_uint_eq(count(r, DNS_SEC_ADDITIONAL, DNS_TYPE_A), 3);
	assert_additional_synced(r);
	r = ask("big.service.consul", DNS_TYPE_A);
	ck_assert(r->tc);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_A), 3);

	/* Without the limit, 512 bytes are the limit. */
	{
		struct dns_lookup_config c = default_config();

		c.udp_answer_limit = 1000;
		relookup(&c);
	}
	r = ask("big.service.consul", DNS_TYPE_SRV);
	ck_assert(r->tc);
	ck_assert_uint_le(R.len, 512);
	ck_assert_uint_ge(count(r, DNS_SEC_ANSWER, DNS_TYPE_SRV), 1);
	ck_assert_uint_lt(count(r, DNS_SEC_ANSWER, DNS_TYPE_SRV), 50);
	assert_additional_synced(r);
	r = ask("big.service.consul", DNS_TYPE_A);
	ck_assert(r->tc);
	ck_assert_uint_le(R.len, 512);
	ck_assert_uint_ge(count(r, DNS_SEC_ANSWER, DNS_TYPE_A), 20);

	/* TC off (Consul's default): short, silently. */
	{
		struct dns_lookup_config c = default_config();

		c.enable_truncate = false;
		relookup(&c);
	}
	r = ask("big.service.consul", DNS_TYPE_SRV);
	ck_assert(!r->tc);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_SRV), 3);
}
END_TEST

START_TEST(truncation_edns)
{
	static const int sizes[] = {0, 512, 600, 1232, 1500, 4096, 65535};
	struct resp *r;

	fill_big();
	for (size_t i = 0; i < N_OF(sizes); i++) {
		size_t lim = sizes[i] < 512 ? 512
			     : sizes[i] > DNS_LOOKUP_UDP_MAX
				 ? DNS_LOOKUP_UDP_MAX
				 : (size_t)sizes[i];
		size_t n;

		r = ask_opt("big.service.consul", DNS_TYPE_SRV, sizes[i],
			    false);
		n = count(r, DNS_SEC_ANSWER, DNS_TYPE_SRV);
		ck_assert_msg(R.len <= lim, "%zu > %zu", R.len, lim);
		ck_assert(r->edns);
		ck_assert_uint_eq(r->edns_size, DNS_LOOKUP_UDP_MAX);
		ck_assert_uint_ge(n, 1);
		ck_assert_int_eq(r->tc, n < 50);
		if (lim <= 512)
			ck_assert_uint_le(n, 3);
		if (lim >= 4096)
			ck_assert_uint_eq(n, 50);
		/* Nearly full: one more would not have fit. */
		if (n < 50 && lim > 512)
			ck_assert_uint_gt(R.len + 60, lim);
		assert_additional_synced(r);
	}
}
END_TEST

START_TEST(truncation_tcp)
{
	struct resp *r;

	fill_big();
	r = ask_opt("big.service.consul", DNS_TYPE_SRV, -1, true);
	ck_assert(!r->tc);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_SRV), 50);
	ck_assert_uint_eq(count(r, DNS_SEC_ADDITIONAL, DNS_TYPE_A), 50);
	assert_additional_synced(r);
	r = ask_opt("big.service.consul", DNS_TYPE_A, -1, true);
	ck_assert(!r->tc);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_A), 50);
}
END_TEST

/* An SRV record that fits in 512 bytes only without its A record: the
 * answer goes out alone (no TC: the answer section is complete), and TCP
 * has both. Sizes: 12 header + 235 question + 18 + 241 SRV = 506, and the
 * A record would add 16. */
START_TEST(one_answer_always)
{
	char node[256], tag[256], q[300];
	struct cat_strs tags;
	struct resp *r;

	snprintf(node, sizeof node, "%.60s.%.60s.%.60s.%.40s", LONG_A, LONG_B,
		 LONG_C, LONG_D);
	snprintf(tag, sizeof tag, "%.63s.%.63s.%.63s.%.20s", LONG_A, LONG_B,
		 LONG_C, LONG_D);
	tags.data = tag;
	tags.len = strlen(tag) + 1;
	add_node(node, "10.0.0.1");
	add_svc_full(node, "x", "x", "", 1, tags, 1, 1);
	snprintf(q, sizeof q, "%s.x.service.consul", tag);
	r = ask(q, DNS_TYPE_SRV);
	ck_assert_uint_eq(R.len, 506);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_SRV), 1);
	ck_assert_uint_eq(count_sec(r, DNS_SEC_ADDITIONAL), 0);
	ck_assert(!r->tc);
	r = ask_opt(q, DNS_TYPE_SRV, -1, true);
	ck_assert_uint_eq(count(r, DNS_SEC_ADDITIONAL, DNS_TYPE_A), 1);
}
END_TEST

/* ---- TTLs, the alternate domain, EDNS ------------------------------------ */

START_TEST(ttls)
{
	struct dns_lookup_config c = default_config();
	struct resp *r;

	c.node_ttl = 30;
	c.service_ttl = "web=10s, api*=5s ,apim=7s,*=1m, a*=2s";
	relookup(&c);
	fill();
	add_svc("n1", "apim-1", "apim", 1);
	add_svc("n1", "apix-1", "apix", 1);
	add_svc("n1", "other-1", "other", 1);
	add_svc("n1", "ab-1", "ab", 1);
	r = ask("web.service.consul", DNS_TYPE_SRV);
	for (size_t i = 0; i < r->n; i++)
		ck_assert_uint_eq(r->rr[i].ttl, 10); /* additional too */
	ck_assert_uint_eq(ask("api.service.consul", DNS_TYPE_A)->rr[0].ttl, 5);
	ck_assert_uint_eq(ask("apim.service.consul", DNS_TYPE_A)->rr[0].ttl, 7);
	ck_assert_uint_eq(ask("apix.service.consul", DNS_TYPE_A)->rr[0].ttl, 5);
	ck_assert_uint_eq(ask("ab.service.consul", DNS_TYPE_A)->rr[0].ttl, 2);
	ck_assert_uint_eq(ask("other.service.consul", DNS_TYPE_A)->rr[0].ttl,
			  60);
	ck_assert_uint_eq(ask("n1.node.consul", DNS_TYPE_A)->rr[0].ttl, 30);
	ck_assert_uint_eq(ask("0a000021.addr.consul", DNS_TYPE_A)->rr[0].ttl,
			  30);
	ck_assert_uint_eq(ask("consul", DNS_TYPE_NS)->rr[0].ttl, 30);
	ck_assert_uint_eq(ask("1.0.0.10.in-addr.arpa", DNS_TYPE_PTR)->rr[0].ttl,
			  30);
	/* No rules: 0. */
	c.service_ttl = "";
	relookup(&c);
	ck_assert_uint_eq(ask("web.service.consul", DNS_TYPE_A)->rr[0].ttl, 0);
}
END_TEST

START_TEST(bad_configs)
{
	static const char *const ttls[] = {
	    "web", "web=", "=1s", "web=1", "web=x", "w*b=1s", "web=1s,,x",
	};
	struct dns_lookup_config c = default_config();
	struct dns_lookup *l = NULL;
	char errmsg[BCN_ERRMSG_LEN];

	for (size_t i = 0; i < N_OF(ttls); i++) {
		c.service_ttl = ttls[i];
		errmsg[0] = '\0';
		ck_assert_msg(dns_lookup_new(&l, &c, errmsg) == BCN_EINVAL,
			      "%s", ttls[i]);
		ck_assert(strstr(errmsg, ttls[i]) != NULL);
	}
	c = default_config();
	c.domain = "a..b";
	ck_assert_int_eq(dns_lookup_new(&l, &c, errmsg), BCN_EINVAL);
	c.domain = "";
	ck_assert_int_eq(dns_lookup_new(&l, &c, errmsg), BCN_EINVAL);
	c.domain = "consul";
	c.alt_domain = "Consul.";
	ck_assert_int_eq(dns_lookup_new(&l, &c, errmsg), BCN_EINVAL);
	c.alt_domain = "";
	c.datacenter = "";
	ck_assert_int_eq(dns_lookup_new(&l, &c, errmsg), BCN_EINVAL);
	c.datacenter = "dc1";
	c.service_ttl = "web=1s,";
	ck_assert_int_eq(dns_lookup_new(&l, &c, errmsg), 0);
	dns_lookup_free(l);
}
END_TEST

START_TEST(alt_domain)
{
	struct dns_lookup_config c = default_config();
	struct resp *r;

	c.domain = "Consul.";
	c.alt_domain = "beacon.example";
	relookup(&c);
	fill();
	r = ask("web.service.beacon.example", DNS_TYPE_SRV);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_SRV), 3);
	ck_assert(has(r, DNS_SEC_ANSWER, DNS_TYPE_SRV,
		      "1 1 80 n1.node.dc1.beacon.example"));
	ck_assert(find(r, DNS_SEC_ADDITIONAL, DNS_TYPE_A, "10.0.0.1") != NULL);
	ck_assert_str_eq(
	    find(r, DNS_SEC_ADDITIONAL, DNS_TYPE_A, "10.0.0.1")->owner,
	    "n1.node.dc1.beacon.example");
	assert_negative(ask("nope.service.beacon.example", DNS_TYPE_SRV),
			DNS_RCODE_NXDOMAIN, "beacon.example");
	r = ask("web.service.consul", DNS_TYPE_SRV);
	ck_assert(
	    has(r, DNS_SEC_ANSWER, DNS_TYPE_SRV, "1 1 80 n1.node.dc1.consul"));
	/* PTR: always the primary domain. */
	r = ask("1.0.0.10.in-addr.arpa", DNS_TYPE_PTR);
	ck_assert(has(r, DNS_SEC_ANSWER, DNS_TYPE_PTR, "n1.node.dc1.consul"));
	r = ask("beacon.example", DNS_TYPE_SOA);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_SOA), 1);
}
END_TEST

START_TEST(edns_echo)
{
	uint8_t q[600];
	size_t len;
	struct resp *r;

	fill();
	r = ask_opt("web.service.consul", DNS_TYPE_A, 1232, false);
	ck_assert(r->edns);
	ck_assert_uint_eq(r->edns_size, DNS_LOOKUP_UDP_MAX);
	r = ask("web.service.consul", DNS_TYPE_A);
	ck_assert(!r->edns);
	/* EDNS version 1: BADVERS (16), no answer. */
	len = mkquery(q, "web.service.consul", DNS_TYPE_A, 1232, 1);
	ck_assert_int_eq(ask_raw(q, len, false, sizeof R.msg), DNS_ACT_REPLY);
	ck_assert(R.edns);
	ck_assert_uint_eq(R.ext_rcode << 4 | R.rcode, DNS_RCODE_BADVERS);
	ck_assert_uint_eq(count_sec(&R, DNS_SEC_ANSWER), 0);
	/* A negative answer with EDNS. */
	r = ask_opt("nope.service.consul", DNS_TYPE_A, 1232, false);
	ck_assert(r->edns);
	assert_negative(r, DNS_RCODE_NXDOMAIN, "consul");
}
END_TEST

/* A caller buffer below 512 bytes lowers the limit; below the header
 * nothing can be sent. */
START_TEST(small_buffers)
{
	uint8_t q[600];
	size_t len;

	fill();
	len = mkquery(q, "web.service.consul", DNS_TYPE_SRV, -1, 0);
	ck_assert_int_eq(ask_raw(q, len, false, 100), DNS_ACT_REPLY);
	ck_assert_uint_le(R.len, 100);
	ck_assert(R.tc);
	ck_assert_int_eq(ask_raw(q, len, false, 11), DNS_ACT_DROP);
}
END_TEST

/* No catalog (the server shutting down): SERVFAIL. */
START_TEST(no_catalog)
{
	uint8_t q[600];
	size_t len = mkquery(q, "web.service.consul", DNS_TYPE_A, -1, 0);
	struct dns_lookup_req req = {.msg = q, .len = len, .now = NOW};

	ck_assert_int_eq(
	    dns_lookup_answer(lk, NULL, &req, R.msg, sizeof R.msg, &R.len),
	    DNS_ACT_REPLY);
	decode(&R);
	ck_assert_uint_eq(R.rcode, DNS_RCODE_SERVFAIL);
	/* No random source: answered, in catalog order. */
	fill();
	ck_assert_int_eq(
	    dns_lookup_answer(lk, store, &req, R.msg, sizeof R.msg, &R.len),
	    DNS_ACT_REPLY);
	decode(&R);
	ck_assert_uint_eq(count(&R, DNS_SEC_ANSWER, DNS_TYPE_A), 3);
}
END_TEST

/* ---- the answer cache ---------------------------------------------------- */

static struct dns_lookup *ref; /* without a cache: the reference */

static void ref_open(void)
{
	struct dns_lookup_config c = default_config();
	char errmsg[BCN_ERRMSG_LEN] = "";

	c.no_cache = true;
	dns_lookup_free(ref);
	ck_assert_msg(dns_lookup_new(&ref, &c, errmsg) == 0, "%s", errmsg);
}

static struct dns_cache_stats cache_stats(void)
{
	struct dns_cache_stats st;

	dns_lookup_cache_stats(lk, &st);
	return st;
}

/* Ask @q[0..@qlen) of @lk (into R) and of @ref with the same random state:
 * the same action, the same bytes, and the same number of draws. */
static enum dns_action ask_both(const uint8_t *q, size_t qlen, bool tcp,
				size_t cap)
{
	static uint8_t want[DNS_MAX_MSG];
	uint64_t st = rng_state;
	struct dns_lookup_req req = {
	    .msg = q,
	    .len = qlen,
	    .tcp = tcp,
	    .now = ask_now,
	    .rand = rng,
	    .rand_data = &st,
	};
	size_t wlen;
	enum dns_action act =
	    dns_lookup_answer(ref, store, &req, want, cap, &wlen);

	ck_assert_int_eq(ask_raw(q, qlen, tcp, cap), act);
	ck_assert_uint_eq(R.len, wlen);
	ck_assert_msg(memcmp(R.msg, want, wlen) == 0, "answers differ");
	ck_assert_uint_eq(st, rng_state);
	return act;
}

/* A query as mkquery() builds it, with the DO bit if @do_bit, a client
 * subnet option for 10.@subnet.0.0/16 if @subnet > 0 (both need
 * @edns >= 0), and the ID @id. */
static size_t mkquery_ext(uint8_t *q, const char *name, uint16_t qtype,
			  int edns, bool do_bit, int subnet, uint16_t id)
{
	size_t len = mkquery(q, name, qtype, edns, 0);

	put16(q, id);
	if (edns < 0)
		return len;
	if (do_bit)
		q[len - 4] |= 0x80; /* the OPT TTL's flags: DO */
	if (subnet > 0) {
		/* RFC 7871 §6: code 8, family 1, /16, scope 0, 2 bytes. */
		static const uint8_t ecs[] = {0, 8, 0, 6, 0, 1, 16, 0};

		memcpy(q + len, ecs, sizeof ecs);
		q[len + sizeof ecs] = 10;
		q[len + sizeof ecs + 1] = (uint8_t)subnet;
		put16(q + len - 2, sizeof ecs + 2);
		len += sizeof ecs + 2;
	}
	return len;
}

/* A hit: the same bytes but the ID, and no allocation at all (with a
 * version, not even SQLite's). */
START_TEST(cache_hit_same_bytes)
{
	static uint8_t first[DNS_MAX_MSG];
	static const struct {
		const char *name;
		uint16_t qtype;
	} qs[] = {
	    {"web.service.consul", DNS_TYPE_SRV},
	    {"web.service.consul", DNS_TYPE_A},
	    {"n1.node.consul", DNS_TYPE_ANY},
	    {"consul", DNS_TYPE_NS},
	    {"nope.service.consul", DNS_TYPE_A},
	    {"1.0.0.10.in-addr.arpa", DNS_TYPE_PTR},
	};

	fill();
	ask_version = 5;
	for (size_t k = 0; k < N_OF(qs); k++) {
		uint8_t q[600];
		size_t len = mkquery_ext(q, qs[k].name, qs[k].qtype, 1232,
					 false, 0, 0x1111);
		uint64_t st = rng_state, hits = cache_stats().hits;
		size_t flen;

		ck_assert_int_eq(ask_raw(q, len, false, sizeof R.msg),
				 DNS_ACT_REPLY);
		ck_assert_uint_eq(cache_stats().hits, hits);
		memcpy(first, R.msg, R.len);
		flen = R.len;
		/* The same draw: the same order, from the cache. */
		rng_state = st;
		put16(q, 0x2222);
		fault_alloc_fail_at(0);
		ck_assert_int_eq(ask_raw(q, len, false, sizeof R.msg),
				 DNS_ACT_REPLY);
		ck_assert_int_eq(fault_alloc_count(), 0);
		fault_alloc_fail_at(-1);
		ck_assert_uint_eq(cache_stats().hits, hits + 1);
		ck_assert_uint_eq(R.len, flen);
		ck_assert_uint_eq(get16(R.msg), 0x2222);
		ck_assert_msg(memcmp(R.msg + 2, first + 2, flen - 2) == 0,
			      "%s: the hit differs", qs[k].name);
	}
}
END_TEST

/* Every kind of query, over rounds with catalog changes and a new second
 * between them: always the bytes of the uncached lookup, and mostly from
 * the cache. */
START_TEST(cache_same_as_uncached)
{
	static const char *const names[] = {
	    "web.service.consul",
	    "WEB.Service.CONSUL",
	    "primary.web.service.consul",
	    "_web._tcp.service.consul",
	    "_web._primary.service.dc1.consul",
	    "api.service.consul",
	    "db.service.consul",
	    "five.service.consul",
	    "six.service.consul",
	    "n1.node.consul",
	    "m.node.dc1.consul",
	    "consul",
	    "nope.service.consul",
	    "0a000001.addr.consul",
	    "1.0.0.10.in-addr.arpa",
	    ("3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f."
	     "ip6.arpa"),
	    "example.org",
	};
	static const uint16_t types[] = {
	    DNS_TYPE_A,	  DNS_TYPE_AAAA, DNS_TYPE_SRV, DNS_TYPE_ANY,
	    DNS_TYPE_TXT, DNS_TYPE_SOA,	 DNS_TYPE_NS,  DNS_TYPE_PTR,
	};
	static const int ednss[] = {-1, 512, 1232, 4096};
	size_t n = 0;

	fill();
	add_node_meta("m", "10.0.0.7", STRS("a\0b\0c\0d"));
	for (int i = 0; i < 6; i++) {
		char node[16], id[16];

		snprintf(node, sizeof node, "f%d", i);
		snprintf(id, sizeof id, "five-%d", i);
		add_node(node, i % 2 == 0 ? "10.2.0.1" : "fd00::2:1");
		if (i < 5)
			add_svc(node, id, "five", (uint32_t)(1000 + i));
		snprintf(id, sizeof id, "six-%d", i);
		add_svc(node, id, "six", (uint32_t)(2000 + i));
	}
	ref_open();
	for (int round = 0; round < 3; round++) {
		for (int rep = 0; rep < 2; rep++) {
			/* The same draws in each repetition: the second
			 * asks for what the first cached, every order. */
			rng_state = 0x5eed0000u + (uint64_t)round;
			for (size_t a = 0; a < N_OF(names); a++) {
				for (size_t b = 0; b < N_OF(types); b++) {
					for (size_t e = 0; e < N_OF(ednss);
					     e++) {
						uint8_t q[600];
						/* The same extras in
						 * each repetition. */
						size_t i = a * 32 + b * 4 + e;
						size_t len = mkquery_ext(
						    q, names[a], types[b],
						    ednss[e], i % 3 == 1,
						    i % 5 == 2
							? (int)(i % 3 + 1)
							: 0,
						    (uint16_t)n++);

						ask_both(q, len, i % 7 == 3,
							 i % 11 == 4
							     ? 300
							     : sizeof R.msg);
					}
				}
			}
		}
		/* Between rounds: the catalog and the second change. */
		if (round == 0) {
			set_check("f1", CAT_NODE_CHECK, "", CAT_CRITICAL, "");
			add_node("n1", "10.0.0.100");
		} else {
			del_svc("n2", "web-2");
			add_svc("s1", "consul", CAT_SERVER_SVC, 8301);
		}
		ask_now++;
	}
	ck_assert_uint_gt(cache_stats().hits, n / 3);
	ck_assert_uint_gt(cache_stats().stale, 0);
	dns_lookup_free(ref);
	ref = NULL;
}
END_TEST

/* A catalog change drops what the cache holds, even for an answer that
 * was asked for only a moment ago. */
START_TEST(cache_follows_the_catalog)
{
	struct resp *r;
	uint64_t hits;

	fill();
	r = ask_opt("web.service.consul", DNS_TYPE_A, 4096, false);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_A), 3);
	for (int i = 0; i < 20; i++)
		ask_opt("web.service.consul", DNS_TYPE_A, 4096, false);
	hits = cache_stats().hits;
	ck_assert_uint_gt(hits, 0);
	add_svc("n4", "web-4", "web", 80);
	r = ask_opt("web.service.consul", DNS_TYPE_A, 4096, false);
	ck_assert_uint_eq(count(r, DNS_SEC_ANSWER, DNS_TYPE_A), 4);
	ck_assert(has(r, DNS_SEC_ANSWER, DNS_TYPE_A, "10.0.0.4"));
	ck_assert_uint_eq(cache_stats().hits, hits);
	/* A change elsewhere drops it too (conservative). */
	ask_opt("n1.node.consul", DNS_TYPE_A, 4096, false);
	add_node("zz", "10.9.9.9");
	hits = cache_stats().hits;
	ck_assert(has(ask_opt("n1.node.consul", DNS_TYPE_A, 4096, false),
		      DNS_SEC_ANSWER, DNS_TYPE_A, "10.0.0.1"));
	ck_assert_uint_eq(cache_stats().hits, hits);
	/* A check going critical. */
	set_check("n4", "serfHealth", "", CAT_CRITICAL, "");
	r = ask_opt("web.service.consul", DNS_TYPE_A, 4096, false);
	ck_assert(!has(r, DNS_SEC_ANSWER, DNS_TYPE_A, "10.0.0.4"));
}
END_TEST

/* With a version, the catalog's index is read once per version: the
 * caller promises a new version after any change. */
START_TEST(cache_trusts_the_version)
{
	struct resp *r;

	fill();
	ask_version = 1;
	ask_opt("db.service.consul", DNS_TYPE_A, 4096, false);
	r = ask_opt("n4.node.consul", DNS_TYPE_A, 4096, false);
	ck_assert(has(r, DNS_SEC_ANSWER, DNS_TYPE_A, "10.0.0.4"));
	add_node("n4", "10.0.0.44");
	/* A broken promise serves the old answer... */
	r = ask_opt("n4.node.consul", DNS_TYPE_A, 4096, false);
	ck_assert(has(r, DNS_SEC_ANSWER, DNS_TYPE_A, "10.0.0.4"));
	/* ...a kept one the new. */
	ask_version = 2;
	r = ask_opt("n4.node.consul", DNS_TYPE_A, 4096, false);
	ck_assert(has(r, DNS_SEC_ANSWER, DNS_TYPE_A, "10.0.0.44"));
	/* Version 0: read every time. */
	ask_version = 0;
	add_node("n4", "10.0.0.45");
	r = ask_opt("n4.node.consul", DNS_TYPE_A, 4096, false);
	ck_assert(has(r, DNS_SEC_ANSWER, DNS_TYPE_A, "10.0.0.45"));
}
END_TEST

/* What changes the bytes keeps answers apart, interleaved: EDNS and its
 * size, DO, a client subnet, TCP, the caller's capacity; the name's case
 * shares an entry and is echoed as asked. */
START_TEST(cache_keeps_variants_apart)
{
	uint8_t q[600];
	size_t len;

	for (int i = 0; i < 5; i++) {
		char node[16], id[16], addr[16];

		snprintf(node, sizeof node, "f%d", i);
		snprintf(id, sizeof id, "five-%d", i);
		snprintf(addr, sizeof addr, "10.2.0.%d", i + 1);
		add_node(node, addr);
		add_svc(node, id, "five", 80);
	}
	ref_open();
	for (int t = 0; t < 40; t++) {
		/* Four draws in turn: orders come back. */
		uint64_t st = 0x5eed0000u + (uint64_t)(t % 4);

		/* A small buffer: fewer answers, TC (first: a bigger
		 * answer must not come from it). */
		rng_state = st;
		len = mkquery_ext(q, "five.service.consul", DNS_TYPE_A, 4096,
				  false, 0, 6);
		ask_both(q, len, false, 80);
		ck_assert_uint_lt(count(&R, DNS_SEC_ANSWER, DNS_TYPE_A), 5);
		ck_assert(R.tc);
		/* Plain UDP: the answer limit (3), no OPT. */
		rng_state = st;
		len = mkquery_ext(q, "five.service.consul", DNS_TYPE_A, -1,
				  false, 0, 1);
		ask_both(q, len, false, sizeof R.msg);
		ck_assert_uint_eq(count(&R, DNS_SEC_ANSWER, DNS_TYPE_A), 3);
		ck_assert(!R.edns);
		/* EDNS: all five, our size, DO as asked. */
		rng_state = st;
		len = mkquery_ext(q, "five.service.consul", DNS_TYPE_A, 4096,
				  t % 2 == 0, 0, 2);
		ask_both(q, len, false, sizeof R.msg);
		ck_assert_uint_eq(count(&R, DNS_SEC_ANSWER, DNS_TYPE_A), 5);
		ck_assert(R.edns);
		ck_assert_uint_eq(R.edns_size, DNS_LOOKUP_UDP_MAX);
		ck_assert(R.edns_do == (t % 2 == 0));
		/* TCP without EDNS: all five. */
		rng_state = st;
		len = mkquery_ext(q, "five.service.consul", DNS_TYPE_A, -1,
				  false, 0, 3);
		ask_both(q, len, true, sizeof R.msg);
		ck_assert_uint_eq(count(&R, DNS_SEC_ANSWER, DNS_TYPE_A), 5);
		/* A client subnet is echoed: each its own. */
		rng_state = st;
		len = mkquery_ext(q, "five.service.consul", DNS_TYPE_A, 1232,
				  false, 1 + t % 2, 4);
		ask_both(q, len, false, sizeof R.msg);
		ck_assert_uint_eq(R.msg[R.len - 1], 1 + t % 2);
		/* The name's case: echoed as asked, in the answers too. */
		rng_state = st;
		len = mkquery_ext(q,
				  t % 2 == 0 ? "FIVE.service.Consul"
					     : "five.SERVICE.consul",
				  DNS_TYPE_A, -1, false, 0, 5);
		ask_both(q, len, false, sizeof R.msg);
		ck_assert_str_eq(R.rr[0].owner, t % 2 == 0
						    ? "FIVE.service.Consul"
						    : "five.SERVICE.consul");
	}
	ck_assert_uint_gt(cache_stats().hits, 100);
	dns_lookup_free(ref);
	ref = NULL;
}
END_TEST

/* The SOA's serial is the time: negative answers last one second. */
START_TEST(cache_soa_serial_follows_time)
{
	char soa[128];

	fill();
	for (int t = 0; t < 3; t++) {
		ask_now = NOW + (uint32_t)t;
		for (int i = 0; i < 3; i++) {
			struct resp *r = ask("nope.service.consul", DNS_TYPE_A);

			snprintf(soa, sizeof soa,
				 "ns.consul hostmaster.consul %u 3600 600 "
				 "86400 0",
				 ask_now);
			ck_assert(has(r, DNS_SEC_AUTHORITY, DNS_TYPE_SOA, soa));
		}
	}
	ck_assert_uint_eq(cache_stats().hits, 6);
	ck_assert_uint_eq(cache_stats().stale, 2);
}
END_TEST

/* Shuffled answers stay shuffled: the six orders of three instances come
 * about equally often, from the cache. */
START_TEST(cache_shuffle_uniform)
{
	char orders[6][64];
	unsigned seen[6] = {0};
	size_t n_orders = 0;

	fill();
	for (int t = 0; t < 1200; t++) {
		struct resp *r = ask("web.service.consul", DNS_TYPE_A);
		char order[64];
		size_t k;

		ck_assert_uint_eq(r->n, 3);
		snprintf(order, sizeof order, "%s %s %s", r->rr[0].data,
			 r->rr[1].data, r->rr[2].data);
		for (k = 0; k < n_orders; k++)
			if (strcmp(orders[k], order) == 0)
				break;
		if (k == n_orders) {
			ck_assert_uint_lt(n_orders, 6);
			strcpy(orders[n_orders++], order);
		}
		seen[k]++;
	}
	ck_assert_uint_eq(n_orders, 6);
	for (size_t k = 0; k < 6; k++)
		ck_assert_msg(seen[k] > 140 && seen[k] < 260, "%s: %u",
			      orders[k], seen[k]);
	ck_assert_uint_ge(cache_stats().hits, 1200 - 6);
	/* More orders than the cache keeps: not cached, still shuffled (the
	 * test "shuffled" counts them). */
}
END_TEST

START_TEST(cache_bounded)
{
	struct dns_lookup_config c = default_config();

	c.cache_entries = 4;
	c.cache_bytes = 64 * 1024;
	relookup(&c);
	ref_open();
	fill();
	for (int t = 0; t < 3; t++) {
		for (int i = 0; i < 40; i++) {
			char name[64];
			uint8_t q[600];
			size_t len;

			snprintf(name, sizeof name, "%08x.addr.consul",
				 0x0a000000u + (unsigned)i);
			len = mkquery_ext(q, name, DNS_TYPE_A, -1, false, 0,
					  (uint16_t)i);
			ask_both(q, len, false, sizeof R.msg);
			ck_assert_uint_eq(R.n, 1);
			ck_assert_uint_le(cache_stats().entries, 4);
			ck_assert_uint_le(cache_stats().bytes, 64 * 1024);
		}
	}
	ck_assert_uint_ge(cache_stats().evictions, 100);
	/* Without a cache: nothing counted. */
	c.no_cache = true;
	relookup(&c);
	ask("web.service.consul", DNS_TYPE_A);
	ck_assert_uint_eq(cache_stats().entries, 0);
	ck_assert_uint_eq(cache_stats().misses, 0);
	dns_lookup_free(ref);
	ref = NULL;
}
END_TEST

/* An allocation failure anywhere gives SERVFAIL or the right answer, and
 * never leaves a wrong one in the cache: the next query, with the same
 * draw, gives the uncached lookup's bytes. */
START_TEST(cache_survives_every_oom)
{
	static const struct {
		const char *name;
		uint16_t qtype;
	} qs[] = {
	    {"web.service.consul", DNS_TYPE_SRV},
	    {"Web.service.consul", DNS_TYPE_A},
	    {"n1.node.consul", DNS_TYPE_ANY},
	    {"consul", DNS_TYPE_ANY},
	    {"nope.service.consul", DNS_TYPE_A},
	};
	struct dns_lookup_config c = default_config();

	fill();
	ref_open();
	for (size_t k = 0; k < N_OF(qs); k++) {
		uint8_t q[600];
		size_t len =
		    mkquery_ext(q, qs[k].name, qs[k].qtype, 1232, true, 0, 7);

		for (long n = 0;; n++) {
			uint64_t st = rng_state;
			int fired;

			relookup(&c);
			/* Half the time the entry exists already (another
			 * variant is cached), half it is new. */
			if (n % 2 == 1) {
				rng_state = st + 1;
				ask_both(q, len, false, sizeof R.msg);
			}
			rng_state = st;
			fault_alloc_fail_at(n / 2);
			ck_assert_int_eq(ask_raw(q, len, false, sizeof R.msg),
					 DNS_ACT_REPLY);
			fired = fault_alloc_fired();
			fault_alloc_fail_at(-1);
			if (R.rcode != DNS_RCODE_SERVFAIL) {
				uint8_t got[DNS_MAX_MSG];
				size_t glen = R.len;

				memcpy(got, R.msg, glen);
				rng_state = st;
				ask_both(q, len, false, sizeof R.msg);
				ck_assert_uint_eq(glen, R.len);
				ck_assert(memcmp(got, R.msg, glen) == 0);
			}
			/* Again, from the cache if it was kept. */
			rng_state = st;
			ask_both(q, len, false, sizeof R.msg);
			if (!fired && n % 2 == 1)
				break;
		}
	}
	dns_lookup_free(ref);
	ref = NULL;
}
END_TEST

/* ---- allocation failures ------------------------------------------------- */

START_TEST(lookup_survives_every_oom)
{
	static const struct {
		const char *name;
		uint16_t qtype;
	} qs[] = {
	    {"web.service.consul", DNS_TYPE_SRV},
	    {"web.service.consul", DNS_TYPE_A},
	    {"n1.node.consul", DNS_TYPE_ANY},
	    {"consul", DNS_TYPE_ANY},
	    {"1.0.0.10.in-addr.arpa", DNS_TYPE_PTR},
	};
	struct dns_lookup_config c = default_config();

	fill();
	add_node_meta("m", "10.0.0.7", STRS("a\0b\0c\0d"));
	for (size_t k = 0; k < N_OF(qs); k++) {
		uint8_t q[600];
		size_t len = mkquery(q, qs[k].name, qs[k].qtype, 1232, 0);
		size_t want;

		relookup(&c);
		ck_assert_int_eq(ask_raw(q, len, false, sizeof R.msg),
				 DNS_ACT_REPLY);
		ck_assert_uint_eq(R.rcode, DNS_RCODE_NOERROR);
		want = R.n;
		for (long n = 0;; n++) {
			int fired;

			relookup(&c); /* empty caches: rebuilt each time */
			fault_alloc_fail_at(n);
			ck_assert_int_eq(ask_raw(q, len, false, sizeof R.msg),
					 DNS_ACT_REPLY);
			fired = fault_alloc_fired();
			fault_alloc_fail_at(-1);
			if (!fired) {
				ck_assert_uint_eq(R.rcode, DNS_RCODE_NOERROR);
				ck_assert_uint_eq(R.n, want);
				break;
			}
			ck_assert_msg(
			    R.rcode == DNS_RCODE_SERVFAIL ||
				(R.rcode == DNS_RCODE_NOERROR && R.n == want),
			    "%s: allocation %ld: rcode %u", qs[k].name, n,
			    R.rcode);
		}
	}
}
END_TEST

START_TEST(new_survives_every_oom)
{
	struct dns_lookup_config c = default_config();

	c.alt_domain = "alt";
	c.service_ttl = "a=1s,b*=2s,*=3s";
	for (long n = 0;; n++) {
		struct dns_lookup *l = NULL;
		int rc;

		fault_alloc_fail_at(n);
		rc = dns_lookup_new(&l, &c, NULL);
		fault_alloc_fail_at(-1);
		if (rc == 0) {
			dns_lookup_free(l);
			break;
		}
		ck_assert_int_eq(rc, BCN_ENOMEM);
	}
}
END_TEST

static Suite *lookup_suite(void)
{
	Suite *s = suite_create("dns_lookup");
	TCase *t = tcase_create("lookup");

	tcase_add_checked_fixture(t, setup, teardown);
	tcase_set_timeout(t, 60);
	tcase_add_test(t, service_srv);
	tcase_add_test(t, service_a_aaaa_any);
	tcase_add_test(t, service_dedupes_addresses);
	tcase_add_test(t, service_hostname_address);
	tcase_add_test(t, service_tags);
	tcase_add_test(t, service_rfc2782);
	tcase_add_test(t, service_datacenters);
	tcase_add_test(t, service_case_insensitive);
	tcase_add_test(t, health_filtering);
	tcase_add_test(t, caches_follow_the_catalog);
	tcase_add_test(t, shuffled);
	tcase_add_test(t, node_lookups);
	tcase_add_test(t, addr_lookups);
	tcase_add_test(t, apex_soa_ns);
	tcase_add_test(t, reverse_ptr);
	tcase_add_test(t, refused_notimp_forward);
	tcase_add_test(t, error_reply);
	tcase_add_test(t, truncation_udp);
	tcase_add_test(t, truncation_edns);
	tcase_add_test(t, truncation_tcp);
	tcase_add_test(t, one_answer_always);
	tcase_add_test(t, ttls);
	tcase_add_test(t, bad_configs);
	tcase_add_test(t, alt_domain);
	tcase_add_test(t, edns_echo);
	tcase_add_test(t, small_buffers);
	tcase_add_test(t, no_catalog);
	tcase_add_test(t, lookup_survives_every_oom);
	tcase_add_test(t, new_survives_every_oom);
	tcase_add_test(t, cache_hit_same_bytes);
	tcase_add_test(t, cache_same_as_uncached);
	tcase_add_test(t, cache_follows_the_catalog);
	tcase_add_test(t, cache_trusts_the_version);
	tcase_add_test(t, cache_keeps_variants_apart);
	tcase_add_test(t, cache_soa_serial_follows_time);
	tcase_add_test(t, cache_shuffle_uniform);
	tcase_add_test(t, cache_bounded);
	tcase_add_test(t, cache_survives_every_oom);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return unit_run(lookup_suite());
}

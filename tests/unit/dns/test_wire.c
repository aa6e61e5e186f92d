/* Unit tests for dns/wire.c: the query parser, names, and the response
 * encoder.
 *
 * Queries come from dig (captured on 127.0.0.1) or are built by hand;
 * responses are checked with a decoder written here that shares no code
 * with dns/wire.c. With DNS_WIRE_DUMP=<dir> in the environment the
 * round-trip tests also write each response (<name>.bin) and what it must
 * hold (<name>.txt), which tests/unit/dns/check_wire.py reads back with
 * dnspython. */
#include <arpa/inet.h>
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns/wire.h"
#include "tests/lib/fault_alloc.h"
#include "tests/lib/unit_run.h"

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* ---- captured with dig 9.18 against a UDP listener ---------------------- */

/* dig +noedns web.service.consul A */
static const uint8_t q_plain[] = {
    0xac, 0x52, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x03, 0x77, 0x65, 0x62, 0x07, 0x73, 0x65, 0x72, 0x76, 0x69, 0x63, 0x65,
    0x06, 0x63, 0x6f, 0x6e, 0x73, 0x75, 0x6c, 0x00, 0x00, 0x01, 0x00, 0x01};
/* dig WeB.Service.Consul SRV (EDNS with a cookie option) */
static const uint8_t q_cookie[] = {
    0x91, 0xd3, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
    0x03, 0x57, 0x65, 0x42, 0x07, 0x53, 0x65, 0x72, 0x76, 0x69, 0x63, 0x65,
    0x06, 0x43, 0x6f, 0x6e, 0x73, 0x75, 0x6c, 0x00, 0x00, 0x21, 0x00, 0x01,
    0x00, 0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x00,
    0x0a, 0x00, 0x08, 0xfa, 0xf4, 0x19, 0x7e, 0xcd, 0x0a, 0x62, 0x0d};
/* dig +dnssec _web._tcp.service.dc1.consul SRV */
static const uint8_t q_dnssec[] = {
    0x3a, 0xb1, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
    0x04, 0x5f, 0x77, 0x65, 0x62, 0x04, 0x5f, 0x74, 0x63, 0x70, 0x07, 0x73,
    0x65, 0x72, 0x76, 0x69, 0x63, 0x65, 0x03, 0x64, 0x63, 0x31, 0x06, 0x63,
    0x6f, 0x6e, 0x73, 0x75, 0x6c, 0x00, 0x00, 0x21, 0x00, 0x01, 0x00, 0x00,
    0x29, 0x04, 0xd0, 0x00, 0x00, 0x80, 0x00, 0x00, 0x0c, 0x00, 0x0a, 0x00,
    0x08, 0xcd, 0x7d, 0xac, 0x7d, 0x04, 0x6a, 0x73, 0xea};
/* dig +nocookie -x 10.0.0.1 */
static const uint8_t q_ptr4[] = {
    0x30, 0x4f, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x01, 0x01, 0x31, 0x01, 0x30, 0x01, 0x30, 0x02, 0x31,
    0x30, 0x07, 0x69, 0x6e, 0x2d, 0x61, 0x64, 0x64, 0x72, 0x04,
    0x61, 0x72, 0x70, 0x61, 0x00, 0x00, 0x0c, 0x00, 0x01, 0x00,
    0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
/* dig +nocookie -x 2001:db8::1 */
static const uint8_t q_ptr6[] = {
    0xdc, 0x7b, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
    0x01, 0x31, 0x01, 0x30, 0x01, 0x30, 0x01, 0x30, 0x01, 0x30, 0x01, 0x30,
    0x01, 0x30, 0x01, 0x30, 0x01, 0x30, 0x01, 0x30, 0x01, 0x30, 0x01, 0x30,
    0x01, 0x30, 0x01, 0x30, 0x01, 0x30, 0x01, 0x30, 0x01, 0x30, 0x01, 0x30,
    0x01, 0x30, 0x01, 0x30, 0x01, 0x30, 0x01, 0x30, 0x01, 0x30, 0x01, 0x30,
    0x01, 0x38, 0x01, 0x62, 0x01, 0x64, 0x01, 0x30, 0x01, 0x31, 0x01, 0x30,
    0x01, 0x30, 0x01, 0x32, 0x03, 0x69, 0x70, 0x36, 0x04, 0x61, 0x72, 0x70,
    0x61, 0x00, 0x00, 0x0c, 0x00, 0x01, 0x00, 0x00, 0x29, 0x04, 0xd0, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00};
/* dig +subnet=192.0.2.0/24 +nocookie node1.node.consul AAAA */
static const uint8_t q_ecs[] = {
    0xbd, 0x8a, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
    0x05, 0x6e, 0x6f, 0x64, 0x65, 0x31, 0x04, 0x6e, 0x6f, 0x64, 0x65, 0x06,
    0x63, 0x6f, 0x6e, 0x73, 0x75, 0x6c, 0x00, 0x00, 0x1c, 0x00, 0x01, 0x00,
    0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0b, 0x00, 0x08,
    0x00, 0x07, 0x00, 0x01, 0x18, 0x00, 0xc0, 0x00, 0x02};
/* dig +nocookie consul SOA */
static const uint8_t q_soa[] = {
    0x4e, 0xed, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
    0x06, 0x63, 0x6f, 0x6e, 0x73, 0x75, 0x6c, 0x00, 0x00, 0x06, 0x00, 0x01,
    0x00, 0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
/* dig +noedns consul NS */
static const uint8_t q_ns[] = {0x18, 0xad, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00,
			       0x00, 0x00, 0x00, 0x00, 0x06, 0x63, 0x6f, 0x6e,
			       0x73, 0x75, 0x6c, 0x00, 0x00, 0x02, 0x00, 0x01};
/* dig +noedns db.node.consul TXT */
static const uint8_t q_txt[] = {0x7a, 0x2b, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00,
				0x00, 0x00, 0x00, 0x00, 0x02, 0x64, 0x62, 0x04,
				0x6e, 0x6f, 0x64, 0x65, 0x06, 0x63, 0x6f, 0x6e,
				0x73, 0x75, 0x6c, 0x00, 0x00, 0x10, 0x00, 0x01};
/* dig +edns=1 +nocookie foo.consul A */
static const uint8_t q_edns1[] = {
    0xce, 0xc3, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x01, 0x03, 0x66, 0x6f, 0x6f, 0x06, 0x63, 0x6f, 0x6e,
    0x73, 0x75, 0x6c, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00,
    0x29, 0x04, 0xd0, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00};

static const struct {
	const uint8_t *p;
	size_t len;
} captured[] = {
    {q_plain, sizeof q_plain},	 {q_cookie, sizeof q_cookie},
    {q_dnssec, sizeof q_dnssec}, {q_ptr4, sizeof q_ptr4},
    {q_ptr6, sizeof q_ptr6},	 {q_ecs, sizeof q_ecs},
    {q_soa, sizeof q_soa},	 {q_ns, sizeof q_ns},
    {q_txt, sizeof q_txt},	 {q_edns1, sizeof q_edns1},
};

/* ---- helpers ------------------------------------------------------------ */

static struct dns_query q;

static void setup(void)
{
	fault_alloc_fail_at(-1);
	memset(&q, 0xA5, sizeof q); /* no field may be read unset */
}

/* Parse @p[0..n) into @q from an exact-size heap copy (so that ASan sees
 * over-reads) that is scribbled over and freed before returning: nothing
 * in @q may point into it. */
static int parse(const void *p, size_t n)
{
	uint8_t *copy = malloc(n > 0 ? n : 1);
	int rc;

	ck_assert_ptr_nonnull(copy);
	memcpy(copy, p, n);
	rc = dns_query_parse(&q, copy, n);
	memset(copy, 0xEE, n);
	free(copy);
	if (rc != 0) {
		ck_assert_int_eq(rc, BCN_EINVAL);
		ck_assert_ptr_nonnull(q.why);
		ck_assert(q.rcode == DNS_RCODE_DROP ||
			  q.rcode == DNS_RCODE_FORMERR ||
			  q.rcode == DNS_RCODE_NOTIMP);
	} else {
		ck_assert_int_eq(q.rcode, DNS_RCODE_NOERROR);
		ck_assert_uint_eq(strlen(q.text), q.text_len);
	}
	return rc;
}

#define PARSE(a) parse((a), sizeof(a))

static void expect_fail(const void *p, size_t n, int rcode)
{
	ck_assert_int_eq(parse(p, n), BCN_EINVAL);
	ck_assert_int_eq(q.rcode, rcode);
}

/* A message under construction, by hand. */
struct mb {
	uint8_t b[70000];
	size_t n;
};

static void mb_u8(struct mb *m, unsigned v)
{
	ck_assert_uint_lt(m->n, sizeof m->b);
	m->b[m->n++] = (uint8_t)v;
}

static void mb_u16(struct mb *m, unsigned v)
{
	mb_u8(m, v >> 8 & 0xff);
	mb_u8(m, v & 0xff);
}

static void mb_u32(struct mb *m, uint32_t v)
{
	mb_u16(m, v >> 16);
	mb_u16(m, v & 0xffff);
}

static void mb_bytes(struct mb *m, const void *p, size_t n)
{
	ck_assert_uint_le(m->n + n, sizeof m->b);
	memcpy(m->b + m->n, p, n);
	m->n += n;
}

/* Labels of the dotted @s, without the root label (so that a pointer may
 * follow); "" writes nothing. */
static void mb_labels(struct mb *m, const char *s)
{
	while (*s != '\0') {
		const char *dot = strchr(s, '.');
		size_t n = dot != NULL ? (size_t)(dot - s) : strlen(s);

		mb_u8(m, (unsigned)n);
		mb_bytes(m, s, n);
		s += n + (dot != NULL);
	}
}

static void mb_name(struct mb *m, const char *s)
{
	mb_labels(m, s);
	mb_u8(m, 0);
}

static void mb_header(struct mb *m, unsigned id, unsigned flags, unsigned qd,
		      unsigned an, unsigned ns, unsigned ar)
{
	m->n = 0;
	mb_u16(m, id);
	mb_u16(m, flags);
	mb_u16(m, qd);
	mb_u16(m, an);
	mb_u16(m, ns);
	mb_u16(m, ar);
}

/* A query for @name/@type with @ar additional records still to come. */
static void mb_query(struct mb *m, const char *name, unsigned type, unsigned ar)
{
	mb_header(m, 0x1234, DNS_FLAG_RD, 1, 0, 0, ar);
	mb_name(m, name);
	mb_u16(m, type);
	mb_u16(m, DNS_CLASS_IN);
}

/* An OPT record header; @rdlen bytes of options must follow. */
static void mb_opt(struct mb *m, unsigned udp, uint32_t ttl, unsigned rdlen)
{
	mb_u8(m, 0);
	mb_u16(m, DNS_TYPE_OPT);
	mb_u16(m, udp);
	mb_u32(m, ttl);
	mb_u16(m, rdlen);
}

static struct dns_name name_of(const char *s)
{
	struct dns_name n;

	ck_assert_msg(dns_name_from_text(&n, s, strlen(s)) == 0, "%s", s);
	return n;
}

static const char *text_of(const struct dns_name *n)
{
	static char buf[DNS_MAX_TEXT + 1];
	size_t len;

	ck_assert_int_eq(dns_name_to_text(n, buf, sizeof buf, &len), 0);
	return buf;
}

/* ---- a decoder that shares nothing with dns/wire.c ---------------------- */

/* Read the name at @m[*off] as dotted text into @out[0..256), case kept,
 * and advance *@off. Pointers must go backwards. */
static void t_name(const uint8_t *m, size_t len, size_t *off, char *out)
{
	size_t pos = *off, o = 0;
	int jumps = 0;

	for (;;) {
		uint8_t c;

		ck_assert_uint_lt(pos, len);
		c = m[pos];
		if ((c & 0xC0) == 0xC0) {
			size_t t;

			ck_assert_uint_lt(pos + 1, len);
			t = (size_t)(c & 0x3F) << 8 | m[pos + 1];
			ck_assert_uint_lt(t, pos);
			ck_assert_uint_ge(t, 12);
			if (jumps++ == 0)
				*off = pos + 2;
			ck_assert_int_lt(jumps, 128);
			pos = t;
			continue;
		}
		ck_assert_uint_eq(c & 0xC0, 0);
		if (c == 0)
			break;
		ck_assert_uint_le(pos + 1 + c, len);
		if (o > 0)
			out[o++] = '.';
		ck_assert_uint_lt(o + c, 256);
		memcpy(out + o, m + pos + 1, c);
		o += c;
		pos += 1 + (size_t)c;
	}
	if (jumps == 0)
		*off = pos + 1;
	out[o] = '\0';
}

static unsigned t_u16(const uint8_t *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

static uint32_t t_u32(const uint8_t *p)
{
	return (uint32_t)t_u16(p) << 16 | t_u16(p + 2);
}

struct t_rr {
	int sec;
	char owner[256];
	size_t owner_off;
	unsigned type, cls;
	uint32_t ttl;
	size_t rdoff, rdlen;
};

struct t_msg {
	unsigned id, flags, count[4];
	char qname[256];
	unsigned qtype, qclass;
	size_t n;
	struct t_rr rr[1024];
};

static struct t_msg tm;

/* Decode @m whole into @tm: every count must match, nothing may follow. */
static void t_walk(const uint8_t *m, size_t len)
{
	size_t off = 12;

	ck_assert_uint_ge(len, 12);
	memset(&tm, 0, sizeof tm);
	tm.id = t_u16(m);
	tm.flags = t_u16(m + 2);
	for (int s = 0; s < 4; s++)
		tm.count[s] = t_u16(m + 4 + 2 * s);
	ck_assert_uint_le(tm.count[0], 1);
	if (tm.count[0] == 1) {
		t_name(m, len, &off, tm.qname);
		ck_assert_uint_le(off + 4, len);
		tm.qtype = t_u16(m + off);
		tm.qclass = t_u16(m + off + 2);
		off += 4;
	}
	for (int s = 1; s < 4; s++)
		for (unsigned i = 0; i < tm.count[s]; i++) {
			struct t_rr *r = &tm.rr[tm.n++];

			ck_assert_uint_le(tm.n, N_OF(tm.rr));
			r->sec = s;
			r->owner_off = off;
			t_name(m, len, &off, r->owner);
			ck_assert_uint_le(off + 10, len);
			r->type = t_u16(m + off);
			r->cls = t_u16(m + off + 2);
			r->ttl = t_u32(m + off + 4);
			r->rdlen = t_u16(m + off + 8);
			r->rdoff = off + 10;
			off = r->rdoff + r->rdlen;
			ck_assert_uint_le(off, len);
		}
	ck_assert_uint_eq(off, len);
}

/* ---- records described as text, for the encoder tests ------------------- */

struct trec {
	enum dns_section sec;
	const char *owner;
	uint16_t type;
	uint32_t ttl;
	const char *addr;  /* A, AAAA */
	const char *name;  /* NS, CNAME, PTR, SRV target, SOA mname */
	const char *name2; /* SOA rname */
	uint16_t prio, weight, port;
	const char *txt[4]; /* NULL-terminated */
	uint32_t soa[5];
};

/* Storage behind one struct dns_rr. */
struct rr_store {
	struct dns_rr rr;
	struct dns_name owner, n1, n2;
	struct dns_str strs[4];
};

static const struct dns_rr *rr_of(struct rr_store *st, const struct trec *t)
{
	struct dns_rr *rr = &st->rr;

	memset(st, 0, sizeof *st);
	st->owner = name_of(t->owner);
	rr->owner = &st->owner;
	rr->type = t->type;
	rr->rclass = DNS_CLASS_IN;
	rr->ttl = t->ttl;
	if (t->name != NULL)
		st->n1 = name_of(t->name);
	if (t->name2 != NULL)
		st->n2 = name_of(t->name2);
	switch (t->type) {
	case DNS_TYPE_A:
		ck_assert_int_eq(inet_pton(AF_INET, t->addr, rr->rd.a), 1);
		break;
	case DNS_TYPE_AAAA:
		ck_assert_int_eq(inet_pton(AF_INET6, t->addr, rr->rd.aaaa), 1);
		break;
	case DNS_TYPE_NS:
	case DNS_TYPE_CNAME:
	case DNS_TYPE_PTR:
		rr->rd.name = &st->n1;
		break;
	case DNS_TYPE_SRV:
		rr->rd.srv.priority = t->prio;
		rr->rd.srv.weight = t->weight;
		rr->rd.srv.port = t->port;
		rr->rd.srv.target = &st->n1;
		break;
	case DNS_TYPE_TXT:
		for (size_t i = 0; t->txt[i] != NULL; i++) {
			st->strs[i].p = t->txt[i];
			st->strs[i].len = strlen(t->txt[i]);
			rr->rd.txt.n = i + 1;
		}
		rr->rd.txt.strs = st->strs;
		break;
	case DNS_TYPE_SOA:
		rr->rd.soa.mname = &st->n1;
		rr->rd.soa.rname = &st->n2;
		rr->rd.soa.serial = t->soa[0];
		rr->rd.soa.refresh = t->soa[1];
		rr->rd.soa.retry = t->soa[2];
		rr->rd.soa.expire = t->soa[3];
		rr->rd.soa.minimum = t->soa[4];
		break;
	}
	return rr;
}

static int add(struct dns_msg *m, const struct trec *t)
{
	struct rr_store st;

	return dns_msg_add_rr(m, t->sec, rr_of(&st, t));
}

static bool eq_nocase(const char *a, const char *b)
{
	return strcasecmp(a, b) == 0;
}

/* Check the decoded record @r of message @m against @t. */
static void check_rr(const uint8_t *m, size_t len, const struct t_rr *r,
		     const struct trec *t)
{
	const uint8_t *rd = m + r->rdoff;
	char name[256];
	uint8_t addr[16];
	size_t off = r->rdoff;

	ck_assert_int_eq(r->sec, t->sec);
	ck_assert_msg(eq_nocase(r->owner, t->owner), "%s != %s", r->owner,
		      t->owner);
	ck_assert_uint_eq(r->type, t->type);
	ck_assert_uint_eq(r->cls, DNS_CLASS_IN);
	ck_assert_uint_eq(r->ttl, t->ttl);
	switch (t->type) {
	case DNS_TYPE_A:
		ck_assert_int_eq(inet_pton(AF_INET, t->addr, addr), 1);
		ck_assert_uint_eq(r->rdlen, 4);
		ck_assert_mem_eq(rd, addr, 4);
		return;
	case DNS_TYPE_AAAA:
		ck_assert_int_eq(inet_pton(AF_INET6, t->addr, addr), 1);
		ck_assert_uint_eq(r->rdlen, 16);
		ck_assert_mem_eq(rd, addr, 16);
		return;
	case DNS_TYPE_NS:
	case DNS_TYPE_CNAME:
	case DNS_TYPE_PTR:
		t_name(m, len, &off, name);
		ck_assert_msg(eq_nocase(name, t->name), "%s != %s", name,
			      t->name);
		break;
	case DNS_TYPE_SRV:
		ck_assert_uint_eq(t_u16(rd), t->prio);
		ck_assert_uint_eq(t_u16(rd + 2), t->weight);
		ck_assert_uint_eq(t_u16(rd + 4), t->port);
		off += 6;
		/* RFC 2782: the target is never compressed. */
		ck_assert_uint_lt(m[off], 64);
		t_name(m, len, &off, name);
		ck_assert_msg(eq_nocase(name, t->name), "%s != %s", name,
			      t->name);
		ck_assert_uint_eq(off, r->rdoff + r->rdlen);
		for (size_t p = r->rdoff + 6; m[p] != 0; p += 1 + m[p])
			ck_assert_uint_lt(m[p], 64); /* no pointer at all */
		break;
	case DNS_TYPE_TXT:
		for (size_t i = 0; t->txt[i] != NULL; i++) {
			size_t n = strlen(t->txt[i]);

			ck_assert_uint_lt(off, r->rdoff + r->rdlen);
			ck_assert_uint_eq(m[off], n);
			ck_assert_mem_eq(m + off + 1, t->txt[i], n);
			off += 1 + n;
		}
		break;
	case DNS_TYPE_SOA:
		t_name(m, len, &off, name);
		ck_assert_msg(eq_nocase(name, t->name), "%s != %s", name,
			      t->name);
		t_name(m, len, &off, name);
		ck_assert_msg(eq_nocase(name, t->name2), "%s != %s", name,
			      t->name2);
		for (int i = 0; i < 5; i++, off += 4)
			ck_assert_uint_eq(t_u32(m + off), t->soa[i]);
		break;
	default:
		ck_abort_msg("type %u", t->type);
	}
	ck_assert_uint_eq(off, r->rdoff + r->rdlen);
}

/* ---- what check_wire.py compares with dnspython's reading --------------- */

struct expect {
	char s[16384];
	size_t n;
};

static void BCN_PRINTF(2, 3) ex(struct expect *e, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(e->s + e->n, sizeof e->s - e->n, fmt, ap);
	va_end(ap);
	ck_assert_int_ge(n, 0);
	ck_assert_uint_lt(e->n + (size_t)n, sizeof e->s);
	e->n += (size_t)n;
}

static const char *type_name(uint16_t t)
{
	switch (t) {
	case DNS_TYPE_A:
		return "A";
	case DNS_TYPE_AAAA:
		return "AAAA";
	case DNS_TYPE_NS:
		return "NS";
	case DNS_TYPE_CNAME:
		return "CNAME";
	case DNS_TYPE_PTR:
		return "PTR";
	case DNS_TYPE_SRV:
		return "SRV";
	case DNS_TYPE_TXT:
		return "TXT";
	case DNS_TYPE_SOA:
		return "SOA";
	}
	return "?";
}

/* One line per record, in dnspython's text form. */
static void ex_rr(struct expect *e, const struct trec *t)
{
	static const char *sec[] = {"question", "answer", "authority",
				    "additional"};
	char a[INET6_ADDRSTRLEN];
	uint8_t bin[16];

	ex(e, "%s %s. %u IN %s ", sec[t->sec], t->owner, (unsigned)t->ttl,
	   type_name(t->type));
	switch (t->type) {
	case DNS_TYPE_A:
	case DNS_TYPE_AAAA: {
		int af = t->type == DNS_TYPE_A ? AF_INET : AF_INET6;

		ck_assert_int_eq(inet_pton(af, t->addr, bin), 1);
		ck_assert_ptr_nonnull(inet_ntop(af, bin, a, sizeof a));
		ex(e, "%s\n", a);
		break;
	}
	case DNS_TYPE_NS:
	case DNS_TYPE_CNAME:
	case DNS_TYPE_PTR:
		ex(e, "%s.\n", t->name);
		break;
	case DNS_TYPE_SRV:
		ex(e, "%u %u %u %s.\n", t->prio, t->weight, t->port, t->name);
		break;
	case DNS_TYPE_TXT:
		for (size_t i = 0; t->txt[i] != NULL; i++)
			ex(e, "%s\"%s\"", i > 0 ? " " : "", t->txt[i]);
		ex(e, "\n");
		break;
	case DNS_TYPE_SOA:
		ex(e, "%s. %s. %u %u %u %u %u\n", t->name, t->name2,
		   (unsigned)t->soa[0], (unsigned)t->soa[1],
		   (unsigned)t->soa[2], (unsigned)t->soa[3],
		   (unsigned)t->soa[4]);
		break;
	}
}

/* The header lines: id, flags in dnspython's order, rcode, question. */
static void ex_header(struct expect *e, unsigned id, unsigned flags,
		      const char *rcode, const char *qname, const char *qtype)
{
	static const struct {
		unsigned bit;
		const char *name;
	} fl[] = {{DNS_FLAG_QR, "qr"}, {DNS_FLAG_AA, "aa"}, {DNS_FLAG_TC, "tc"},
		  {DNS_FLAG_RD, "rd"}, {DNS_FLAG_RA, "ra"}, {DNS_FLAG_AD, "ad"},
		  {DNS_FLAG_CD, "cd"}};

	ex(e, "id %u\nflags", id);
	for (size_t i = 0; i < N_OF(fl); i++)
		if (flags & fl[i].bit)
			ex(e, " %s", fl[i].name);
	ex(e, "\nrcode %s\n", rcode);
	if (qname != NULL)
		ex(e, "question %s. IN %s\n", qname, qtype);
}

/* Write @m[0..len) and @e under $DNS_WIRE_DUMP, if set. */
static void dump(const char *name, const uint8_t *m, size_t len,
		 const struct expect *e)
{
	const char *dir = getenv("DNS_WIRE_DUMP");
	char path[4096];
	FILE *f;

	if (dir == NULL)
		return;
	snprintf(path, sizeof path, "%s/%s.bin", dir, name);
	f = fopen(path, "wb");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(m, 1, len, f), len);
	fclose(f);
	snprintf(path, sizeof path, "%s/%s.txt", dir, name);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(e->s, 1, e->n, f), e->n);
	fclose(f);
}

/* ---- parsing what dig sends --------------------------------------------- */

START_TEST(parse_dig_plain)
{
	ck_assert_int_eq(PARSE(q_plain), 0);
	ck_assert_uint_eq(q.hdr.id, 0xac52);
	ck_assert_uint_eq(q.hdr.flags, DNS_FLAG_RD | DNS_FLAG_AD);
	ck_assert_uint_eq(q.hdr.opcode, DNS_OPCODE_QUERY);
	ck_assert_uint_eq(q.hdr.rcode, 0);
	ck_assert_uint_eq(q.hdr.count[DNS_SEC_QUESTION], 1);
	ck_assert_uint_eq(q.hdr.count[DNS_SEC_ADDITIONAL], 0);
	ck_assert_str_eq(q.text, "web.service.consul");
	ck_assert_uint_eq(q.text_len, 18);
	ck_assert_uint_eq(q.question.qtype, DNS_TYPE_A);
	ck_assert_uint_eq(q.question.qclass, DNS_CLASS_IN);
	ck_assert(!q.edns.present);
	ck_assert_uint_eq(q.trailing, 0);
	/* The labels, leftmost first. */
	ck_assert_uint_eq(q.lname.n_labels, 3);
	ck_assert_uint_eq(q.lname.len, 20);
	ck_assert_mem_eq(q.lname.data + q.lname.label_off[1], "\7service", 8);
	ck_assert_mem_eq(q.lname.data + q.lname.label_off[2], "\6consul\0", 8);
	ck_assert_mem_eq(q.question.name.data, q_plain + 12, 20);
}
END_TEST

START_TEST(parse_dig_edns_cookie_case)
{
	ck_assert_int_eq(PARSE(q_cookie), 0);
	ck_assert_uint_eq(q.question.qtype, DNS_TYPE_SRV);
	/* Matching uses the lower-cased name and text; the echo keeps the
	 * spelling (resolvers using 0x20 randomisation compare it). */
	ck_assert_str_eq(q.text, "web.service.consul");
	ck_assert_mem_eq(q.question.name.data, "\3WeB\7Service\6Consul", 19);
	ck_assert_mem_eq(q.lname.data, "\3web\7service\6consul", 19);
	ck_assert(q.edns.present);
	ck_assert_uint_eq(q.edns.udp_size, 1232);
	ck_assert_uint_eq(q.edns.version, 0);
	ck_assert_uint_eq(q.edns.ext_rcode, 0);
	ck_assert(!q.edns.do_bit);
	ck_assert(!q.edns.ecs.present); /* the cookie is skipped */
	ck_assert_uint_eq(q.trailing, 0);
}
END_TEST

START_TEST(parse_dig_do_bit_and_version)
{
	ck_assert_int_eq(PARSE(q_dnssec), 0);
	ck_assert_str_eq(q.text, "_web._tcp.service.dc1.consul");
	ck_assert(q.edns.present);
	ck_assert(q.edns.do_bit);

	ck_assert_int_eq(PARSE(q_edns1), 0);
	ck_assert(q.edns.present);
	ck_assert_uint_eq(q.edns.version, 1); /* the server answers BADVERS */
	ck_assert(!q.edns.do_bit);
}
END_TEST

START_TEST(parse_dig_client_subnet)
{
	static const uint8_t want[16] = {192, 0, 2};

	ck_assert_int_eq(PARSE(q_ecs), 0);
	ck_assert_str_eq(q.text, "node1.node.consul");
	ck_assert_uint_eq(q.question.qtype, DNS_TYPE_AAAA);
	ck_assert(q.edns.ecs.present);
	ck_assert_uint_eq(q.edns.ecs.family, 1);
	ck_assert_uint_eq(q.edns.ecs.source_prefix, 24);
	ck_assert_uint_eq(q.edns.ecs.scope_prefix, 0);
	ck_assert_mem_eq(q.edns.ecs.addr, want, 16);
}
END_TEST

START_TEST(parse_dig_reverse)
{
	static const uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
	uint8_t addr[16];
	size_t alen = 0;

	ck_assert_int_eq(PARSE(q_ptr4), 0);
	ck_assert_str_eq(q.text, "1.0.0.10.in-addr.arpa");
	ck_assert_uint_eq(q.question.qtype, DNS_TYPE_PTR);
	ck_assert_int_eq(dns_ptr_parse(&q.lname, addr, &alen), 0);
	ck_assert_uint_eq(alen, 4);
	ck_assert_mem_eq(addr, "\x0a\0\0\x01", 4);

	ck_assert_int_eq(PARSE(q_ptr6), 0);
	ck_assert_uint_eq(q.lname.n_labels, 34);
	ck_assert_int_eq(dns_ptr_parse(&q.lname, addr, &alen), 0);
	ck_assert_uint_eq(alen, 16);
	ck_assert_mem_eq(addr, v6, 16);
}
END_TEST

START_TEST(parse_dig_other_types)
{
	ck_assert_int_eq(PARSE(q_soa), 0);
	ck_assert_str_eq(q.text, "consul");
	ck_assert_uint_eq(q.question.qtype, DNS_TYPE_SOA);
	ck_assert(q.edns.present);
	ck_assert_int_eq(PARSE(q_ns), 0);
	ck_assert_uint_eq(q.question.qtype, DNS_TYPE_NS);
	ck_assert(!q.edns.present);
	ck_assert_int_eq(PARSE(q_txt), 0);
	ck_assert_str_eq(q.text, "db.node.consul");
	ck_assert_uint_eq(q.question.qtype, DNS_TYPE_TXT);
}
END_TEST

/* ---- parsing hand-made queries ------------------------------------------ */

START_TEST(parse_root_and_longest_names)
{
	struct mb m;
	char l63[64], text[300];

	mb_query(&m, "", DNS_TYPE_NS, 0);
	ck_assert_int_eq(parse(m.b, m.n), 0);
	ck_assert_str_eq(q.text, "");
	ck_assert_uint_eq(q.lname.len, 1);
	ck_assert_uint_eq(q.lname.n_labels, 0);

	/* 63-byte labels; 3 * 64 + 62 + 1 = 255 bytes on the wire. */
	memset(l63, 'a', 63);
	l63[63] = '\0';
	snprintf(text, sizeof text, "%s.%s.%s.%.61s", l63, l63, l63, l63);
	mb_query(&m, text, DNS_TYPE_A, 0);
	ck_assert_int_eq(parse(m.b, m.n), 0);
	ck_assert_uint_eq(q.lname.len, 255);
	ck_assert_str_eq(q.text, text);
	ck_assert_uint_eq(q.text_len, 253);

	/* 127 one-byte labels: the most there can be. */
	text[0] = '\0';
	for (int i = 0; i < 127; i++)
		strcat(text, i == 0 ? "x" : ".x");
	mb_query(&m, text, DNS_TYPE_A, 0);
	ck_assert_int_eq(parse(m.b, m.n), 0);
	ck_assert_uint_eq(q.lname.len, 255);
	ck_assert_uint_eq(q.lname.n_labels, 127);
	ck_assert_uint_eq(q.lname.label_off[126], 252);

	/* One byte more, either way. */
	snprintf(text, sizeof text, "%s.%s.%s.%.62s", l63, l63, l63, l63);
	mb_query(&m, text, DNS_TYPE_A, 0);
	expect_fail(m.b, m.n, DNS_RCODE_FORMERR);
	text[0] = '\0';
	for (int i = 0; i < 128; i++)
		strcat(text, i == 0 ? "x" : ".x");
	mb_query(&m, text, DNS_TYPE_A, 0);
	expect_fail(m.b, m.n, DNS_RCODE_FORMERR);
}
END_TEST

START_TEST(parse_every_truncation)
{
	for (size_t i = 0; i < N_OF(captured); i++) {
		ck_assert_int_eq(parse(captured[i].p, captured[i].len), 0);
		for (size_t n = 0; n < captured[i].len; n++)
			expect_fail(captured[i].p, n,
				    n < 12 ? DNS_RCODE_DROP
					   : DNS_RCODE_FORMERR);
	}
}
END_TEST

START_TEST(parse_label_type_bits)
{
	static const unsigned bad[] = {0x40, 0x41, 0x7f, 0x80, 0xbf};
	struct mb m;

	for (size_t i = 0; i < N_OF(bad); i++) {
		/* A label length of 64 or more has 0x40 or 0x80 set. */
		mb_header(&m, 1, 0, 1, 0, 0, 0);
		mb_u8(&m, bad[i]);
		for (int k = 0; k < 200; k++)
			mb_u8(&m, 'a');
		mb_u8(&m, 0);
		mb_u32(&m, 0x00010001);
		expect_fail(m.b, m.n, DNS_RCODE_FORMERR);
		ck_assert_str_eq(q.why, "malformed question");
	}
	/* The same in a later label. */
	mb_header(&m, 1, 0, 1, 0, 0, 0);
	mb_labels(&m, "ok");
	mb_u8(&m, 0x80);
	mb_u8(&m, 0);
	mb_u32(&m, 0x00010001);
	expect_fail(m.b, m.n, DNS_RCODE_FORMERR);
}
END_TEST

/* A query whose answer section holds one A record owned by the name at
 * @owner (bytes); the question is "www.example.com" at offset 12. */
static void mb_with_answer(struct mb *m, const uint8_t *owner, size_t n)
{
	mb_header(m, 7, 0, 1, 1, 0, 0);
	mb_name(m, "www.example.com"); /* offsets 12..28; "example" at 16 */
	mb_u32(m, 0x00010001);
	mb_bytes(m, owner, n);
	mb_u16(m, DNS_TYPE_A);
	mb_u16(m, DNS_CLASS_IN);
	mb_u32(m, 60);
	mb_u16(m, 4);
	mb_u32(m, 0x0a000001);
}

START_TEST(parse_compression_pointers)
{
	struct mb m;

	/* Legal: whole name, suffix, labels then a pointer. */
	mb_with_answer(&m, (const uint8_t[]){0xc0, 12}, 2);
	ck_assert_int_eq(parse(m.b, m.n), 0);
	mb_with_answer(&m, (const uint8_t[]){0xc0, 16}, 2);
	ck_assert_int_eq(parse(m.b, m.n), 0);
	mb_with_answer(&m, (const uint8_t[]){1, 'a', 0xc0, 16}, 4);
	ck_assert_int_eq(parse(m.b, m.n), 0);
	/* Into the header, which holds no name. */
	mb_with_answer(&m, (const uint8_t[]){0xc0, 4}, 2);
	expect_fail(m.b, m.n, DNS_RCODE_FORMERR);
	/* To itself, forwards, past the end, cut short. */
	mb_with_answer(&m, (const uint8_t[]){0xc0, 33}, 2);
	expect_fail(m.b, m.n, DNS_RCODE_FORMERR);
	mb_with_answer(&m, (const uint8_t[]){0xc0, 35}, 2);
	expect_fail(m.b, m.n, DNS_RCODE_FORMERR);
	mb_with_answer(&m, (const uint8_t[]){0xff, 0xff}, 2);
	expect_fail(m.b, m.n, DNS_RCODE_FORMERR);
	m.n = 0;
	mb_header(&m, 7, 0, 1, 0, 0, 0);
	mb_labels(&m, "www");
	mb_u8(&m, 0xc0); /* the message ends inside the pointer */
	expect_fail(m.b, m.n, DNS_RCODE_FORMERR);
	/* Into its own earlier labels: "a" + pointer to "a" would repeat
	 * for ever; it points inside the fragment it is part of. */
	mb_with_answer(&m, (const uint8_t[]){1, 'a', 0xc0, 33}, 4);
	expect_fail(m.b, m.n, DNS_RCODE_FORMERR);
	/* The question itself cannot be compressed: only the header lies
	 * before it. */
	mb_header(&m, 7, 0, 1, 0, 0, 0);
	mb_labels(&m, "www");
	mb_u16(&m, 0xc000 | 12);
	mb_u32(&m, 0x00010001);
	expect_fail(m.b, m.n, DNS_RCODE_FORMERR);
}
END_TEST

/* Two pointers taking turns would loop; a pointer that lands inside a
 * label and climbs back out would loop too if "backwards from the
 * pointer" were the only rule. Both go below their fragment's start. */
START_TEST(parse_pointer_loops)
{
	struct mb m;
	struct dns_name n;
	size_t off;

	/* 12: c0 14, 14: c0 12 */
	mb_header(&m, 0, 0, 0, 0, 0, 0);
	mb_u16(&m, 0xc000 | 14);
	mb_u16(&m, 0xc000 | 12);
	off = 12;
	ck_assert_int_eq(dns_name_unpack(&n, m.b, m.n, &off), BCN_EINVAL);
	off = 14;
	ck_assert_int_eq(dns_name_unpack(&n, m.b, m.n, &off), BCN_EINVAL);

	/* 12: "ab", 15: a pointer to 12. From 15 the pointer goes backwards,
	 * then the label at 12 leads back over it, to the same pointer:
	 * below its own position, but not below its fragment (12). */
	mb_header(&m, 0, 0, 0, 0, 0, 0);
	mb_labels(&m, "ab");
	mb_u16(&m, 0xc000 | 12);
	off = 15;
	ck_assert_int_eq(dns_name_unpack(&n, m.b, m.n, &off), BCN_EINVAL);
	off = 12;
	ck_assert_int_eq(dns_name_unpack(&n, m.b, m.n, &off), BCN_EINVAL);
	/* A label that covers a pointer, and a pointer into the label. */
	mb_header(&m, 0, 0, 0, 0, 0, 0);
	mb_u8(&m, 3);
	mb_u8(&m, 'x');
	mb_u16(&m, 0xc000 | 12); /* the label's last two bytes */
	mb_u16(&m, 0xc000 | 14); /* 16: into the label: fine; then to 12 */
	off = 16;
	ck_assert_int_eq(dns_name_unpack(&n, m.b, m.n, &off), BCN_EINVAL);
	/* Into its own fragment, even where that would end: label "\0y",
	 * then a pointer to the NUL inside it (a root label if read there). */
	mb_header(&m, 0, 0, 0, 0, 0, 0);
	mb_bytes(&m, "\2\0y\xc0\x0d", 5);
	off = 12;
	ck_assert_int_eq(dns_name_unpack(&n, m.b, m.n, &off), BCN_EINVAL);
}
END_TEST

START_TEST(unpack_jump_limit)
{
	struct mb m;
	struct dns_name n;
	size_t off;

	/* 12: "a" root; then pointers, each to the one before. */
	mb_header(&m, 0, 0, 0, 0, 0, 0);
	mb_name(&m, "a");
	mb_u16(&m, 0xc000 | 12);
	for (int i = 1; i < DNS_MAX_JUMPS + 1; i++)
		mb_u16(&m, 0xc000 | (15 + 2 * (i - 1)));
	/* The pointer at 15 + 2k makes a chain of k + 1 jumps. */
	off = 15 + 2 * (DNS_MAX_JUMPS - 1);
	ck_assert_int_eq(dns_name_unpack(&n, m.b, m.n, &off), 0);
	ck_assert_uint_eq(off, 15 + 2 * DNS_MAX_JUMPS);
	ck_assert_uint_eq(n.len, 3);
	ck_assert_mem_eq(n.data, "\1a", 3);
	off = 15 + 2 * DNS_MAX_JUMPS;
	ck_assert_int_eq(dns_name_unpack(&n, m.b, m.n, &off), BCN_EINVAL);
	/* Labels picked up along the way count towards 255. */
	mb_header(&m, 0, 0, 0, 0, 0, 0);
	for (int i = 0; i < 3; i++) {
		mb_u8(&m, 63);
		for (int k = 0; k < 63; k++)
			mb_u8(&m, 'a' + i);
	}
	mb_u8(&m, 0); /* 12 + 192 = 204: a 193-byte name */
	mb_u8(&m, 62);
	for (int k = 0; k < 62; k++)
		mb_u8(&m, 'z');
	mb_u16(&m, 0xc000 | (12 + 128)); /* + "ccc..." = 63 + 64 + 1 */
	off = 205;
	ck_assert_int_eq(dns_name_unpack(&n, m.b, m.n, &off), 0);
	ck_assert_uint_eq(n.len, 63 + 64 + 1);
	m.n = 205;
	mb_u8(&m, 63);
	for (int k = 0; k < 63; k++)
		mb_u8(&m, 'z');
	mb_u8(&m, 63);
	for (int k = 0; k < 63; k++)
		mb_u8(&m, 'y');
	mb_u16(&m, 0xc000 | 12); /* 128 + 193 > 255 */
	off = 205;
	ck_assert_int_eq(dns_name_unpack(&n, m.b, m.n, &off), BCN_EINVAL);
}
END_TEST

START_TEST(parse_counts)
{
	struct mb m;

	mb_header(&m, 1, 0, 0, 0, 0, 0);
	expect_fail(m.b, m.n, DNS_RCODE_FORMERR);
	ck_assert_str_eq(q.why, "question count not 1");
	ck_assert_uint_eq(q.hdr.id, 1); /* enough to answer FORMERR */

	mb_header(&m, 1, 0, 2, 0, 0, 0);
	mb_name(&m, "a");
	mb_u32(&m, 0x00010001);
	mb_name(&m, "b");
	mb_u32(&m, 0x00010001);
	expect_fail(m.b, m.n, DNS_RCODE_FORMERR);

	/* More records than a query carries (miekg/dns's limits). */
	const unsigned too_many[][3] = {
	    {2, 0, 0}, {0, 2, 0}, {0, 0, 3}, {65535, 65535, 65535}};
	for (size_t i = 0; i < N_OF(too_many); i++) {
		mb_header(&m, 1, 0, 1, too_many[i][0], too_many[i][1],
			  too_many[i][2]);
		mb_name(&m, "a");
		mb_u32(&m, 0x00010001);
		expect_fail(m.b, m.n, DNS_RCODE_FORMERR);
		ck_assert_str_eq(q.why, "too many records");
	}
	/* Counts the message does not hold. */
	mb_header(&m, 1, 0, 1, 1, 1, 2);
	mb_name(&m, "a");
	mb_u32(&m, 0x00010001);
	expect_fail(m.b, m.n, DNS_RCODE_FORMERR);
	ck_assert_str_eq(q.why, "malformed record");
	/* Within the limits, all present: accepted. */
	mb_header(&m, 1, 0, 1, 1, 1, 2);
	mb_name(&m, "a");
	mb_u32(&m, 0x00010001);
	for (int i = 0; i < 4; i++) {
		mb_u16(&m, 0xc000 | 12);
		mb_u16(&m, DNS_TYPE_TXT);
		mb_u16(&m, DNS_CLASS_IN);
		mb_u32(&m, 0);
		mb_u16(&m, 2);
		mb_u16(&m, 0x0178);
	}
	ck_assert_int_eq(parse(m.b, m.n), 0);
	ck_assert(!q.edns.present);
}
END_TEST

START_TEST(reader_huge_counts)
{
	struct mb m;
	struct dns_reader r;
	struct dns_header h;
	struct dns_rr_view rr;

	/* The reader has no limits of its own: it stops at the end. */
	mb_header(&m, 1, DNS_FLAG_QR, 65535, 65535, 65535, 65535);
	mb_name(&m, "a");
	mb_u32(&m, 0x00010001);
	ck_assert_int_eq(dns_reader_init(&r, &h, m.b, m.n), 0);
	ck_assert_uint_eq(h.count[DNS_SEC_ANSWER], 65535);
	ck_assert_int_eq(dns_reader_rr(&r, &rr), BCN_EINVAL);
	ck_assert_int_eq(dns_reader_rr(&r, &rr), BCN_EINVAL); /* stuck */
	ck_assert_int_eq(dns_reader_init(&r, &h, m.b, 11), BCN_EINVAL);
}
END_TEST

START_TEST(parse_header_cases)
{
	struct mb m;

	expect_fail(q_plain, 0, DNS_RCODE_DROP);
	expect_fail(q_plain, 11, DNS_RCODE_DROP);
	/* A response is never answered (no reflection loops). */
	mb_query(&m, "a", DNS_TYPE_A, 0);
	m.b[2] |= 0x80;
	expect_fail(m.b, m.n, DNS_RCODE_DROP);
	/* Another opcode: NOTIMP, with the header to answer it. */
	for (unsigned op = 1; op < 16; op++) {
		mb_query(&m, "a", DNS_TYPE_A, 0);
		m.b[2] = (uint8_t)(op << 3 | 1);
		expect_fail(m.b, m.n, DNS_RCODE_NOTIMP);
		ck_assert_uint_eq(q.hdr.opcode, op);
		ck_assert_uint_eq(q.hdr.id, 0x1234);
		ck_assert_uint_eq(q.hdr.flags, DNS_FLAG_RD);
	}
	/* Flags and rcode bits of a query are reported, not judged. */
	mb_query(&m, "a", DNS_TYPE_A, 0);
	m.b[2] = 0x07; /* AA TC RD */
	m.b[3] = 0xff; /* RA Z AD CD, rcode 15 */
	ck_assert_int_eq(parse(m.b, m.n), 0);
	ck_assert_uint_eq(q.hdr.flags, 0x07f0);
	ck_assert_uint_eq(q.hdr.rcode, 15);
}
END_TEST

START_TEST(parse_too_long)
{
	static uint8_t big[DNS_MAX_MSG + 1];

	memcpy(big, q_plain, sizeof q_plain);
	ck_assert_int_eq(parse(big, DNS_MAX_MSG), 0);
	ck_assert_uint_eq(q.trailing, DNS_MAX_MSG - sizeof q_plain);
	expect_fail(big, sizeof big, DNS_RCODE_DROP);
}
END_TEST

START_TEST(parse_trailing_bytes)
{
	struct mb m;

	/* Ignored, as miekg/dns does, and counted. */
	m.n = 0;
	mb_bytes(&m, q_cookie, sizeof q_cookie);
	mb_bytes(&m, "\xc0\x0c garbage", 10);
	ck_assert_int_eq(parse(m.b, m.n), 0);
	ck_assert_uint_eq(q.trailing, 10);
	ck_assert(q.edns.present);
}
END_TEST

START_TEST(parse_opt_errors)
{
	struct mb m;

	/* Two OPT records. */
	mb_query(&m, "a", DNS_TYPE_A, 2);
	mb_opt(&m, 4096, 0, 0);
	mb_opt(&m, 4096, 0, 0);
	expect_fail(m.b, m.n, DNS_RCODE_FORMERR);
	ck_assert_str_eq(q.why, "more than one OPT record");
	/* In the answer section. */
	mb_query(&m, "a", DNS_TYPE_A, 0);
	m.b[7] = 1;
	mb_opt(&m, 4096, 0, 0);
	expect_fail(m.b, m.n, DNS_RCODE_FORMERR);
	ck_assert_str_eq(q.why, "OPT outside additional section");
	/* Not owned by the root. */
	mb_query(&m, "a", DNS_TYPE_A, 1);
	mb_u16(&m, 0xc000 | 12);
	mb_u16(&m, DNS_TYPE_OPT);
	mb_u16(&m, 512);
	mb_u32(&m, 0);
	mb_u16(&m, 0);
	expect_fail(m.b, m.n, DNS_RCODE_FORMERR);
	ck_assert_str_eq(q.why, "malformed OPT record");
	/* The root by a pointer (to the question's last byte) is the root. */
	mb_query(&m, "a", DNS_TYPE_A, 1);
	mb_u16(&m, 0xc000 | 14);
	mb_u16(&m, DNS_TYPE_OPT);
	mb_u16(&m, 512);
	mb_u32(&m, 0);
	mb_u16(&m, 0);
	ck_assert_int_eq(parse(m.b, m.n), 0);
	ck_assert(q.edns.present);
	/* An option running past the rdata, or a cut option header. */
	mb_query(&m, "a", DNS_TYPE_A, 1);
	mb_opt(&m, 4096, 0, 6);
	mb_u16(&m, 10);
	mb_u16(&m, 3);
	mb_u16(&m, 0);
	expect_fail(m.b, m.n, DNS_RCODE_FORMERR);
	mb_query(&m, "a", DNS_TYPE_A, 1);
	mb_opt(&m, 4096, 0, 3);
	mb_u16(&m, 10);
	mb_u8(&m, 0);
	expect_fail(m.b, m.n, DNS_RCODE_FORMERR);
	/* Unknown options and an empty one are skipped. */
	mb_query(&m, "a", DNS_TYPE_A, 1);
	mb_opt(&m, 100, 0xffffffffu, 9);
	mb_u16(&m, 65001);
	mb_u16(&m, 1);
	mb_u8(&m, 7);
	mb_u32(&m, 0x000c0000);
	ck_assert_int_eq(parse(m.b, m.n), 0);
	ck_assert_uint_eq(q.edns.udp_size, 100); /* the caller clamps */
	ck_assert_uint_eq(q.edns.ext_rcode, 255);
	ck_assert_uint_eq(q.edns.version, 255);
	ck_assert(q.edns.do_bit);
	/* rdata longer than the message. */
	mb_query(&m, "a", DNS_TYPE_A, 1);
	mb_opt(&m, 4096, 0, 1);
	expect_fail(m.b, m.n, DNS_RCODE_FORMERR);
	ck_assert_str_eq(q.why, "malformed record");
}
END_TEST

/* A query with one client subnet option of @family/@src/@scope and @alen
 * address bytes from @addr. */
static void mb_ecs(struct mb *m, unsigned family, unsigned src, unsigned scope,
		   const uint8_t *addr, size_t alen)
{
	mb_query(m, "a", DNS_TYPE_A, 1);
	mb_opt(m, 1232, 0, (unsigned)(4 + 4 + alen));
	mb_u16(m, 8);
	mb_u16(m, (unsigned)(4 + alen));
	mb_u16(m, family);
	mb_u8(m, src);
	mb_u8(m, scope);
	mb_bytes(m, addr, alen);
}

START_TEST(parse_client_subnet)
{
	static const uint8_t a[17] = {10, 1, 0xff, 4, 5, 6, 7, 8, 9};
	struct mb m;

	mb_ecs(&m, 1, 0, 0, a, 0);
	ck_assert_int_eq(parse(m.b, m.n), 0);
	ck_assert(q.edns.ecs.present);
	ck_assert_uint_eq(q.edns.ecs.source_prefix, 0);
	/* Bits past the prefix are cleared. */
	mb_ecs(&m, 1, 20, 0, a, 3);
	ck_assert_int_eq(parse(m.b, m.n), 0);
	ck_assert_mem_eq(q.edns.ecs.addr, "\x0a\x01\xf0\0", 4);
	mb_ecs(&m, 2, 128, 56, a, 16);
	ck_assert_int_eq(parse(m.b, m.n), 0);
	ck_assert_uint_eq(q.edns.ecs.family, 2);
	ck_assert_uint_eq(q.edns.ecs.scope_prefix, 56);
	ck_assert_mem_eq(q.edns.ecs.addr, a, 16);
	/* Unknown family, prefixes too long, address not the prefix's
	 * length, option shorter than its fixed part, two subnets. */
	mb_ecs(&m, 3, 8, 0, a, 1);
	expect_fail(m.b, m.n, DNS_RCODE_FORMERR);
	mb_ecs(&m, 1, 33, 0, a, 5);
	expect_fail(m.b, m.n, DNS_RCODE_FORMERR);
	mb_ecs(&m, 1, 24, 33, a, 3);
	expect_fail(m.b, m.n, DNS_RCODE_FORMERR);
	mb_ecs(&m, 2, 129, 0, a, 17);
	expect_fail(m.b, m.n, DNS_RCODE_FORMERR);
	mb_ecs(&m, 1, 24, 0, a, 4);
	expect_fail(m.b, m.n, DNS_RCODE_FORMERR);
	mb_ecs(&m, 1, 24, 0, a, 2);
	expect_fail(m.b, m.n, DNS_RCODE_FORMERR);
	mb_query(&m, "a", DNS_TYPE_A, 1);
	mb_opt(&m, 1232, 0, 7);
	mb_u16(&m, 8);
	mb_u16(&m, 3);
	mb_u16(&m, 1);
	mb_u8(&m, 0);
	expect_fail(m.b, m.n, DNS_RCODE_FORMERR);
	mb_query(&m, "a", DNS_TYPE_A, 1);
	mb_opt(&m, 1232, 0, 16);
	for (int i = 0; i < 2; i++) {
		mb_u16(&m, 8);
		mb_u16(&m, 4);
		mb_u16(&m, 1);
		mb_u16(&m, 0);
	}
	expect_fail(m.b, m.n, DNS_RCODE_FORMERR);
}
END_TEST

START_TEST(parse_text_escapes)
{
	struct mb m;

	/* Labels holding a dot, a backslash, a NUL, a space, UTF-8 and
	 * capitals: the text stays unambiguous. */
	mb_header(&m, 1, 0, 1, 0, 0, 0);
	mb_u8(&m, 3);
	mb_bytes(&m, "a.B", 3);
	mb_u8(&m, 4);
	mb_bytes(&m, "\\\0 Z", 4);
	mb_u8(&m, 2);
	mb_bytes(&m, "\xc3\xa9", 2);
	mb_name(&m, "CONSUL");
	mb_u32(&m, 0x00010001);
	ck_assert_int_eq(parse(m.b, m.n), 0);
	ck_assert_str_eq(q.text, "a\\.b.\\\\\\000\\032z.\\195\\169.consul");
	/* And the text reads back as the same name. */
	struct dns_name n = name_of(q.text);
	ck_assert(dns_name_equal(&n, &q.lname));
	ck_assert_uint_eq(memcmp(n.data, q.lname.data, n.len), 0);
}
END_TEST

/* ---- names -------------------------------------------------------------- */

START_TEST(name_from_text)
{
	struct dns_name n;
	char l63[64], s[400];

	n = name_of("web.service.consul");
	ck_assert_uint_eq(n.len, 20);
	ck_assert_uint_eq(n.n_labels, 3);
	ck_assert_uint_eq(n.label_off[0], 0);
	ck_assert_uint_eq(n.label_off[1], 4);
	ck_assert_uint_eq(n.label_off[2], 12);
	ck_assert_mem_eq(n.data, "\3web\7service\6consul", 20);
	/* The trailing dot is optional; case is kept. */
	n = name_of("Web.Consul.");
	ck_assert_mem_eq(n.data, "\3Web\6Consul", 12);
	n = name_of(".");
	ck_assert_uint_eq(n.len, 1);
	ck_assert_uint_eq(n.n_labels, 0);
	n = name_of("");
	ck_assert_uint_eq(n.len, 1);
	/* Escapes. */
	n = name_of("a\\.b.\\092\\000\\255\\z");
	ck_assert_uint_eq(n.n_labels, 2);
	ck_assert_mem_eq(n.data, "\3a.b\4\\\0\xffz", 10);
	/* @len bounds the text, which need not be NUL-terminated. */
	ck_assert_int_eq(dns_name_from_text(&n, "abc.def", 3), 0);
	ck_assert_uint_eq(n.len, 5);

	static const char *const bad[] = {
	    "..",   ".a",    "a..b",  "a.b..", "\\",  "a\\",
	    "\\25", "\\256", "\\2a5", "a.\\",  "...",
	};
	for (size_t i = 0; i < N_OF(bad); i++)
		ck_assert_msg(dns_name_from_text(&n, bad[i], strlen(bad[i])) ==
				  BCN_EINVAL,
			      "%s", bad[i]);

	memset(l63, 'a', 63);
	l63[63] = '\0';
	snprintf(s, sizeof s, "%s.x", l63);
	ck_assert_int_eq(dns_name_from_text(&n, s, strlen(s)), 0);
	snprintf(s, sizeof s, "%sa.x", l63);
	ck_assert_int_eq(dns_name_from_text(&n, s, strlen(s)), BCN_EINVAL);
	/* 253 characters (255 on the wire) fit, 254 do not. */
	snprintf(s, sizeof s, "%s.%s.%s.%.61s", l63, l63, l63, l63);
	ck_assert_int_eq(dns_name_from_text(&n, s, strlen(s)), 0);
	ck_assert_uint_eq(n.len, 255);
	strcat(s, ".");
	ck_assert_int_eq(dns_name_from_text(&n, s, strlen(s)), 0);
	snprintf(s, sizeof s, "%s.%s.%s.%.62s", l63, l63, l63, l63);
	ck_assert_int_eq(dns_name_from_text(&n, s, strlen(s)), BCN_EINVAL);
	snprintf(s, sizeof s, "%s.%s.%s.%.60s.a", l63, l63, l63, l63);
	ck_assert_int_eq(dns_name_from_text(&n, s, strlen(s)), BCN_EINVAL);
	/* An escaped byte counts once. */
	snprintf(s, sizeof s, "%.62s\\046.x", l63);
	ck_assert_int_eq(dns_name_from_text(&n, s, strlen(s)), 0);
	ck_assert_uint_eq(n.data[0], 63);
}
END_TEST

START_TEST(name_to_text)
{
	struct dns_name n;
	char out[DNS_MAX_TEXT + 1];
	size_t len = 0;

	n = name_of("Web.Consul");
	ck_assert_int_eq(dns_name_to_text(&n, out, sizeof out, &len), 0);
	ck_assert_str_eq(out, "Web.Consul");
	ck_assert_uint_eq(len, 10);
	/* Exactly the room needed, and one byte less. */
	ck_assert_int_eq(dns_name_to_text(&n, out, 11, &len), 0);
	ck_assert_int_eq(dns_name_to_text(&n, out, 10, &len), BCN_ETOOBIG);
	n = name_of("");
	ck_assert_int_eq(dns_name_to_text(&n, out, 1, &len), 0);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(dns_name_to_text(&n, out, 0, &len), BCN_ETOOBIG);

	/* The worst case: 250 bytes as \DDD in 4 labels. */
	char s[DNS_MAX_TEXT + 1];
	size_t o = 0;
	for (int lab = 0; lab < 4; lab++) {
		if (lab > 0)
			s[o++] = '.';
		for (int k = 0; k < (lab < 3 ? 63 : 61); k++) {
			memcpy(s + o, "\\000", 4);
			o += 4;
		}
	}
	s[o] = '\0';
	ck_assert_uint_eq(o, DNS_MAX_TEXT);
	n = name_of(s);
	ck_assert_uint_eq(n.len, 255);
	ck_assert_int_eq(dns_name_to_text(&n, out, sizeof out, &len), 0);
	ck_assert_uint_eq(len, DNS_MAX_TEXT);
	ck_assert_str_eq(out, s);
	ck_assert_int_eq(dns_name_to_text(&n, out, DNS_MAX_TEXT, &len),
			 BCN_ETOOBIG);
}
END_TEST

START_TEST(name_text_round_trip)
{
	/* Random wire names: text and back gives the same bytes. */
	srand(5);
	for (int i = 0; i < 2000; i++) {
		struct dns_name n, back;
		char out[DNS_MAX_TEXT + 1];
		size_t len;
		uint8_t lab[63];
		int labels = rand() % 8;

		n.len = 0;
		n.n_labels = 0;
		struct mb m;
		mb_header(&m, 0, 0, 0, 0, 0, 0);
		for (int l = 0; l < labels; l++) {
			size_t ll = 1 + (size_t)(rand() % 30);

			for (size_t k = 0; k < ll; k++)
				lab[k] = (uint8_t)(rand() % 4 == 0
						       ? rand()
						       : 'a' + rand() % 26);
			mb_u8(&m, (unsigned)ll);
			mb_bytes(&m, lab, ll);
		}
		mb_u8(&m, 0);
		size_t off = 12;
		ck_assert_int_eq(dns_name_unpack(&n, m.b, m.n, &off), 0);
		ck_assert_uint_eq(off, m.n);
		ck_assert_int_eq(dns_name_to_text(&n, out, sizeof out, &len),
				 0);
		ck_assert_int_eq(dns_name_from_text(&back, out, len), 0);
		ck_assert_uint_eq(back.len, n.len);
		ck_assert_uint_eq(back.n_labels, n.n_labels);
		ck_assert_mem_eq(back.data, n.data, n.len);
		ck_assert_mem_eq(back.label_off, n.label_off, n.n_labels);
	}
}
END_TEST

START_TEST(name_compare)
{
	struct dns_name a = name_of("Web.Service.CONSUL");
	struct dns_name b = name_of("web.service.consul.");
	struct dns_name zone = name_of("consul");
	struct dns_name zone2 = name_of("service.Consul");
	struct dns_name other = name_of("xconsul");
	struct dns_name root = name_of("");

	ck_assert(dns_name_equal(&a, &b));
	ck_assert(dns_name_equal(&b, &a));
	ck_assert(!dns_name_equal(&a, &zone));
	ck_assert(dns_name_in_zone(&a, &zone));
	ck_assert(dns_name_in_zone(&a, &zone2));
	ck_assert(dns_name_in_zone(&a, &b));
	ck_assert(dns_name_in_zone(&zone, &zone));
	ck_assert(dns_name_in_zone(&a, &root));
	ck_assert(!dns_name_in_zone(&zone, &a));
	ck_assert(!dns_name_in_zone(&other, &zone)); /* labels, not bytes */
	ck_assert(!dns_name_in_zone(&root, &zone));
	/* Only ASCII folds: 0xC9 and 0xE9 differ. */
	struct dns_name e1 = name_of("\\201"), e2 = name_of("\\233");
	ck_assert(!dns_name_equal(&e1, &e2));
	/* '@' (0x40) and '`' (0x60) are not letters. */
	struct dns_name at = name_of("@"), bq = name_of("`");
	ck_assert(!dns_name_equal(&at, &bq));
	dns_name_lower(&a);
	ck_assert_mem_eq(a.data, b.data, b.len);
}
END_TEST

START_TEST(ptr_names)
{
	static const struct {
		const char *text;
		size_t alen;
		uint8_t addr[16];
	} ok[] = {
	    {"1.0.0.10.in-addr.arpa", 4, {10, 0, 0, 1}},
	    {"255.255.255.255.IN-ADDR.ARPA.", 4, {255, 255, 255, 255}},
	    {"0.0.0.0.in-addr.arpa", 4, {0}},
	    {"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2."
	     "ip6.arpa",
	     16,
	     {0x20, 0x01, 0x0d, 0xb8, [15] = 1}},
	    {"f.e.d.c.b.a.9.8.7.6.5.4.3.2.1.0.f.e.d.c.b.a.9.8.7.6.5.4.3.2.1.0."
	     "ip6.arpa",
	     16,
	     {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45,
	      0x67, 0x89, 0xab, 0xcd, 0xef}},
	};
	static const char *const bad[] = {
	    "0.0.10.in-addr.arpa",
	    "5.1.0.0.10.in-addr.arpa",
	    "1.0.0.256.in-addr.arpa",
	    "1.0.0.010.in-addr.arpa",
	    "1.0.0.1a.in-addr.arpa",
	    "1.0.0.1000.in-addr.arpa",
	    "1.0.0.10.in-addr.arpa.com",
	    "1.0.0.10.inaddr.arpa",
	    "1.0.0.10.in-addr-x.arpa",
	    "1.0.0.10.in-addr.arpaa",
	    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0."
	    "ip6.arpa",
	    "10.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2."
	    "ip6.arpa",
	    "g.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2."
	    "ip6.arpa",
	    "arpa",
	    "",
	};
	struct dns_name n, back;
	uint8_t addr[16];
	size_t alen;

	for (size_t i = 0; i < N_OF(ok); i++) {
		n = name_of(ok[i].text);
		ck_assert_msg(dns_ptr_parse(&n, addr, &alen) == 0, "%s",
			      ok[i].text);
		ck_assert_uint_eq(alen, ok[i].alen);
		ck_assert_mem_eq(addr, ok[i].addr, alen);
		ck_assert_int_eq(dns_ptr_build(&back, addr, alen), 0);
		ck_assert(dns_name_equal(&back, &n));
	}
	for (size_t i = 0; i < N_OF(bad); i++) {
		n = name_of(bad[i]);
		ck_assert_msg(dns_ptr_parse(&n, addr, &alen) == BCN_EINVAL,
			      "%s", bad[i]);
	}
	/* Build writes lower-case hex and no leading zeros. */
	ck_assert_int_eq(dns_ptr_build(&n, (const uint8_t[]){192, 0, 2, 10}, 4),
			 0);
	ck_assert_str_eq(text_of(&n), "10.2.0.192.in-addr.arpa");
	ck_assert_int_eq(dns_ptr_build(&n, ok[4].addr, 16), 0);
	ck_assert_str_eq(text_of(&n), "f.e.d.c.b.a.9.8.7.6.5.4.3.2.1.0.f.e.d."
				      "c.b.a.9.8.7.6.5.4.3.2.1.0.ip6.arpa");
	ck_assert_int_eq(dns_ptr_build(&n, addr, 5), BCN_EINVAL);
}
END_TEST

/* ---- the encoder -------------------------------------------------------- */

static uint8_t buf[DNS_MAX_MSG];

/* Start a response to the parsed @q (the question echoed). */
static void start(struct dns_msg *m, size_t cap)
{
	ck_assert_int_eq(dns_msg_init(m, buf, cap, &q.hdr, &q.question), 0);
}

START_TEST(encode_golden_bytes)
{
	static const uint8_t want[] = {
	    0xac, 0x52, 0x85, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00,
	    0x00, 0x03, 'w',  'e',  'b',  0x07, 's',  'e',  'r',  'v',	'i',
	    'c',  'e',	0x06, 'c',  'o',  'n',	's',  'u',  'l',  0x00, 0x00,
	    0x01, 0x00, 0x01, 0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00,
	    0x00, 0x1e, 0x00, 0x04, 0x0a, 0x00, 0x00, 0x01};
	const struct trec a = {.sec = DNS_SEC_ANSWER,
			       .owner = "web.service.consul",
			       .type = DNS_TYPE_A,
			       .ttl = 30,
			       .addr = "10.0.0.1"};
	struct dns_msg m;
	size_t len;

	/* dig +noedns: RD copied, AD not; QR and AA set; the owner is a
	 * pointer to the question. */
	ck_assert_int_eq(PARSE(q_plain), 0);
	start(&m, 512);
	dns_msg_set_flag(&m, DNS_FLAG_AA, true);
	ck_assert_int_eq(add(&m, &a), 0);
	ck_assert_int_eq(dns_msg_finish(&m, &len), 0);
	ck_assert_uint_eq(len, sizeof want);
	ck_assert_mem_eq(buf, want, sizeof want);
}
END_TEST

/* One record of every type, in every section, to the mixed-case query. */
static const struct trec all_types[] = {
    {.sec = DNS_SEC_ANSWER,
     .owner = "web.service.consul",
     .type = DNS_TYPE_SRV,
     .ttl = 30,
     .name = "node1.node.dc1.consul",
     .prio = 1,
     .weight = 10,
     .port = 8080},
    {.sec = DNS_SEC_ANSWER,
     .owner = "web.service.consul",
     .type = DNS_TYPE_SRV,
     .ttl = 30,
     .name = "0a000002.addr.dc1.consul",
     .prio = 1,
     .weight = 1,
     .port = 9090},
    {.sec = DNS_SEC_ANSWER,
     .owner = "web.service.consul",
     .type = DNS_TYPE_TXT,
     .ttl = 30,
     .txt = {"env=prod", "", "rack=r1"}},
    {.sec = DNS_SEC_ANSWER,
     .owner = "web.service.consul",
     .type = DNS_TYPE_CNAME,
     .ttl = 30,
     .name = "db.example.com"},
    {.sec = DNS_SEC_AUTHORITY,
     .owner = "consul",
     .type = DNS_TYPE_NS,
     .ttl = 0,
     .name = "ns.consul"},
    {.sec = DNS_SEC_AUTHORITY,
     .owner = "consul",
     .type = DNS_TYPE_SOA,
     .ttl = 0,
     .name = "ns.consul",
     .name2 = "hostmaster.consul",
     .soa = {1700000000, 3600, 600, 86400, 0}},
    {.sec = DNS_SEC_ADDITIONAL,
     .owner = "node1.node.dc1.consul",
     .type = DNS_TYPE_A,
     .ttl = 0,
     .addr = "10.0.0.1"},
    {.sec = DNS_SEC_ADDITIONAL,
     .owner = "node1.node.dc1.consul",
     .type = DNS_TYPE_AAAA,
     .ttl = 0,
     .addr = "2001:db8::1"},
    {.sec = DNS_SEC_ADDITIONAL,
     .owner = "node1.node.dc1.consul",
     .type = DNS_TYPE_TXT,
     .ttl = 0,
     .txt = {"rack=r1"}},
    {.sec = DNS_SEC_ADDITIONAL,
     .owner = "0a000002.addr.dc1.consul",
     .type = DNS_TYPE_A,
     .ttl = 0,
     .addr = "10.0.0.2"},
    {.sec = DNS_SEC_ADDITIONAL,
     .owner = "2.0.0.10.in-addr.arpa",
     .type = DNS_TYPE_PTR,
     .ttl = 5,
     .name = "node2.node.dc1.consul"},
};

START_TEST(encode_all_types_round_trip)
{
	struct dns_msg m;
	struct dns_edns e;
	struct expect ex_ = {.n = 0};
	size_t len;

	ck_assert_int_eq(PARSE(q_ecs), 0); /* EDNS with a client subnet */
	ck_assert_int_eq(PARSE(q_cookie), 0);
	e = q.edns;
	e.ecs = (struct dns_ecs){true, 1, 24, 24, {192, 0, 2}};
	start(&m, 4096);
	ck_assert_int_eq(dns_msg_set_edns(&m, &e), 0);
	dns_msg_set_flag(&m, DNS_FLAG_AA, true);
	for (size_t i = 0; i < N_OF(all_types); i++)
		ck_assert_int_eq(add(&m, &all_types[i]), 0);
	ck_assert_int_eq(dns_msg_finish(&m, &len), 0);
	ck_assert_uint_eq(len, dns_msg_len(&m));

	t_walk(buf, len);
	ck_assert_uint_eq(tm.id, 0x91d3);
	ck_assert_uint_eq(tm.flags, 0x8500); /* QR AA RD, NOERROR */
	ck_assert_str_eq(tm.qname, "WeB.Service.Consul");
	ck_assert_uint_eq(tm.qtype, DNS_TYPE_SRV);
	ck_assert_uint_eq(tm.qclass, DNS_CLASS_IN);
	ck_assert_uint_eq(tm.count[1], 4);
	ck_assert_uint_eq(tm.count[2], 2);
	ck_assert_uint_eq(tm.count[3], 5 + 1);
	for (size_t i = 0; i < N_OF(all_types); i++)
		check_rr(buf, len, &tm.rr[i], &all_types[i]);
	/* The OPT record last: root, UDP size, DO clear, the subnet. */
	const struct t_rr *opt = &tm.rr[tm.n - 1];
	ck_assert_str_eq(opt->owner, "");
	ck_assert_uint_eq(opt->type, DNS_TYPE_OPT);
	ck_assert_uint_eq(opt->cls, 1232);
	ck_assert_uint_eq(opt->ttl, 0);
	ck_assert_uint_eq(opt->rdlen, 11);
	ck_assert_mem_eq(buf + opt->rdoff, "\0\x08\0\x07\0\x01\x18\x18\xc0\0\2",
			 11);

	ex_header(&ex_, 0x91d3, 0x8500, "NOERROR", "WeB.Service.Consul", "SRV");
	ex(&ex_, "edns 0 payload 1232 do 0\necs 192.0.2.0/24/24\n");
	for (size_t i = 0; i < N_OF(all_types); i++)
		ex_rr(&ex_, &all_types[i]);
	dump("all_types", buf, len, &ex_);
}
END_TEST

START_TEST(encode_compression)
{
	static const char *const nodes[] = {"node1", "node2", "node3"};
	struct trec srv[3], a[3];
	struct dns_msg m;
	struct expect ex_ = {.n = 0};
	char names[3][64];
	size_t len, plain;

	ck_assert_int_eq(PARSE(q_dnssec), 0); /* _web._tcp.service.dc1... */
	start(&m, 512);
	/* Without compression: header, question, and per record the owner
	 * (30 bytes), 10 fixed, 6 + 23 of SRV rdata; per A: 23 + 10 + 4. */
	plain = 12 + 30 + 4 + 3 * (30 + 10 + 6 + 23) + 3 * (23 + 10 + 4);
	for (int i = 0; i < 3; i++) {
		snprintf(names[i], sizeof names[i], "%s.node.dc1.consul",
			 nodes[i]);
		srv[i] = (struct trec){.sec = DNS_SEC_ANSWER,
				       .owner = "_web._tcp.service.dc1.consul",
				       .type = DNS_TYPE_SRV,
				       .ttl = 0,
				       .name = names[i],
				       .prio = 1,
				       .weight = 1,
				       .port = (uint16_t)(8000 + i)};
		a[i] = (struct trec){.sec = DNS_SEC_ADDITIONAL,
				     .owner = names[i],
				     .type = DNS_TYPE_A,
				     .ttl = 0,
				     .addr = i == 0 ? "10.0.0.1" : "10.0.0.2"};
	}
	ck_assert_uint_eq(m.n_comp, 5); /* the question's suffixes */
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(add(&m, &srv[i]), 0);
	/* Only new suffixes are remembered: node1.node.dc1.consul and
	 * node.dc1.consul, then one per target. */
	ck_assert_uint_eq(m.n_comp, 5 + 2 + 1 + 1);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(add(&m, &a[i]), 0);
	ck_assert_int_eq(dns_msg_finish(&m, &len), 0);
	t_walk(buf, len);
	for (int i = 0; i < 3; i++) {
		check_rr(buf, len, &tm.rr[i], &srv[i]);
		check_rr(buf, len, &tm.rr[3 + i], &a[i]);
		/* Every owner is one pointer: to the question (12), or
		 * into the SRV target written earlier. */
		ck_assert_uint_eq(buf[tm.rr[i].owner_off], 0xc0);
		ck_assert_uint_eq(buf[tm.rr[i].owner_off + 1], 12);
		ck_assert_uint_eq(t_u16(buf + tm.rr[3 + i].owner_off),
				  0xc000 | (tm.rr[i].rdoff + 6));
	}
	/* SRV targets are written in full; every owner is a pointer, which
	 * saves 28 bytes per SRV and 21 per A. */
	ck_assert_uint_eq(len, plain - 3 * 28 - 3 * 21);

	ex_header(&ex_, 0x3ab1, 0x8100, "NOERROR",
		  "_web._tcp.service.dc1.consul", "SRV");
	for (int i = 0; i < 3; i++)
		ex_rr(&ex_, &srv[i]);
	for (int i = 0; i < 3; i++)
		ex_rr(&ex_, &a[i]);
	dump("srv_compressed", buf, len, &ex_);
}
END_TEST

START_TEST(encode_compression_in_rdata)
{
	const struct trec recs[] = {
	    {.sec = DNS_SEC_ANSWER,
	     .owner = "consul",
	     .type = DNS_TYPE_NS,
	     .ttl = 0,
	     .name = "ns1.consul"},
	    {.sec = DNS_SEC_ANSWER,
	     .owner = "consul",
	     .type = DNS_TYPE_NS,
	     .ttl = 0,
	     .name = "NS2.node.dc1.consul"},
	    {.sec = DNS_SEC_AUTHORITY,
	     .owner = "consul",
	     .type = DNS_TYPE_SOA,
	     .ttl = 0,
	     .name = "ns1.consul",
	     .name2 = "hostmaster.consul",
	     .soa = {1, 2, 3, 4, 5}},
	    {.sec = DNS_SEC_ADDITIONAL,
	     .owner = "ns1.consul",
	     .type = DNS_TYPE_A,
	     .ttl = 0,
	     .addr = "10.0.0.1"},
	    {.sec = DNS_SEC_ADDITIONAL,
	     .owner = "ns2.NODE.dc1.consul",
	     .type = DNS_TYPE_PTR,
	     .ttl = 0,
	     .name = "node.dc1.consul"},
	};
	struct dns_msg m;
	size_t len;

	ck_assert_int_eq(PARSE(q_ns), 0); /* consul NS */
	start(&m, 512);
	for (size_t i = 0; i < N_OF(recs); i++)
		ck_assert_int_eq(add(&m, &recs[i]), 0);
	ck_assert_int_eq(dns_msg_finish(&m, &len), 0);
	t_walk(buf, len);
	/* ns1: "ns1" + pointer to the question's "consul" at 12. */
	ck_assert_mem_eq(buf + tm.rr[0].rdoff, "\3ns1\xc0\x0c", 6);
	ck_assert_uint_eq(tm.rr[0].rdlen, 6);
	/* SOA mname: all of it a pointer to ns1's. */
	ck_assert_uint_eq(t_u16(buf + tm.rr[2].rdoff), 0xc000 | tm.rr[0].rdoff);
	/* The A owner too; the PTR target is a suffix of the NS's, and the
	 * PTR owner matches the NS target whatever the case. */
	ck_assert_uint_eq(t_u16(buf + tm.rr[3].owner_off),
			  0xc000 | tm.rr[0].rdoff);
	ck_assert_uint_eq(t_u16(buf + tm.rr[4].owner_off),
			  0xc000 | tm.rr[1].rdoff);
	ck_assert_uint_eq(t_u16(buf + tm.rr[4].rdoff),
			  0xc000 | (tm.rr[1].rdoff + 4));
	for (size_t i = 0; i < N_OF(recs); i++)
		check_rr(buf, len, &tm.rr[i], &recs[i]);
	/* The spelling on the wire is whichever came first. */
	ck_assert_str_eq(tm.rr[4].owner, "NS2.node.dc1.consul");
}
END_TEST

/* Fill a 512-byte response with SRV records until one does not fit; the
 * failed call must leave everything as it was. */
START_TEST(encode_size_limit_rollback)
{
	struct dns_msg m, before;
	uint8_t snap[512];
	char target[64];
	struct trec t = {.sec = DNS_SEC_ANSWER,
			 .owner = "web.service.consul",
			 .type = DNS_TYPE_SRV,
			 .ttl = 0,
			 .name = target,
			 .prio = 1,
			 .weight = 1,
			 .port = 80};
	struct expect ex_ = {.n = 0};
	int n = 0, rc;
	size_t len;

	ck_assert_int_eq(PARSE(q_plain), 0);
	start(&m, 512);
	ex_header(&ex_, 0xac52, 0x8700, "NOERROR", "web.service.consul", "A");
	for (;; n++) {
		snprintf(target, sizeof target, "node-%03d.node.dc1.consul", n);
		before = m;
		memcpy(snap, buf, 512);
		rc = add(&m, &t);
		if (rc != 0)
			break;
		ck_assert_uint_gt(m.n_comp, before.n_comp);
		ex_rr(&ex_, &t);
		ck_assert_uint_le(dns_msg_len(&m), 512);
		ck_assert_uint_eq(t_u16(buf + 6), n + 1);
	}
	/* 512 = 12 + 24 (question) + 10 * 44 + 36 */
	ck_assert_int_eq(rc, DNS_ENOSPC);
	ck_assert_int_eq(n, 10);
	ck_assert_uint_eq(m.len, before.len);
	ck_assert_mem_eq(buf, snap, before.len);
	ck_assert_mem_eq(m.count, before.count, sizeof m.count);
	ck_assert_int_eq(m.section, before.section);
	ck_assert_uint_eq(m.reserved, before.reserved);
	ck_assert_uint_eq(m.n_comp, before.n_comp);
	ck_assert_mem_eq(m.comp, before.comp, m.n_comp * sizeof m.comp[0]);
	/* A smaller record still fits where the last one did not. */
	const struct trec small = {.sec = DNS_SEC_ADDITIONAL,
				   .owner = "web.service.consul",
				   .type = DNS_TYPE_A,
				   .ttl = 0,
				   .addr = "10.1.2.3"};
	ck_assert_uint_ge(512 - dns_msg_len(&m), 16);
	ck_assert_int_eq(add(&m, &small), 0);
	ex_rr(&ex_, &small);
	/* The server sets TC and sends what fits. */
	dns_msg_set_flag(&m, DNS_FLAG_TC, true);
	dns_msg_set_flag(&m, DNS_FLAG_AA, true);
	ck_assert_int_eq(dns_msg_finish(&m, &len), 0);
	ck_assert_uint_le(len, 512);
	t_walk(buf, len);
	ck_assert_uint_eq(tm.flags, 0x8700);
	ck_assert_uint_eq(tm.count[1], (unsigned)n);
	ck_assert_uint_eq(tm.count[3], 1);
	dump("truncated", buf, len, &ex_);
}
END_TEST

/* Under every size limit, whatever fits is a well-formed message. */
START_TEST(encode_every_limit)
{
	size_t full = 0;

	ck_assert_int_eq(PARSE(q_ecs), 0);
	for (size_t cap = 0; cap <= 700; cap++) {
		struct dns_msg m;
		struct dns_edns e = q.edns;
		size_t len, added = 0;
		int rc;

		memset(buf, 0xEE, sizeof buf);
		e.ecs.scope_prefix = 24;
		rc = dns_msg_init(&m, buf, cap, &q.hdr, &q.question);
		if (cap < 12 + 19 + 4) {
			ck_assert_int_eq(rc, DNS_ENOSPC);
			continue;
		}
		ck_assert_int_eq(rc, 0);
		rc = dns_msg_set_edns(&m, &e);
		if (rc != 0) {
			ck_assert_int_eq(rc, DNS_ENOSPC);
			ck_assert_uint_lt(cap, 35 + 11 + 11);
		}
		for (size_t i = 0; i < N_OF(all_types); i++) {
			size_t was = dns_msg_len(&m);

			rc = add(&m, &all_types[i]);
			if (rc == 0) {
				added++;
				continue;
			}
			ck_assert_int_eq(rc, DNS_ENOSPC);
			ck_assert_uint_eq(dns_msg_len(&m), was);
			break; /* later sections may fit; not tried */
		}
		ck_assert_int_eq(dns_msg_finish(&m, &len), 0);
		ck_assert_uint_le(len, cap);
		ck_assert_uint_eq(buf[cap], 0xEE); /* nothing past the limit */
		t_walk(buf, len);
		ck_assert_uint_eq(tm.n, added + m.edns.present);
		for (size_t i = 0; i < added; i++)
			check_rr(buf, len, &tm.rr[i], &all_types[i]);
		if (added == N_OF(all_types) && full == 0)
			full = cap;
	}
	ck_assert_uint_gt(full, 0);
}
END_TEST

START_TEST(encode_edns_reserved)
{
	struct dns_msg m;
	struct trec t = {.sec = DNS_SEC_ANSWER,
			 .owner = "web.service.consul",
			 .type = DNS_TYPE_A,
			 .ttl = 0,
			 .addr = "10.0.0.1"};
	struct dns_edns e = {.present = true, .udp_size = 4096, .do_bit = true};
	size_t len;
	int n = 0;

	ck_assert_int_eq(PARSE(q_cookie), 0);
	start(&m, 512);
	ck_assert_int_eq(dns_msg_set_edns(&m, &e), 0);
	ck_assert_int_eq(dns_msg_set_edns(&m, &e), BCN_EINVAL);
	while (add(&m, &t) == 0)
		n++;
	/* 512 - 12 - 24 (question) - 11 (OPT) = 465 = 29 * 16 + 1 */
	ck_assert_int_eq(n, 29);
	ck_assert_int_eq(dns_msg_set_rcode(&m, DNS_RCODE_BADVERS), 0);
	ck_assert_int_eq(dns_msg_finish(&m, &len), 0);
	ck_assert_uint_eq(len, 511);
	t_walk(buf, len);
	ck_assert_uint_eq(tm.count[3], 1);
	ck_assert_uint_eq(tm.flags & 0xf, 0); /* 16 = 0x010: low bits 0 */
	ck_assert_uint_eq(tm.rr[29].type, DNS_TYPE_OPT);
	ck_assert_uint_eq(tm.rr[29].cls, 4096);
	ck_assert_uint_eq(tm.rr[29].ttl, 0x01008000); /* ext 1, v0, DO */
	ck_assert_uint_eq(tm.rr[29].rdlen, 0);

	/* The OPT record cannot be reserved once the room is gone: 36 +
	 * 29 * 16 + 10. */
	start(&m, 510);
	while (add(&m, &t) == 0)
		;
	ck_assert_int_eq(dns_msg_set_edns(&m, &e), DNS_ENOSPC);
	ck_assert(!m.edns.present);
	ck_assert_int_eq(dns_msg_finish(&m, &len), 0);
	t_walk(buf, len);
}
END_TEST

START_TEST(encode_rcodes)
{
	struct dns_msg m;
	struct dns_edns e = {.present = true, .udp_size = 1232};
	struct expect ex_ = {.n = 0};
	size_t len;

	ck_assert_int_eq(PARSE(q_plain), 0);
	start(&m, 512);
	ck_assert_int_eq(dns_msg_set_rcode(&m, DNS_RCODE_BADVERS), BCN_EINVAL);
	ck_assert_int_eq(dns_msg_set_rcode(&m, DNS_RCODE_NXDOMAIN), 0);
	ck_assert_int_eq(dns_msg_set_rcode(&m, DNS_RCODE_REFUSED), 0);
	ck_assert_int_eq(dns_msg_finish(&m, &len), 0);
	ck_assert_uint_eq(buf[3] & 0xf, DNS_RCODE_REFUSED);

	/* BADVERS to dig +edns=1, an extended rcode in the OPT record. */
	ck_assert_int_eq(PARSE(q_edns1), 0);
	start(&m, 512);
	ck_assert_int_eq(dns_msg_set_edns(&m, &e), 0);
	ck_assert_int_eq(dns_msg_set_rcode(&m, 4096), BCN_EINVAL);
	ck_assert_int_eq(dns_msg_set_rcode(&m, DNS_RCODE_BADVERS), 0);
	ck_assert_int_eq(dns_msg_finish(&m, &len), 0);
	t_walk(buf, len);
	ck_assert_uint_eq(tm.rr[0].ttl >> 24, 1);
	ex_header(&ex_, 0xcec3, 0x8100, "BADVERS", "foo.consul", "A");
	ex(&ex_, "edns 0 payload 1232 do 0\n");
	dump("badvers", buf, len, &ex_);
}
END_TEST

START_TEST(encode_error_reply)
{
	struct mb mq;
	struct dns_msg m;
	struct expect ex_ = {.n = 0};
	size_t len;

	/* Two questions: FORMERR, with no question echoed. */
	mb_header(&mq, 0x4242, DNS_FLAG_RD | DNS_FLAG_CD, 2, 0, 0, 0);
	mb_name(&mq, "a");
	mb_u32(&mq, 0x00010001);
	expect_fail(mq.b, mq.n, DNS_RCODE_FORMERR);
	ck_assert_int_eq(dns_msg_init(&m, buf, 512, &q.hdr, NULL), 0);
	ck_assert_int_eq(dns_msg_set_rcode(&m, (unsigned)q.rcode), 0);
	ck_assert_int_eq(dns_msg_finish(&m, &len), 0);
	ck_assert_uint_eq(len, 12);
	ck_assert_mem_eq(buf, "\x42\x42\x81\x11\0\0\0\0\0\0\0\0", 12);
	ex_header(&ex_, 0x4242, 0x8110, "FORMERR", NULL, NULL);
	dump("formerr", buf, len, &ex_);

	/* NOTIMP keeps the opcode. */
	mb_query(&mq, "a", DNS_TYPE_A, 0);
	mq.b[2] = 5 << 3;
	expect_fail(mq.b, mq.n, DNS_RCODE_NOTIMP);
	ck_assert_int_eq(dns_msg_init(&m, buf, 512, &q.hdr, NULL), 0);
	ck_assert_int_eq(dns_msg_set_rcode(&m, (unsigned)q.rcode), 0);
	ck_assert_int_eq(dns_msg_finish(&m, &len), 0);
	ck_assert_mem_eq(buf, "\x12\x34\xa8\x04", 4);
}
END_TEST

START_TEST(encode_misuse)
{
	struct dns_msg m;
	struct rr_store st;
	const struct trec a = {.sec = DNS_SEC_AUTHORITY,
			       .owner = "x.consul",
			       .type = DNS_TYPE_A,
			       .ttl = 0,
			       .addr = "10.0.0.1"};
	struct dns_rr rr;
	char long_txt[257];
	struct dns_str s;
	size_t len, was;

	ck_assert_int_eq(PARSE(q_plain), 0);
	ck_assert_int_eq(dns_msg_init(&m, buf, 11, &q.hdr, &q.question),
			 DNS_ENOSPC);
	ck_assert_int_eq(
	    dns_msg_init(&m, buf, 12 + 20 + 3, &q.hdr, &q.question),
	    DNS_ENOSPC);
	start(&m, 512);
	was = dns_msg_len(&m);
	/* Sections only move forwards. */
	ck_assert_int_eq(add(&m, &a), 0);
	ck_assert_int_eq(dns_msg_add_rr(&m, DNS_SEC_ANSWER, rr_of(&st, &a)),
			 BCN_EINVAL);
	ck_assert_int_eq(dns_msg_add_rr(&m, DNS_SEC_QUESTION, rr_of(&st, &a)),
			 BCN_EINVAL);
	ck_assert_int_eq(dns_msg_add_rr(&m, DNS_SEC_NR, rr_of(&st, &a)),
			 BCN_EINVAL);
	was = dns_msg_len(&m);
	/* TXT strings: none, or one over 255 bytes. */
	rr = *rr_of(&st, &a);
	rr.type = DNS_TYPE_TXT;
	rr.rd.txt.strs = &s;
	rr.rd.txt.n = 0;
	ck_assert_int_eq(dns_msg_add_rr(&m, DNS_SEC_ADDITIONAL, &rr),
			 BCN_EINVAL);
	memset(long_txt, 'x', sizeof long_txt);
	s = (struct dns_str){long_txt, 256};
	rr.rd.txt.n = 1;
	ck_assert_int_eq(dns_msg_add_rr(&m, DNS_SEC_ADDITIONAL, &rr),
			 BCN_EINVAL);
	s.len = 255;
	ck_assert_int_eq(dns_msg_add_rr(&m, DNS_SEC_ADDITIONAL, &rr), 0);
	ck_assert_uint_eq(dns_msg_len(&m), was + 2 + 10 + 256);
	/* Types we do not write, and missing names. */
	rr.type = DNS_TYPE_MX;
	ck_assert_int_eq(dns_msg_add_rr(&m, DNS_SEC_ADDITIONAL, &rr),
			 BCN_EINVAL);
	rr.type = DNS_TYPE_OPT;
	ck_assert_int_eq(dns_msg_add_rr(&m, DNS_SEC_ADDITIONAL, &rr),
			 BCN_EINVAL);
	rr.type = DNS_TYPE_SRV;
	rr.rd.srv.target = NULL;
	ck_assert_int_eq(dns_msg_add_rr(&m, DNS_SEC_ADDITIONAL, &rr),
			 BCN_EINVAL);
	rr.type = DNS_TYPE_A;
	rr.owner = NULL;
	ck_assert_int_eq(dns_msg_add_rr(&m, DNS_SEC_ADDITIONAL, &rr),
			 BCN_EINVAL);
	/* A subnet that makes no sense. */
	struct dns_edns e = {.present = true, .udp_size = 512};
	e.ecs = (struct dns_ecs){true, 1, 33, 0, {0}};
	ck_assert_int_eq(dns_msg_set_edns(&m, &e), BCN_EINVAL);
	e.ecs = (struct dns_ecs){true, 7, 8, 0, {0}};
	ck_assert_int_eq(dns_msg_set_edns(&m, &e), BCN_EINVAL);
	ck_assert(!m.edns.present);
	ck_assert_int_eq(dns_msg_finish(&m, &len), 0);
	t_walk(buf, len);
	ck_assert_uint_eq(tm.n, 2);
	/* Nothing after finishing. */
	ck_assert_int_eq(add(&m, &a), BCN_EINVAL);
	ck_assert_int_eq(dns_msg_finish(&m, &len), BCN_EINVAL);
	ck_assert_int_eq(dns_msg_set_edns(&m, &e), BCN_EINVAL);
}
END_TEST

static struct trec big[1024];
static char big_names[1024][64];

/* Append records big[@first..@first + @n) to @m: by turns an SRV to a new
 * target "n<k>.node.dc<k % 3>.consul" and a TXT owned by that target. */
static void add_pairs(struct dns_msg *m, size_t first, size_t n)
{
	static const char *const pad = "xxxxxxxxxxxxxxxxxxxx";

	ck_assert_uint_le(first + n, N_OF(big));
	for (size_t i = first; i < first + n; i++) {
		size_t k = (i - first) / 2;

		if ((i - first) % 2 == 0) {
			snprintf(big_names[i], sizeof big_names[i],
				 "n%zu.node.dc%zu.consul", k, k % 3);
			big[i] = (struct trec){.sec = DNS_SEC_ANSWER,
					       .owner = "web.service.consul",
					       .type = DNS_TYPE_SRV,
					       .name = big_names[i],
					       .prio = 1,
					       .weight = 1,
					       .port = 1};
		} else {
			big[i] = (struct trec){.sec = DNS_SEC_ANSWER,
					       .owner = big_names[i - 1],
					       .type = DNS_TYPE_TXT,
					       .ttl = 7,
					       .txt = {pad}};
		}
		ck_assert_int_eq(add(m, &big[i]), 0);
	}
}

/* More names than the compression table holds: the rest are written
 * correctly, and still compressed against the suffixes it holds. */
START_TEST(encode_table_full)
{
	struct dns_msg m;
	size_t len, off;

	ck_assert_int_eq(PARSE(q_cookie), 0);
	start(&m, 70000); /* counts as 65535 */
	ck_assert_uint_eq(m.cap, DNS_MAX_MSG);
	add_pairs(&m, 0, 400);
	ck_assert_uint_eq(m.n_comp, DNS_COMP_MAX);
	ck_assert_uint_lt(dns_msg_len(&m), 0x4000); /* only the table is full */
	ck_assert_int_eq(dns_msg_finish(&m, &len), 0);
	t_walk(buf, len);
	ck_assert_uint_eq(tm.n, 400);
	for (size_t i = 0; i < 400; i++)
		check_rr(buf, len, &tm.rr[i], &big[i]);
	/* An early TXT owner is one pointer, to its SRV target; the last
	 * one's target could not be remembered, so it is "n199" and a
	 * pointer to "node.dc1.consul". */
	ck_assert_uint_eq(buf[tm.rr[1].owner_off] & 0xc0, 0xc0);
	off = tm.rr[399].owner_off;
	ck_assert_mem_eq(buf + off, "\4n199", 5);
	ck_assert_uint_eq(buf[off + 5] & 0xc0, 0xc0);
}
END_TEST

/* Names written past offset 0x3fff cannot be pointed at: they are not
 * remembered, and later names spell them out. */
START_TEST(encode_past_pointer_reach)
{
	static char pad[256];
	const struct trec fill = {.sec = DNS_SEC_ANSWER,
				  .owner = "web.service.consul",
				  .type = DNS_TYPE_TXT,
				  .ttl = 1,
				  .txt = {pad}};
	struct dns_msg m;
	size_t len;
	unsigned n_comp;

	memset(pad, 'p', 255);
	ck_assert_int_eq(PARSE(q_cookie), 0);
	start(&m, DNS_MAX_MSG);
	for (int i = 0; i < 70; i++) {
		big[i] = fill;
		ck_assert_int_eq(add(&m, &fill), 0);
	}
	ck_assert_uint_gt(dns_msg_len(&m), 0x4000);
	n_comp = m.n_comp;
	add_pairs(&m, 70, 100);
	ck_assert_uint_eq(m.n_comp, n_comp);
	ck_assert_int_eq(dns_msg_finish(&m, &len), 0);
	t_walk(buf, len);
	ck_assert_uint_eq(tm.n, 170);
	for (size_t i = 0; i < 170; i++)
		check_rr(buf, len, &tm.rr[i], &big[i]);
	/* TXT owners: all labels but "consul", which the question has
	 * ("WeB.Service.Consul": "Consul" at 12 + 4 + 8). */
	for (size_t i = 71; i < 170; i += 2) {
		size_t lit = strlen(big[i].owner) - strlen("consul");

		ck_assert_uint_eq(t_u16(buf + tm.rr[i].owner_off + lit),
				  0xc000 | 24);
	}
}
END_TEST

/* A record that fails after its owner was written leaves no trace in the
 * compression table: a later name must not point at bytes that have since
 * been overwritten. */
START_TEST(encode_rollback_forgets_names)
{
	static char pad[256];
	const struct trec big_txt = {.sec = DNS_SEC_ANSWER,
				     .owner = "new.name.example",
				     .type = DNS_TYPE_TXT,
				     .txt = {pad}};
	const struct trec recs[] = {
	    {.sec = DNS_SEC_ANSWER,
	     .owner = "other.test",
	     .type = DNS_TYPE_A,
	     .addr = "10.0.0.1"},
	    {.sec = DNS_SEC_ANSWER,
	     .owner = "new.name.example",
	     .type = DNS_TYPE_A,
	     .addr = "10.0.0.2"},
	};
	struct dns_msg m;
	size_t len;
	unsigned n_comp;

	memset(pad, 'p', 255);
	ck_assert_int_eq(PARSE(q_plain), 0);
	start(&m, 36 + 100); /* the owner fits, the rdata does not */
	n_comp = m.n_comp;
	ck_assert_int_eq(add(&m, &big_txt), DNS_ENOSPC);
	ck_assert_uint_eq(m.n_comp, n_comp);
	ck_assert_uint_eq(dns_msg_len(&m), 36);
	for (size_t i = 0; i < N_OF(recs); i++)
		ck_assert_int_eq(add(&m, &recs[i]), 0);
	ck_assert_int_eq(dns_msg_finish(&m, &len), 0);
	t_walk(buf, len);
	ck_assert_uint_eq(tm.n, 2);
	for (size_t i = 0; i < N_OF(recs); i++)
		check_rr(buf, len, &tm.rr[i], &recs[i]);
	/* The same with SOA, whose rname fails after its mname. */
	const struct trec soa = {.sec = DNS_SEC_AUTHORITY,
				 .owner = "web.service.consul",
				 .type = DNS_TYPE_SOA,
				 .name = "ns.new.example",
				 .name2 = "hostmaster.other.example"};
	start(&m, 36 + 2 + 10 + 16 + 10);
	ck_assert_int_eq(add(&m, &soa), DNS_ENOSPC);
	ck_assert_uint_eq(m.n_comp, n_comp);
}
END_TEST

/* Nothing in the hot path allocates. */
START_TEST(no_allocation)
{
	struct dns_msg m;
	size_t len;

	fault_alloc_fail_at(-1);
	for (size_t i = 0; i < N_OF(captured); i++) {
		uint8_t copy[128];
		struct dns_edns e;

		memcpy(copy, captured[i].p, captured[i].len);
		ck_assert_int_eq(dns_query_parse(&q, copy, captured[i].len), 0);
		ck_assert_int_eq(
		    dns_msg_init(&m, buf, 4096, &q.hdr, &q.question), 0);
		e = q.edns;
		if (e.present)
			ck_assert_int_eq(dns_msg_set_edns(&m, &e), 0);
		for (size_t k = 0; k < N_OF(all_types); k++)
			ck_assert_int_eq(add(&m, &all_types[k]), 0);
		ck_assert_int_eq(dns_msg_finish(&m, &len), 0);
	}
	ck_assert_int_eq(fault_alloc_count(), 0);
}
END_TEST

static Suite *wire_suite(void)
{
	Suite *s = suite_create("dns_wire");
	TCase *tp = tcase_create("parse");
	TCase *tn = tcase_create("names");
	TCase *te = tcase_create("encode");

	tcase_add_checked_fixture(tp, setup, NULL);
	tcase_add_test(tp, parse_dig_plain);
	tcase_add_test(tp, parse_dig_edns_cookie_case);
	tcase_add_test(tp, parse_dig_do_bit_and_version);
	tcase_add_test(tp, parse_dig_client_subnet);
	tcase_add_test(tp, parse_dig_reverse);
	tcase_add_test(tp, parse_dig_other_types);
	tcase_add_test(tp, parse_root_and_longest_names);
	tcase_add_test(tp, parse_every_truncation);
	tcase_add_test(tp, parse_label_type_bits);
	tcase_add_test(tp, parse_compression_pointers);
	tcase_add_test(tp, parse_pointer_loops);
	tcase_add_test(tp, unpack_jump_limit);
	tcase_add_test(tp, parse_counts);
	tcase_add_test(tp, reader_huge_counts);
	tcase_add_test(tp, parse_header_cases);
	tcase_add_test(tp, parse_too_long);
	tcase_add_test(tp, parse_trailing_bytes);
	tcase_add_test(tp, parse_opt_errors);
	tcase_add_test(tp, parse_client_subnet);
	tcase_add_test(tp, parse_text_escapes);
	suite_add_tcase(s, tp);

	tcase_add_test(tn, name_from_text);
	tcase_add_test(tn, name_to_text);
	tcase_add_test(tn, name_text_round_trip);
	tcase_add_test(tn, name_compare);
	tcase_add_test(tn, ptr_names);
	suite_add_tcase(s, tn);

	tcase_add_checked_fixture(te, setup, NULL);
	tcase_add_test(te, encode_golden_bytes);
	tcase_add_test(te, encode_all_types_round_trip);
	tcase_add_test(te, encode_compression);
	tcase_add_test(te, encode_compression_in_rdata);
	tcase_add_test(te, encode_size_limit_rollback);
	tcase_add_test(te, encode_every_limit);
	tcase_add_test(te, encode_edns_reserved);
	tcase_add_test(te, encode_rcodes);
	tcase_add_test(te, encode_error_reply);
	tcase_add_test(te, encode_misuse);
	tcase_add_test(te, encode_table_full);
	tcase_add_test(te, encode_past_pointer_reach);
	tcase_add_test(te, encode_rollback_forgets_names);
	tcase_add_test(te, no_allocation);
	suite_add_tcase(s, te);
	return s;
}

int main(void)
{
	return unit_run(wire_suite());
}

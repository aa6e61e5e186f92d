/* Fuzz the DNS query parser and the response encoder (dns/wire.h), which
 * see every datagram sent to the DNS port.
 *
 * The input is a query as it arrives over UDP or TCP (without the TCP
 * length prefix). A refused input must come with a reason and an rcode;
 * when it is answerable, the error reply is encoded. A parsed query must
 * hold together (text, lower-cased name, labels), and a response is built
 * to it under a size limit taken from the query id: records of every type
 * whose names share suffixes with the question, so that compression has
 * work to do. Every append either fits or leaves the message untouched;
 * the result is within the limit, its counts match what was appended, and
 * it reads back record by record with the same names. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                           \
	do {                                                               \
		if (!(x)) {                                                \
			fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, \
				#x);                                       \
			abort();                                           \
		}                                                          \
	} while (0)

static uint8_t out[DNS_MAX_MSG];
static uint8_t snap[DNS_MAX_MSG];

/* The name made of @n's labels from @first on (the root if none). The
 * wire form of a suffix is a name of its own. */
static void suffix(struct dns_name *dst, const struct dns_name *n,
		   unsigned first)
{
	size_t off = first < n->n_labels ? n->label_off[first] : n->len - 1u;

	CHECK(dns_name_unpack(dst, n->data, n->len, &off) == 0);
	CHECK(off == n->len);
	CHECK(dns_name_in_zone(n, dst));
}

/* @prefix + "." + @n, or a copy of @n when that is too long. */
static void prepend(struct dns_name *dst, const char *prefix,
		    const struct dns_name *n)
{
	char text[64 + DNS_MAX_TEXT + 1];
	size_t plen = strlen(prefix), len;

	memcpy(text, prefix, plen);
	text[plen] = '.';
	CHECK(dns_name_to_text(n, text + plen + 1, sizeof text - plen - 1,
			       &len) == 0);
	if (dns_name_from_text(dst, text, plen + 1 + len) != 0)
		*dst = *n;
}

static void check_query(const struct dns_query *q)
{
	struct dns_name back, lower = q->question.name;
	uint8_t addr[16];
	size_t alen, off = 0;

	CHECK(q->rcode == DNS_RCODE_NOERROR);
	CHECK(q->hdr.count[DNS_SEC_QUESTION] == 1);
	CHECK(q->text_len == strlen(q->text));
	CHECK(q->text_len <= DNS_MAX_TEXT);
	dns_name_lower(&lower);
	CHECK(lower.len == q->lname.len &&
	      memcmp(lower.data, q->lname.data, lower.len) == 0);
	CHECK(dns_name_equal(&q->question.name, &q->lname));
	/* The labels index the name. */
	for (unsigned i = 0; i < q->lname.n_labels; i++) {
		CHECK(q->lname.label_off[i] == off);
		CHECK(q->lname.data[off] >= 1 && q->lname.data[off] <= 63);
		off += 1u + q->lname.data[off];
	}
	CHECK(off + 1 == q->lname.len && q->lname.data[off] == 0);
	/* The text reads back as the same bytes. */
	CHECK(dns_name_from_text(&back, q->text, q->text_len) == 0);
	CHECK(back.len == q->lname.len &&
	      memcmp(back.data, q->lname.data, back.len) == 0);
	CHECK(back.n_labels == q->lname.n_labels);
	if (dns_ptr_parse(&q->lname, addr, &alen) == 0) {
		CHECK(alen == 4 || alen == 16);
		CHECK(dns_ptr_build(&back, addr, alen) == 0);
		CHECK(dns_name_equal(&back, &q->lname));
	}
	if (q->edns.present && q->edns.ecs.present) {
		unsigned bits = q->edns.ecs.source_prefix;

		CHECK(q->edns.ecs.family == 1 || q->edns.ecs.family == 2);
		CHECK(bits <= (q->edns.ecs.family == 1 ? 32u : 128u));
		for (unsigned b = bits; b < 128; b++)
			CHECK((q->edns.ecs.addr[b / 8] & (0x80 >> b % 8)) == 0);
	}
}

/* An error reply: header only, 12 bytes, echoing id and opcode. */
static void check_error_reply(const struct dns_query *q)
{
	struct dns_msg m;
	struct dns_reader r;
	struct dns_header h;
	size_t len;

	CHECK(dns_msg_init(&m, out, 512, &q->hdr, NULL) == 0);
	CHECK(dns_msg_set_rcode(&m, (unsigned)q->rcode) == 0);
	CHECK(dns_msg_finish(&m, &len) == 0);
	CHECK(len == DNS_HEADER_LEN);
	CHECK(dns_reader_init(&r, &h, out, len) == 0);
	CHECK(h.id == q->hdr.id && h.opcode == q->hdr.opcode);
	CHECK(h.rcode == q->rcode && (h.flags & DNS_FLAG_QR));
	for (int s = 0; s < DNS_SEC_NR; s++)
		CHECK(h.count[s] == 0);
}

#define N_RR	 12
#define N_ROUNDS 40

struct plan {
	struct dns_name names[8];
	struct dns_str strs[3];
	struct dns_rr rr[N_RR];
	enum dns_section sec[N_RR];
	int n;
};

static struct dns_rr *plan_rr(struct plan *p, enum dns_section sec,
			      const struct dns_name *owner, uint16_t type)
{
	struct dns_rr *rr = &p->rr[p->n];

	CHECK(p->n < N_RR);
	p->sec[p->n++] = sec;
	rr->owner = owner;
	rr->type = type;
	rr->rclass = DNS_CLASS_IN;
	rr->ttl = (uint32_t)p->n * 7;
	return rr;
}

/* Records of every type, owned by and pointing at names that share the
 * question's suffixes; TXT strings come from the input. */
static void make_plan(struct plan *p, const struct dns_query *q,
		      const uint8_t *data, size_t size)
{
	const struct dns_name *qn = &q->question.name;
	struct dns_name *nm = p->names;
	struct dns_rr *rr;

	memset(p, 0, sizeof *p);
	suffix(&nm[0], qn, 1);		       /* the parent */
	suffix(&nm[1], qn, qn->n_labels / 2u); /* a zone */
	prepend(&nm[2], "node1", &nm[0]);      /* SRV target */
	prepend(&nm[3], "NODE2", &nm[1]);      /* SRV target, other case */
	prepend(&nm[4], "ns", &nm[1]);
	prepend(&nm[5], "hostmaster", &nm[1]);
	nm[6] = q->lname; /* lower case: matches the question anyway */
	CHECK(dns_name_from_text(&nm[7], "x.example", 9) == 0);
	for (int s = 0; s < 3; s++) {
		p->strs[s].p = data;
		p->strs[s].len = s == 1 ? 0 : (size > 255 ? 255 : size) >> s;
	}

	rr = plan_rr(p, DNS_SEC_ANSWER, qn, DNS_TYPE_SRV);
	rr->rd.srv.priority = 1;
	rr->rd.srv.weight = 10;
	rr->rd.srv.port = q->hdr.id;
	rr->rd.srv.target = &nm[2];
	rr = plan_rr(p, DNS_SEC_ANSWER, &nm[6], DNS_TYPE_SRV);
	rr->rd.srv.target = &nm[3];
	rr = plan_rr(p, DNS_SEC_ANSWER, qn, DNS_TYPE_A);
	memcpy(rr->rd.a, "\x0a\0\0\x01", 4);
	rr = plan_rr(p, DNS_SEC_ANSWER, qn, DNS_TYPE_TXT);
	rr->rd.txt.strs = p->strs;
	rr->rd.txt.n = 3;
	rr = plan_rr(p, DNS_SEC_ANSWER, &nm[0], DNS_TYPE_CNAME);
	rr->rd.name = &nm[7];
	rr = plan_rr(p, DNS_SEC_AUTHORITY, &nm[1], DNS_TYPE_NS);
	rr->rd.name = &nm[4];
	rr = plan_rr(p, DNS_SEC_AUTHORITY, &nm[1], DNS_TYPE_SOA);
	rr->rd.soa.mname = &nm[4];
	rr->rd.soa.rname = &nm[5];
	rr->rd.soa.serial = 1700000000;
	rr->rd.soa.refresh = 3600;
	rr = plan_rr(p, DNS_SEC_ADDITIONAL, &nm[2], DNS_TYPE_A);
	memcpy(rr->rd.a, "\x0a\0\0\x02", 4);
	rr = plan_rr(p, DNS_SEC_ADDITIONAL, &nm[3], DNS_TYPE_AAAA);
	memcpy(rr->rd.aaaa, data, size < 16 ? size : 16);
	rr = plan_rr(p, DNS_SEC_ADDITIONAL, &nm[4], DNS_TYPE_A);
	rr = plan_rr(p, DNS_SEC_ADDITIONAL, &nm[3], DNS_TYPE_PTR);
	rr->rd.name = &nm[2];
	rr = plan_rr(p, DNS_SEC_ADDITIONAL, &nm[2], DNS_TYPE_TXT);
	rr->rd.txt.strs = p->strs + 1;
	rr->rd.txt.n = 1;
	CHECK(p->n == N_RR);
}

/* Read the name in rdata at *@off and compare it with @want. */
static void check_rdata_name(const struct dns_reader *r, size_t *off,
			     const struct dns_name *want)
{
	struct dns_name got;

	CHECK(dns_name_unpack(&got, r->msg, r->len, off) == 0);
	CHECK(dns_name_equal(&got, want));
}

static void check_rr(const struct dns_reader *r, const struct dns_rr_view *v,
		     const struct dns_rr *rr)
{
	const uint8_t *rd = r->msg + v->rdoff;
	size_t off = v->rdoff, want_end = v->rdoff + v->rdlen;

	CHECK(dns_name_equal(&v->owner, rr->owner));
	CHECK(v->type == rr->type && v->rclass == rr->rclass);
	CHECK(v->ttl == rr->ttl);
	switch (rr->type) {
	case DNS_TYPE_A:
		CHECK(v->rdlen == 4 && memcmp(rd, rr->rd.a, 4) == 0);
		return;
	case DNS_TYPE_AAAA:
		CHECK(v->rdlen == 16 && memcmp(rd, rr->rd.aaaa, 16) == 0);
		return;
	case DNS_TYPE_NS:
	case DNS_TYPE_CNAME:
	case DNS_TYPE_PTR:
		check_rdata_name(r, &off, rr->rd.name);
		break;
	case DNS_TYPE_SRV:
		CHECK(v->rdlen > 6);
		CHECK((rd[4] << 8 | rd[5]) == rr->rd.srv.port);
		off += 6;
		/* Written in full: the name ends at the end of the rdata. */
		check_rdata_name(r, &off, rr->rd.srv.target);
		CHECK(v->rdlen == 6 + rr->rd.srv.target->len);
		break;
	case DNS_TYPE_TXT:
		for (size_t i = 0; i < rr->rd.txt.n; i++) {
			const struct dns_str *s = &rr->rd.txt.strs[i];

			CHECK(off < want_end && r->msg[off] == s->len);
			CHECK(memcmp(r->msg + off + 1, s->p, s->len) == 0);
			off += 1 + s->len;
		}
		break;
	case DNS_TYPE_SOA:
		check_rdata_name(r, &off, rr->rd.soa.mname);
		check_rdata_name(r, &off, rr->rd.soa.rname);
		off += 20;
		break;
	default:
		abort();
	}
	CHECK(off == want_end);
}

static void encode(const struct dns_query *q, const uint8_t *data, size_t size)
{
	static struct plan p;
	static int order[N_RR * N_ROUNDS]; /* plan index of each record */
	size_t n_order = 0;
	struct dns_msg m;
	struct dns_reader r;
	struct dns_header h;
	struct dns_question qq;
	struct dns_rr_view v;
	struct dns_edns e = q->edns;
	size_t limit = q->hdr.id % 1024u, len, n_opt = 0, k;
	unsigned counts[DNS_SEC_NR] = {1, 0, 0, 0}, rcode;
	int rc;

	/* Now and then the largest message, to pass offset 0x3fff. */
	if (q->hdr.id >= 0xff00)
		limit = DNS_MAX_MSG;
	make_plan(&p, q, data, size);
	rc = dns_msg_init(&m, out, limit, &q->hdr, &q->question);
	if (rc != 0) {
		CHECK(rc == DNS_ENOSPC);
		CHECK(limit < DNS_HEADER_LEN + q->question.name.len + 4u);
		return;
	}
	dns_msg_set_flag(&m, DNS_FLAG_AA, true);
	if (e.present) {
		e.ecs.scope_prefix = e.ecs.source_prefix;
		rc = dns_msg_set_edns(&m, &e);
		CHECK(rc == 0 || rc == DNS_ENOSPC);
		n_opt = rc == 0;
	}
	for (int round = 0; round < (limit > 4096 ? N_ROUNDS : 1); round++) {
		for (int i = 0; i < N_RR; i++) {
			size_t was = dns_msg_len(&m);
			unsigned n_comp = m.n_comp;

			if (p.sec[i] < m.section)
				continue; /* sections only move forwards */
			memcpy(snap, out, was);
			rc = dns_msg_add_rr(&m, p.sec[i], &p.rr[i]);
			if (rc == 0) {
				counts[p.sec[i]]++;
				order[n_order++] = i;
				continue;
			}
			/* It did not fit: nothing changed. */
			CHECK(rc == DNS_ENOSPC);
			CHECK(dns_msg_len(&m) == was && m.n_comp == n_comp);
			CHECK(memcmp(snap, out, was) == 0);
		}
	}
	/* BADVERS needs the OPT record. */
	rcode = e.present ? DNS_RCODE_BADVERS : DNS_RCODE_NXDOMAIN;
	rc = dns_msg_set_rcode(&m, rcode);
	CHECK(rc == (e.present && n_opt == 0 ? BCN_EINVAL : 0));
	CHECK(dns_msg_finish(&m, &len) == 0);
	CHECK(len <= limit);
	counts[DNS_SEC_ADDITIONAL] += (unsigned)n_opt;

	/* Read it all back. */
	CHECK(dns_reader_init(&r, &h, out, len) == 0);
	CHECK(h.id == q->hdr.id && (h.flags & DNS_FLAG_QR));
	CHECK((h.flags & DNS_FLAG_RD) == (q->hdr.flags & DNS_FLAG_RD));
	CHECK(h.rcode == (rc == 0 ? (rcode & 0xf) : 0));
	for (int s = 0; s < DNS_SEC_NR; s++)
		CHECK(h.count[s] == counts[s]);
	CHECK(dns_reader_question(&r, &qq) == 0);
	CHECK(qq.qtype == q->question.qtype && qq.qclass == q->question.qclass);
	/* The question is echoed byte for byte, case included. */
	CHECK(qq.name.len == q->question.name.len &&
	      memcmp(qq.name.data, q->question.name.data, qq.name.len) == 0);
	for (k = 0; (rc = dns_reader_rr(&r, &v)) == 0; k++) {
		if (k == n_order) { /* the OPT record comes last */
			struct dns_edns got;

			CHECK(n_opt == 1 && v.type == DNS_TYPE_OPT);
			CHECK(v.section == DNS_SEC_ADDITIONAL);
			CHECK(dns_edns_parse(&got, &r, &v) == 0);
			CHECK(got.udp_size == e.udp_size);
			CHECK(got.do_bit == e.do_bit && got.version == 0);
			CHECK(got.ext_rcode == DNS_RCODE_BADVERS >> 4);
			CHECK(got.ecs.present == e.ecs.present);
			if (e.ecs.present)
				CHECK(memcmp(&got.ecs, &e.ecs,
					     sizeof got.ecs) == 0);
			continue;
		}
		CHECK(k < n_order);
		CHECK(v.section == p.sec[order[k]]);
		check_rr(&r, &v, &p.rr[order[k]]);
	}
	CHECK(rc == BCN_ENOTFOUND);
	CHECK(k == n_order + n_opt);
	CHECK(dns_reader_trailing(&r) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dns_query q;
	int rc = dns_query_parse(&q, data, size);

	if (rc != 0) {
		CHECK(rc == BCN_EINVAL && q.why != NULL);
		CHECK(q.rcode == DNS_RCODE_DROP ||
		      q.rcode == DNS_RCODE_FORMERR ||
		      q.rcode == DNS_RCODE_NOTIMP);
		if (q.rcode != DNS_RCODE_DROP)
			check_error_reply(&q);
		return 0;
	}
	check_query(&q);
	encode(&q, data, size);
	return 0;
}

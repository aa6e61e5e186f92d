/* DNS wire format: names, a message reader, the query parser and the
 * response encoder (see dns/wire.h for the contracts).
 *
 * The happy path of a query: dns_query_parse() reads the header, one
 * question and at most three more records looking for an OPT; the server
 * then calls dns_msg_init(), dns_msg_set_edns(), dns_msg_add_rr() per record
 * and dns_msg_finish(). Nothing allocates: names live in fixed 255-byte
 * arrays and the compression table is a fixed array in struct dns_msg.
 *
 * Failure modes. Reading: every length, count and pointer comes from the
 * network, so each is checked against the bytes actually present before
 * use, and compression pointers must go strictly backwards (below the
 * fragment they were found in), which makes loops impossible. Writing: each
 * append checks the room left before every write, and a failed append
 * restores the length and the compression table it started from. */
#include "dns/wire.h"

#include <assert.h>
#include <string.h>

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

/* RFC 4343: only ASCII letters fold. Length bytes (< 64) never change. */
static uint8_t lower(uint8_t c)
{
	return c >= 'A' && c <= 'Z' ? (uint8_t)(c + ('a' - 'A')) : c;
}

static bool bytes_equal_nocase(const uint8_t *a, const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (lower(a[i]) != lower(b[i]))
			return false;
	return true;
}

/* ---- names -------------------------------------------------------------- */

static void name_start(struct dns_name *n)
{
	n->len = 0;
	n->n_labels = 0;
}

/* Append label @p[0..@len) to @n, keeping room for the root label. */
static int name_push(struct dns_name *n, const void *p, size_t len)
{
	if (len == 0 || len > DNS_MAX_LABEL ||
	    n->len + 1 + len + 1 > DNS_MAX_NAME)
		return BCN_EINVAL;
	/* Each label takes at least 2 bytes, so 127 of them fill 254. */
	assert(n->n_labels < DNS_MAX_LABELS);
	n->label_off[n->n_labels++] = (uint8_t)n->len;
	n->data[n->len] = (uint8_t)len;
	memcpy(n->data + n->len + 1, p, len);
	n->len = (uint16_t)(n->len + 1 + len);
	return 0;
}

static void name_end(struct dns_name *n)
{
	assert(n->len < DNS_MAX_NAME);
	n->data[n->len++] = 0;
}

/* Read one escape at @s[*i] (just past the backslash) into @c. */
static int unescape(const char *s, size_t len, size_t *i, uint8_t *c)
{
	unsigned v = 0;

	if (*i >= len)
		return BCN_EINVAL;
	if (s[*i] < '0' || s[*i] > '9') {
		*c = (uint8_t)s[(*i)++];
		return 0;
	}
	for (int k = 0; k < 3; k++, (*i)++) {
		if (*i >= len || s[*i] < '0' || s[*i] > '9')
			return BCN_EINVAL; /* \DDD has exactly 3 digits */
		v = v * 10 + (unsigned)(s[*i] - '0');
	}
	if (v > 255)
		return BCN_EINVAL;
	*c = (uint8_t)v;
	return 0;
}

int dns_name_from_text(struct dns_name *n, const char *s, size_t len)
{
	size_t i = 0;

	name_start(n);
	if (len == 1 && s[0] == '.')
		len = 0; /* the root */
	while (i < len) {
		uint8_t lab[DNS_MAX_LABEL];
		size_t llen = 0;
		int rc;

		while (i < len && s[i] != '.') {
			uint8_t c = (uint8_t)s[i++];

			if (c == '\\' && unescape(s, len, &i, &c) != 0)
				return BCN_EINVAL;
			if (llen == sizeof lab)
				return BCN_EINVAL;
			lab[llen++] = c;
		}
		rc = name_push(n, lab, llen); /* refuses empty labels */
		if (rc != 0)
			return rc;
		if (i < len)
			i++; /* the dot; a final one ends the name */
	}
	name_end(n);
	return 0;
}

int dns_name_to_text(const struct dns_name *n, char *out, size_t cap,
		     size_t *len)
{
	size_t o = 0;

	for (unsigned i = 0; i < n->n_labels; i++) {
		const uint8_t *lab = n->data + n->label_off[i];

		if (i > 0) {
			if (o + 1 >= cap)
				return BCN_ETOOBIG;
			out[o++] = '.';
		}
		for (unsigned k = 1; k <= lab[0]; k++) {
			uint8_t c = lab[k];
			bool esc = c == '.' || c == '\\';
			bool ddd = c < 0x21 || c > 0x7e;

			if (o + (ddd ? 4u : esc ? 2u : 1u) >= cap)
				return BCN_ETOOBIG; /* and a NUL */
			if (esc) {
				out[o++] = '\\';
				out[o++] = (char)c;
			} else if (ddd) {
				out[o++] = '\\';
				out[o++] = (char)('0' + c / 100);
				out[o++] = (char)('0' + c / 10 % 10);
				out[o++] = (char)('0' + c % 10);
			} else {
				out[o++] = (char)c;
			}
		}
	}
	if (o >= cap)
		return BCN_ETOOBIG;
	out[o] = '\0';
	*len = o;
	return 0;
}

int dns_name_unpack(struct dns_name *out, const void *msgv, size_t len,
		    size_t *off)
{
	const uint8_t *msg = msgv;
	size_t pos = *off;
	size_t frag = *off; /* where the fragment being read began */
	size_t end = 0;	    /* just past the first pointer */
	unsigned jumps = 0;

	name_start(out);
	for (;;) {
		uint8_t c;

		if (pos >= len)
			return BCN_EINVAL;
		c = msg[pos];
		if ((c & 0xC0) == 0xC0) {
			size_t target;

			if (pos + 1 >= len)
				return BCN_EINVAL;
			target = (size_t)(c & 0x3F) << 8 | msg[pos + 1];
			if (jumps == 0)
				end = pos + 2;
			/* Strictly below the fragment holding the pointer:
			 * fragments then start lower each time, so a loop is
			 * impossible; the cap bounds the work (RFC 1035
			 * §4.1.4 allows only prior occurrences). */
			if (target < DNS_HEADER_LEN || target >= frag ||
			    ++jumps > DNS_MAX_JUMPS)
				return BCN_EINVAL;
			pos = frag = target;
			continue;
		}
		if ((c & 0xC0) != 0)
			return BCN_EINVAL; /* 0x40 extended, 0x80 reserved */
		if (c == 0)
			break;
		if (c > len - pos - 1)
			return BCN_EINVAL; /* label runs past the end */
		if (name_push(out, msg + pos + 1, c) != 0)
			return BCN_EINVAL; /* over 255 bytes */
		pos += 1 + (size_t)c;
	}
	name_end(out);
	*off = jumps > 0 ? end : pos + 1;
	return 0;
}

void dns_name_lower(struct dns_name *n)
{
	for (unsigned i = 0; i < n->len; i++)
		n->data[i] = lower(n->data[i]);
}

bool dns_name_equal(const struct dns_name *a, const struct dns_name *b)
{
	return a->len == b->len && bytes_equal_nocase(a->data, b->data, a->len);
}

bool dns_name_in_zone(const struct dns_name *n, const struct dns_name *zone)
{
	unsigned first; /* @n's label where the suffix to compare starts */
	size_t off;

	if (n->n_labels < zone->n_labels)
		return false;
	first = (unsigned)(n->n_labels - zone->n_labels);
	off = first < n->n_labels ? n->label_off[first] : n->len - 1u;
	return n->len - off == zone->len &&
	       bytes_equal_nocase(n->data + off, zone->data, zone->len);
}

/* True if label @i of @n is @s, ignoring case. */
static bool label_is(const struct dns_name *n, unsigned i, const char *s)
{
	const uint8_t *lab = n->data + n->label_off[i];
	size_t len = strlen(s);

	return lab[0] == len &&
	       bytes_equal_nocase(lab + 1, (const uint8_t *)s, len);
}

static int hex_value(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = lower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int dns_ptr_parse(const struct dns_name *n, uint8_t out[16], size_t *alen)
{
	if (n->n_labels == 6 && label_is(n, 4, "in-addr") &&
	    label_is(n, 5, "arpa")) {
		for (unsigned i = 0; i < 4; i++) {
			const uint8_t *lab = n->data + n->label_off[i];
			unsigned v = 0;

			/* 1-3 digits; "010" is refused, as it could be
			 * read as octal by someone. */
			if (lab[0] > 3 || (lab[0] > 1 && lab[1] == '0'))
				return BCN_EINVAL;
			for (unsigned k = 1; k <= lab[0]; k++) {
				if (lab[k] < '0' || lab[k] > '9')
					return BCN_EINVAL;
				v = v * 10 + (unsigned)(lab[k] - '0');
			}
			if (v > 255)
				return BCN_EINVAL;
			out[3 - i] = (uint8_t)v;
		}
		*alen = 4;
		return 0;
	}
	if (n->n_labels == 34 && label_is(n, 32, "ip6") &&
	    label_is(n, 33, "arpa")) {
		/* RFC 3596 §2.5: the first label is the lowest nibble. */
		for (unsigned i = 0; i < 32; i++) {
			const uint8_t *lab = n->data + n->label_off[i];
			int v = lab[0] == 1 ? hex_value(lab[1]) : -1;

			if (v < 0)
				return BCN_EINVAL;
			if (i % 2 == 0)
				out[15 - i / 2] = (uint8_t)v;
			else
				out[15 - i / 2] |= (uint8_t)(v << 4);
		}
		*alen = 16;
		return 0;
	}
	return BCN_EINVAL;
}

int dns_ptr_build(struct dns_name *out, const uint8_t *addr, size_t alen)
{
	static const char hex[] = "0123456789abcdef";
	int rc = 0;

	name_start(out);
	if (alen == 4) {
		for (int i = 3; i >= 0; i--) {
			char d[3];
			size_t k = 0;
			unsigned v = addr[i];

			if (v >= 100)
				d[k++] = (char)('0' + v / 100);
			if (v >= 10)
				d[k++] = (char)('0' + v / 10 % 10);
			d[k++] = (char)('0' + v % 10);
			rc |= name_push(out, d, k);
		}
		rc |= name_push(out, "in-addr", 7);
	} else if (alen == 16) {
		for (int i = 15; i >= 0; i--) {
			rc |= name_push(out, &hex[addr[i] & 0xf], 1);
			rc |= name_push(out, &hex[addr[i] >> 4], 1);
		}
		rc |= name_push(out, "ip6", 3);
	} else {
		return BCN_EINVAL;
	}
	rc |= name_push(out, "arpa", 4);
	assert(rc == 0); /* 73 bytes at most */
	name_end(out);
	return 0;
}

/* ---- reading any message ------------------------------------------------ */

int dns_reader_init(struct dns_reader *r, struct dns_header *hdr,
		    const void *msg, size_t len)
{
	const uint8_t *p = msg;
	uint16_t flags;

	if (len < DNS_HEADER_LEN)
		return BCN_EINVAL;
	flags = get16(p + 2);
	hdr->id = get16(p);
	hdr->opcode = (uint8_t)(flags >> 11 & 0xf);
	hdr->rcode = (uint8_t)(flags & 0xf);
	hdr->flags = flags & (uint16_t)~0x780f;
	for (int s = 0; s < DNS_SEC_NR; s++) {
		hdr->count[s] = get16(p + 4 + 2 * s);
		r->left[s] = hdr->count[s];
	}
	r->msg = p;
	r->len = len;
	r->off = DNS_HEADER_LEN;
	r->section = DNS_SEC_QUESTION;
	r->failed = false;
	return 0;
}

static int reader_fail(struct dns_reader *r)
{
	r->failed = true;
	return BCN_EINVAL;
}

int dns_reader_question(struct dns_reader *r, struct dns_question *q)
{
	if (r->failed)
		return BCN_EINVAL;
	if (r->section != DNS_SEC_QUESTION || r->left[DNS_SEC_QUESTION] == 0)
		return BCN_ENOTFOUND;
	if (dns_name_unpack(&q->name, r->msg, r->len, &r->off) != 0 ||
	    r->len - r->off < 4)
		return reader_fail(r);
	q->qtype = get16(r->msg + r->off);
	q->qclass = get16(r->msg + r->off + 2);
	r->off += 4;
	r->left[DNS_SEC_QUESTION]--;
	return 0;
}

int dns_reader_rr(struct dns_reader *r, struct dns_rr_view *rr)
{
	const uint8_t *p;

	if (r->failed)
		return BCN_EINVAL;
	while (r->section == DNS_SEC_QUESTION &&
	       r->left[DNS_SEC_QUESTION] > 0) {
		struct dns_question q;
		int rc = dns_reader_question(r, &q);

		if (rc != 0)
			return rc;
	}
	while (r->left[r->section] == 0) {
		if (r->section == DNS_SEC_ADDITIONAL)
			return BCN_ENOTFOUND;
		r->section++;
	}
	if (dns_name_unpack(&rr->owner, r->msg, r->len, &r->off) != 0 ||
	    r->len - r->off < 10)
		return reader_fail(r);
	p = r->msg + r->off;
	rr->section = r->section;
	rr->type = get16(p);
	rr->rclass = get16(p + 2);
	rr->ttl = get32(p + 4);
	rr->rdlen = get16(p + 8);
	rr->rdoff = r->off + 10;
	if (rr->rdlen > r->len - rr->rdoff)
		return reader_fail(r);
	r->off = rr->rdoff + rr->rdlen;
	r->left[r->section]--;
	return 0;
}

size_t dns_reader_trailing(const struct dns_reader *r)
{
	return r->len - r->off;
}

/* RFC 7871 §6: FAMILY, SOURCE PREFIX-LENGTH, SCOPE PREFIX-LENGTH, then the
 * address cut to whole bytes of the source prefix. */
static int ecs_parse(struct dns_ecs *ecs, const uint8_t *p, size_t len)
{
	unsigned max, alen;

	if (len < 4)
		return BCN_EINVAL;
	ecs->family = get16(p);
	ecs->source_prefix = p[2];
	ecs->scope_prefix = p[3];
	max = ecs->family == 1 ? 32 : ecs->family == 2 ? 128 : 0;
	if (max == 0 || ecs->source_prefix > max || ecs->scope_prefix > max)
		return BCN_EINVAL;
	alen = (ecs->source_prefix + 7u) / 8;
	if (len - 4 != alen)
		return BCN_EINVAL;
	memset(ecs->addr, 0, sizeof ecs->addr);
	memcpy(ecs->addr, p + 4, alen);
	/* Bits past the prefix MUST be zero; clear them rather than refuse,
	 * so that they cannot leak into the echo. */
	if (ecs->source_prefix % 8 != 0)
		ecs->addr[alen - 1] &=
		    (uint8_t)(0xff << (8 - ecs->source_prefix % 8));
	ecs->present = true;
	return 0;
}

int dns_edns_parse(struct dns_edns *e, const struct dns_reader *r,
		   const struct dns_rr_view *rr)
{
	const uint8_t *p = r->msg + rr->rdoff;
	size_t left = rr->rdlen;

	memset(e, 0, sizeof *e);
	if (rr->type != DNS_TYPE_OPT || rr->owner.len != 1)
		return BCN_EINVAL; /* RFC 6891 §6.1.2: owner is the root */
	e->udp_size = rr->rclass;
	e->ext_rcode = (uint8_t)(rr->ttl >> 24);
	e->version = (uint8_t)(rr->ttl >> 16);
	e->do_bit = (rr->ttl & 0x8000) != 0;
	while (left > 0) {
		uint16_t code, olen;

		if (left < 4)
			return BCN_EINVAL;
		code = get16(p);
		olen = get16(p + 2);
		p += 4;
		left -= 4;
		if (olen > left)
			return BCN_EINVAL;
		if (code == 8) { /* client subnet */
			if (e->ecs.present || ecs_parse(&e->ecs, p, olen) != 0)
				return BCN_EINVAL;
		}
		p += olen;
		left -= olen;
	}
	e->present = true;
	return 0;
}

/* ---- the query parser --------------------------------------------------- */

static int query_fail(struct dns_query *q, int rcode, const char *why)
{
	q->rcode = rcode;
	q->why = why;
	return BCN_EINVAL;
}

int dns_query_parse(struct dns_query *q, const void *msg, size_t len)
{
	struct dns_reader r;
	struct dns_rr_view rr;
	const uint16_t *n = q->hdr.count;
	int rc;

	q->rcode = DNS_RCODE_DROP;
	q->why = NULL;
	q->text[0] = '\0';
	q->text_len = 0;
	q->trailing = 0;
	memset(&q->edns, 0, sizeof q->edns);
	if (len > DNS_MAX_MSG || dns_reader_init(&r, &q->hdr, msg, len) != 0)
		return query_fail(q, DNS_RCODE_DROP, "not a DNS message");
	if (q->hdr.flags & DNS_FLAG_QR)
		return query_fail(q, DNS_RCODE_DROP, "a response");
	/* The limits of miekg/dns's default accept function, which Consul
	 * uses; they also bound the work spent on a query. NOTIFY, which it
	 * lets through, is NOTIMP here: we are no secondary. */
	if (q->hdr.opcode != DNS_OPCODE_QUERY)
		return query_fail(q, DNS_RCODE_NOTIMP,
				  "opcode not implemented");
	if (n[DNS_SEC_QUESTION] != 1)
		return query_fail(q, DNS_RCODE_FORMERR, "question count not 1");
	if (n[DNS_SEC_ANSWER] > 1 || n[DNS_SEC_AUTHORITY] > 1 ||
	    n[DNS_SEC_ADDITIONAL] > 2)
		return query_fail(q, DNS_RCODE_FORMERR, "too many records");
	if (dns_reader_question(&r, &q->question) != 0)
		return query_fail(q, DNS_RCODE_FORMERR, "malformed question");
	while ((rc = dns_reader_rr(&r, &rr)) == 0) {
		if (rr.type != DNS_TYPE_OPT)
			continue;
		/* RFC 6891 §6.1.1 */
		if (rr.section != DNS_SEC_ADDITIONAL)
			return query_fail(q, DNS_RCODE_FORMERR,
					  "OPT outside additional section");
		if (q->edns.present)
			return query_fail(q, DNS_RCODE_FORMERR,
					  "more than one OPT record");
		if (dns_edns_parse(&q->edns, &r, &rr) != 0)
			return query_fail(q, DNS_RCODE_FORMERR,
					  "malformed OPT record");
	}
	if (rc != BCN_ENOTFOUND)
		return query_fail(q, DNS_RCODE_FORMERR, "malformed record");
	q->trailing = dns_reader_trailing(&r);
	q->lname = q->question.name;
	dns_name_lower(&q->lname);
	rc = dns_name_to_text(&q->lname, q->text, sizeof q->text, &q->text_len);
	assert(rc == 0); /* DNS_MAX_TEXT is the worst case */
	q->rcode = DNS_RCODE_NOERROR;
	return 0;
}

/* ---- the encoder ----------------------------------------------------------
 *
 * Compression: every label written literally is remembered as a suffix
 * (offset, uncompressed length, hash of its lower-cased bytes) while its
 * offset fits in a pointer's 14 bits and the table has room. A name to
 * write looks for its longest remembered suffix and ends in a pointer to
 * it. Matching ignores case, as RFC 1035 §4.1.4 comparisons do: an answer
 * owner then reuses the question's spelling, which 0x20-randomising
 * resolvers expect. */

#define PTR_MAX 0x3fff

static size_t room(const struct dns_msg *m)
{
	return m->cap - m->reserved - m->len;
}

static int put_bytes(struct dns_msg *m, const void *p, size_t n)
{
	if (n > room(m))
		return DNS_ENOSPC;
	memcpy(m->buf + m->len, p, n);
	m->len += n;
	return 0;
}

static int put_u16(struct dns_msg *m, uint16_t v)
{
	uint8_t b[2];

	put16(b, v);
	return put_bytes(m, b, sizeof b);
}

static int put_u32(struct dns_msg *m, uint32_t v)
{
	uint8_t b[4];

	put32(b, v);
	return put_bytes(m, b, sizeof b);
}

/* Hash every suffix of @n: @h[i] covers labels i.. to the root. */
static void suffix_hashes(const struct dns_name *n, uint16_t *h)
{
	uint32_t x = 2166136261u; /* FNV-1a */

	for (int i = n->n_labels - 1; i >= 0; i--) {
		const uint8_t *lab = n->data + n->label_off[i];

		for (unsigned k = 0; k <= lab[0]; k++)
			x = (x ^ lower(lab[k])) * 16777619u;
		h[i] = (uint16_t)(x ^ x >> 16);
	}
}

/* True if the name written at @off equals the uncompressed @s. Both are
 * well formed (the message is our own writing) and as long as each other,
 * so this stops at the root. */
static bool suffix_match(const struct dns_msg *m, size_t off, const uint8_t *s)
{
	for (;;) {
		const uint8_t *p;

		assert(off < m->len);
		p = m->buf + off;
		if ((p[0] & 0xC0) == 0xC0) {
			off = (size_t)(p[0] & 0x3F) << 8 | p[1];
			continue;
		}
		if (p[0] != s[0] || !bytes_equal_nocase(p + 1, s + 1, p[0]))
			return false;
		if (p[0] == 0)
			return true;
		off += 1 + (size_t)p[0];
		s += 1 + s[0];
	}
}

/* Write @n, ending in a pointer to its longest remembered suffix if
 * @compress, and remember the suffixes that are new. */
static int put_name(struct dns_msg *m, const struct dns_name *n, bool compress)
{
	uint16_t h[DNS_MAX_LABELS];
	unsigned known = n->n_labels; /* where the remembered suffix starts */
	unsigned lit;		      /* labels written out */
	size_t lit_len, ptr = 0;

	suffix_hashes(n, h);
	for (unsigned i = 0; i < n->n_labels && ptr == 0; i++) {
		size_t slen = n->len - n->label_off[i];

		for (unsigned e = 0; e < m->n_comp; e++) {
			const struct dns_comp_entry *c = &m->comp[e];

			if (c->len == slen && c->hash == h[i] &&
			    suffix_match(m, c->off,
					 n->data + n->label_off[i])) {
				known = i;
				ptr = c->off; /* never 0: after the header */
				break;
			}
		}
	}
	/* Uncompressed names are looked up too, so that only their new
	 * suffixes take room in the table. */
	if (!compress)
		ptr = 0;
	lit = ptr != 0 ? known : n->n_labels;
	lit_len = lit < n->n_labels ? n->label_off[lit] : n->len - 1u;
	if (lit_len + (ptr != 0 ? 2 : 1) > room(m))
		return DNS_ENOSPC;
	for (unsigned i = 0; i < known; i++) {
		size_t off = m->len + n->label_off[i];

		if (off > PTR_MAX || m->n_comp == DNS_COMP_MAX)
			break;
		m->comp[m->n_comp++] = (struct dns_comp_entry){
		    .off = (uint16_t)off,
		    .hash = h[i],
		    .len = (uint8_t)(n->len - n->label_off[i]),
		};
	}
	memcpy(m->buf + m->len, n->data, lit_len);
	m->len += lit_len;
	if (ptr != 0) {
		put16(m->buf + m->len, (uint16_t)(0xC000 | ptr));
		m->len += 2;
	} else {
		m->buf[m->len++] = 0;
	}
	return 0;
}

static void put_counts(struct dns_msg *m)
{
	for (int s = 0; s < DNS_SEC_NR; s++)
		put16(m->buf + 4 + 2 * s, m->count[s]);
}

int dns_msg_init(struct dns_msg *m, void *buf, size_t cap,
		 const struct dns_header *query,
		 const struct dns_question *question)
{
	uint16_t flags = DNS_FLAG_QR | (uint16_t)((query->opcode & 0xf) << 11) |
			 (query->flags & (DNS_FLAG_RD | DNS_FLAG_CD));
	int rc;

	m->buf = buf;
	m->cap = cap < DNS_MAX_MSG ? cap : DNS_MAX_MSG;
	m->len = 0;
	m->reserved = 0;
	memset(m->count, 0, sizeof m->count);
	m->section = DNS_SEC_QUESTION;
	m->rcode = 0;
	m->finished = false;
	memset(&m->edns, 0, sizeof m->edns);
	m->n_comp = 0;
	if (m->cap < DNS_HEADER_LEN)
		return DNS_ENOSPC;
	put16(m->buf, query->id);
	put16(m->buf + 2, flags);
	put_counts(m);
	m->len = DNS_HEADER_LEN;
	if (question == NULL)
		return 0;
	rc = put_name(m, &question->name, true);
	if (rc == 0)
		rc = put_u16(m, question->qtype);
	if (rc == 0)
		rc = put_u16(m, question->qclass);
	if (rc != 0)
		return rc;
	m->count[DNS_SEC_QUESTION] = 1;
	put_counts(m);
	return 0;
}

void dns_msg_set_flag(struct dns_msg *m, uint16_t flag, bool on)
{
	uint16_t flags = get16(m->buf + 2);

	assert(flag == DNS_FLAG_AA || flag == DNS_FLAG_TC ||
	       flag == DNS_FLAG_RA || flag == DNS_FLAG_AD);
	flags = on ? flags | flag : flags & (uint16_t)~flag;
	put16(m->buf + 2, flags);
}

int dns_msg_set_rcode(struct dns_msg *m, unsigned rcode)
{
	if (rcode > 0xfff || (rcode > 0xf && !m->edns.present))
		return BCN_EINVAL;
	m->rcode = rcode;
	m->buf[3] = (uint8_t)((m->buf[3] & 0xf0) | (rcode & 0xf));
	return 0;
}

/* Bytes of the client subnet option, or 0 if there is none. */
static size_t ecs_len(const struct dns_ecs *ecs)
{
	return ecs->present ? 4u + 4u + (ecs->source_prefix + 7u) / 8u : 0;
}

int dns_msg_set_edns(struct dns_msg *m, const struct dns_edns *e)
{
	size_t need = 11 + ecs_len(&e->ecs);

	if (m->edns.present || m->finished)
		return BCN_EINVAL;
	if (e->ecs.present) {
		unsigned max = e->ecs.family == 1   ? 32
			       : e->ecs.family == 2 ? 128
						    : 0;

		if (max == 0 || e->ecs.source_prefix > max ||
		    e->ecs.scope_prefix > max)
			return BCN_EINVAL;
	}
	if (need > room(m))
		return DNS_ENOSPC;
	m->edns = *e;
	m->edns.present = true;
	m->reserved = need;
	return 0;
}

/* Check what dns_msg_add_rr() cannot find out while writing. */
static int rr_check(const struct dns_rr *rr)
{
	if (rr->owner == NULL)
		return BCN_EINVAL;
	switch (rr->type) {
	case DNS_TYPE_A:
	case DNS_TYPE_AAAA:
		return 0;
	case DNS_TYPE_NS:
	case DNS_TYPE_CNAME:
	case DNS_TYPE_PTR:
		return rr->rd.name != NULL ? 0 : BCN_EINVAL;
	case DNS_TYPE_SRV:
		return rr->rd.srv.target != NULL ? 0 : BCN_EINVAL;
	case DNS_TYPE_SOA:
		return rr->rd.soa.mname != NULL && rr->rd.soa.rname != NULL
			   ? 0
			   : BCN_EINVAL;
	case DNS_TYPE_TXT:
		if (rr->rd.txt.n == 0 || rr->rd.txt.strs == NULL)
			return BCN_EINVAL; /* RFC 1035 §3.3.14: one or more */
		for (size_t i = 0; i < rr->rd.txt.n; i++)
			if (rr->rd.txt.strs[i].len > DNS_MAX_TXT ||
			    (rr->rd.txt.strs[i].p == NULL &&
			     rr->rd.txt.strs[i].len > 0))
				return BCN_EINVAL;
		return 0;
	default:
		return BCN_EINVAL;
	}
}

static int put_rdata(struct dns_msg *m, const struct dns_rr *rr)
{
	int rc = 0;

	switch (rr->type) {
	case DNS_TYPE_A:
		return put_bytes(m, rr->rd.a, 4);
	case DNS_TYPE_AAAA:
		return put_bytes(m, rr->rd.aaaa, 16);
	case DNS_TYPE_NS:
	case DNS_TYPE_CNAME:
	case DNS_TYPE_PTR:
		return put_name(m, rr->rd.name, true);
	case DNS_TYPE_SRV:
		rc = put_u16(m, rr->rd.srv.priority);
		if (rc == 0)
			rc = put_u16(m, rr->rd.srv.weight);
		if (rc == 0)
			rc = put_u16(m, rr->rd.srv.port);
		if (rc == 0) /* RFC 2782: no compression in the target */
			rc = put_name(m, rr->rd.srv.target, false);
		return rc;
	case DNS_TYPE_TXT:
		for (size_t i = 0; rc == 0 && i < rr->rd.txt.n; i++) {
			const struct dns_str *s = &rr->rd.txt.strs[i];
			uint8_t len = (uint8_t)s->len;

			rc = put_bytes(m, &len, 1);
			if (rc == 0 && s->len > 0)
				rc = put_bytes(m, s->p, s->len);
		}
		return rc;
	case DNS_TYPE_SOA:
		rc = put_name(m, rr->rd.soa.mname, true);
		if (rc == 0)
			rc = put_name(m, rr->rd.soa.rname, true);
		if (rc == 0)
			rc = put_u32(m, rr->rd.soa.serial);
		if (rc == 0)
			rc = put_u32(m, rr->rd.soa.refresh);
		if (rc == 0)
			rc = put_u32(m, rr->rd.soa.retry);
		if (rc == 0)
			rc = put_u32(m, rr->rd.soa.expire);
		if (rc == 0)
			rc = put_u32(m, rr->rd.soa.minimum);
		return rc;
	}
	assert(!"type checked by rr_check()");
	return BCN_EINVAL;
}

int dns_msg_add_rr(struct dns_msg *m, enum dns_section sec,
		   const struct dns_rr *rr)
{
	size_t start = m->len, rdlen_at;
	unsigned n_comp = m->n_comp;
	uint8_t fixed[8];
	int rc;

	if (m->finished || sec < DNS_SEC_ANSWER || sec >= DNS_SEC_NR ||
	    sec < m->section || rr_check(rr) != 0)
		return BCN_EINVAL;
	if (m->count[sec] == UINT16_MAX)
		return DNS_ENOSPC;
	put16(fixed, rr->type);
	put16(fixed + 2, rr->rclass);
	put32(fixed + 4, rr->ttl);
	rc = put_name(m, rr->owner, true);
	if (rc == 0)
		rc = put_bytes(m, fixed, sizeof fixed);
	rdlen_at = m->len;
	if (rc == 0)
		rc = put_u16(m, 0); /* RDLENGTH, set below */
	if (rc == 0)
		rc = put_rdata(m, rr);
	if (rc != 0) {
		m->len = start;
		m->n_comp = n_comp; /* entries past @start would dangle */
		return rc;
	}
	put16(m->buf + rdlen_at, (uint16_t)(m->len - rdlen_at - 2));
	m->count[sec]++;
	m->section = sec;
	put_counts(m);
	return 0;
}

int dns_msg_finish(struct dns_msg *m, size_t *len)
{
	if (m->finished)
		return BCN_EINVAL;
	if (m->edns.present) {
		const struct dns_ecs *ecs = &m->edns.ecs;
		uint8_t *p;

		/* Room was reserved by dns_msg_set_edns(). */
		assert(m->reserved == 11 + ecs_len(ecs));
		p = m->buf + m->len;
		p[0] = 0; /* owner: the root */
		put16(p + 1, DNS_TYPE_OPT);
		put16(p + 3, m->edns.udp_size);
		/* Extended rcode, VERSION 0 (the one we speak, RFC 6891
		 * §6.1.3), DO copied from the query (RFC 3225 §3). */
		put32(p + 5, (uint32_t)(m->rcode >> 4) << 24 |
				 (m->edns.do_bit ? 0x8000u : 0));
		put16(p + 9, (uint16_t)ecs_len(ecs));
		if (ecs->present) {
			size_t alen = (ecs->source_prefix + 7u) / 8u;

			put16(p + 11, 8);
			put16(p + 13, (uint16_t)(4 + alen));
			put16(p + 15, ecs->family);
			p[17] = ecs->source_prefix;
			p[18] = ecs->scope_prefix;
			memcpy(p + 19, ecs->addr, alen);
			if (ecs->source_prefix % 8 != 0)
				p[18 + alen] &=
				    (uint8_t)(0xff
					      << (8 - ecs->source_prefix % 8));
		}
		m->len += m->reserved;
		m->reserved = 0;
		m->count[DNS_SEC_ADDITIONAL]++;
		put_counts(m);
	}
	m->finished = true;
	*len = m->len;
	return 0;
}

size_t dns_msg_len(const struct dns_msg *m)
{
	return m->len;
}

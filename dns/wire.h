/* DNS wire format (RFC 1035 §4): parse queries, encode responses.
 *
 * Pure and allocation-free: every structure here is fixed-size and owned by
 * the caller (stack or embedded), nothing points into a message once a call
 * returns, and nothing here logs. Names are kept in uncompressed wire form
 * (struct dns_name); text is the presentation form without the trailing dot.
 *
 * Parsing never reads outside the bytes it is given and always terminates:
 * compression pointers must point strictly before the name fragment that
 * holds them (which rules out loops and forward pointers) and at most
 * DNS_MAX_JUMPS are followed per name. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* A record did not fit within the response's size limit (-ENOSPC, so that
 * bcn_strerror() names it). The message is as it was before the call. */
#define DNS_ENOSPC (-ENOSPC)

#define DNS_HEADER_LEN 12
#define DNS_MAX_MSG    65535 /* a TCP length prefix is 16 bits */
#define DNS_MAX_UDP    512   /* RFC 1035 §4.2.1, without EDNS */
#define DNS_MAX_LABEL  63
#define DNS_MAX_NAME   255 /* wire bytes, root label included */
#define DNS_MAX_LABELS 127 /* 127 one-byte labels + root = 255 */
/* Longest presentation text of a name, NUL excluded: 250 bytes that are all
 * written as \DDD, in 4 labels joined by 3 dots. */
#define DNS_MAX_TEXT  1003
#define DNS_MAX_JUMPS 32  /* compression pointers followed per name */
#define DNS_COMP_MAX  128 /* name suffixes remembered for compression */
#define DNS_MAX_TXT   255 /* bytes in one TXT character-string */

enum dns_section {
	DNS_SEC_QUESTION,
	DNS_SEC_ANSWER,
	DNS_SEC_AUTHORITY,
	DNS_SEC_ADDITIONAL,
	DNS_SEC_NR
};

enum {
	DNS_TYPE_A = 1,
	DNS_TYPE_NS = 2,
	DNS_TYPE_CNAME = 5,
	DNS_TYPE_SOA = 6,
	DNS_TYPE_PTR = 12,
	DNS_TYPE_MX = 15,
	DNS_TYPE_TXT = 16,
	DNS_TYPE_AAAA = 28,
	DNS_TYPE_SRV = 33,
	DNS_TYPE_OPT = 41,
	DNS_TYPE_IXFR = 251,
	DNS_TYPE_AXFR = 252,
	DNS_TYPE_ANY = 255,
};

enum {
	DNS_CLASS_IN = 1,
	DNS_CLASS_CH = 3,
	DNS_CLASS_ANY = 255,
};

enum {
	DNS_OPCODE_QUERY = 0,
	DNS_OPCODE_NOTIFY = 4,
	DNS_OPCODE_UPDATE = 5,
};

/* Response codes; those above 15 need an OPT record (RFC 6891 §6.1.3). */
enum {
	DNS_RCODE_DROP = -1, /* dns_query_parse(): send nothing back */
	DNS_RCODE_NOERROR = 0,
	DNS_RCODE_FORMERR = 1,
	DNS_RCODE_SERVFAIL = 2,
	DNS_RCODE_NXDOMAIN = 3,
	DNS_RCODE_NOTIMP = 4,
	DNS_RCODE_REFUSED = 5,
	DNS_RCODE_BADVERS = 16,
};

/* Header flag bits, as in the second 16-bit word of the header. */
enum {
	DNS_FLAG_QR = 0x8000,
	DNS_FLAG_AA = 0x0400,
	DNS_FLAG_TC = 0x0200,
	DNS_FLAG_RD = 0x0100,
	DNS_FLAG_RA = 0x0080,
	DNS_FLAG_AD = 0x0020,
	DNS_FLAG_CD = 0x0010,
};

struct dns_header {
	uint16_t id;
	uint16_t flags;		    /* DNS_FLAG_* bits, Z included */
	uint8_t opcode;		    /* DNS_OPCODE_* */
	uint8_t rcode;		    /* low 4 bits only; see struct dns_edns */
	uint16_t count[DNS_SEC_NR]; /* QD, AN, NS, AR */
};

/* A domain name in uncompressed wire form: length-prefixed labels ending
 * with the root label, plus where each label starts. Built only by the
 * functions below, which keep every field consistent. */
struct dns_name {
	uint8_t data[DNS_MAX_NAME];
	uint16_t len;	  /* bytes in @data, root label included: 1..255 */
	uint8_t n_labels; /* root not counted: 0 for the root name */
	uint8_t label_off[DNS_MAX_LABELS]; /* label i's length byte; i = 0
					    * is the leftmost label */
};

struct dns_question {
	struct dns_name name; /* as received: case kept, for the echo */
	uint16_t qtype;
	uint16_t qclass;
};

/* EDNS Client Subnet, RFC 7871 §6. */
struct dns_ecs {
	bool present;
	uint16_t family;       /* 1 IPv4, 2 IPv6 */
	uint8_t source_prefix; /* bits of @addr that are meaningful */
	uint8_t scope_prefix;
	uint8_t addr[16]; /* bits past @source_prefix are zero */
};

/* The OPT pseudo-record, RFC 6891 §6.1. */
struct dns_edns {
	bool present;
	uint16_t udp_size; /* as sent: the caller applies 512 <= n <= cap */
	uint8_t ext_rcode; /* upper 8 bits of a 12-bit rcode */
	uint8_t version;   /* the server answers BADVERS to anything but 0 */
	bool do_bit;	   /* DNSSEC OK, RFC 3225 */
	struct dns_ecs ecs;
};

struct dns_query {
	struct dns_header hdr;
	struct dns_question question;
	struct dns_name lname; /* question.name lower-cased: match on this */
	/* @lname as text without the trailing dot ("" for the root): '.' and
	 * '\' inside a label are written "\." and "\\", bytes outside
	 * 0x21..0x7e as "\DDD" (RFC 1035 §5.1), so the text is unambiguous. */
	char text[DNS_MAX_TEXT + 1];
	size_t text_len;
	struct dns_edns edns;
	size_t trailing; /* bytes after the last record, ignored */
	/* When dns_query_parse() fails: the rcode to answer with (with no
	 * question and no OPT), or DNS_RCODE_DROP; and a static reason. */
	int rcode;
	const char *why;
};

/* Parse the query in @msg[0..@len) into @q; @msg is not kept.
 *
 * Accepts what the default accept function of miekg/dns (Consul's DNS
 * library) accepts, NOTIFY aside: QR clear, opcode QUERY, one question, at
 * most 1 answer, 1 authority and 2 additional records, every name and
 * record inside the message, at most one OPT (owner root, additional
 * section only). Bytes after the last record are ignored (as miekg/dns
 * does) and counted in @q->trailing. Other flags, the header rcode, the
 * qclass and the EDNS version are reported, not judged.
 *
 * Returns 0, or BCN_EINVAL with @q->why set and @q->rcode saying how to
 * answer: DNS_RCODE_DROP (under 12 or over 65535 bytes, or a response),
 * NOTIMP (another opcode) or FORMERR (anything malformed); @q->hdr is
 * valid unless DROP. */
int dns_query_parse(struct dns_query *q, const void *msg,
		    size_t len) BCN_MUST_CHECK;

/* ---- names -------------------------------------------------------------- */

/* Set @n from presentation text @s[0..@len) ("web.service.consul", with or
 * without the trailing dot; "" and "." are the root). "\X" is the byte X and
 * "\DDD" the byte DDD (decimal). Returns 0, or BCN_EINVAL for an empty
 * label, a label over 63 bytes, over 255 bytes on the wire, or a bad
 * escape; @n is unspecified then. */
int dns_name_from_text(struct dns_name *n, const char *s,
		       size_t len) BCN_MUST_CHECK;

/* Write @n as text (see struct dns_query) with a NUL into @out[0..@cap).
 * Sets *@len to the length without the NUL. Returns 0, or BCN_ETOOBIG if
 * @cap is too small (DNS_MAX_TEXT + 1 always suffices). */
int dns_name_to_text(const struct dns_name *n, char *out, size_t cap,
		     size_t *len) BCN_MUST_CHECK;

/* Read the possibly compressed name at @msg[*@off] into @out (case kept)
 * and advance *@off past it (past the first pointer, if any). Returns 0 or
 * BCN_EINVAL: out of bounds, label type 0x40/0x80 (so no label over 63
 * bytes), a name over 255 bytes, or a pointer into the header, not strictly
 * before the fragment that holds it (the name's start, or the previous
 * pointer's target), or beyond DNS_MAX_JUMPS. */
int dns_name_unpack(struct dns_name *out, const void *msg, size_t len,
		    size_t *off) BCN_MUST_CHECK;

/* Lower-case the ASCII letters of @n in place (RFC 4343). */
void dns_name_lower(struct dns_name *n);

/* True if @a and @b are the same name, ignoring ASCII case. */
bool dns_name_equal(const struct dns_name *a, const struct dns_name *b);

/* True if @n is @zone or below it, ignoring ASCII case. */
bool dns_name_in_zone(const struct dns_name *n, const struct dns_name *zone);

/* Set @out to the address of the reverse name @n: "4.3.2.1.in-addr.arpa"
 * (decimal octets, no leading zeros) gives 4 bytes, 32 hex nibbles under
 * "ip6.arpa" give 16; case is ignored. *@alen is set to 4 or 16. Returns 0,
 * or BCN_EINVAL for anything else, partial names included. */
int dns_ptr_parse(const struct dns_name *n, uint8_t out[16],
		  size_t *alen) BCN_MUST_CHECK;

/* Set @out to the reverse name of @addr, whose length @alen is 4 or 16.
 * Returns 0, or BCN_EINVAL for another length. */
int dns_ptr_build(struct dns_name *out, const uint8_t *addr,
		  size_t alen) BCN_MUST_CHECK;

/* ---- reading any message ------------------------------------------------ */

/* A record as found in a message; rdata stays in the message. */
struct dns_rr_view {
	enum dns_section section;
	struct dns_name owner;
	uint16_t type;
	uint16_t rclass;
	uint32_t ttl;
	uint16_t rdlen;
	size_t rdoff; /* rdata is msg[rdoff .. rdoff + rdlen) */
};

/* A cursor over the sections of a message (borrowed: it must outlive the
 * reader). dns_query_parse() is built on it; tests use it on responses. */
struct dns_reader {
	const uint8_t *msg;
	size_t len;
	size_t off;
	uint16_t left[DNS_SEC_NR];
	enum dns_section section;
	bool failed; /* a malformed record was met: every later read fails */
};

/* Start reading @msg[0..@len) and decode its header into @hdr. Returns 0
 * or BCN_EINVAL when @len is under 12 bytes. */
int dns_reader_init(struct dns_reader *r, struct dns_header *hdr,
		    const void *msg, size_t len) BCN_MUST_CHECK;

/* Read the next question. Returns 0, BCN_ENOTFOUND when no question is
 * left, or BCN_EINVAL if it is malformed. */
int dns_reader_question(struct dns_reader *r,
			struct dns_question *q) BCN_MUST_CHECK;

/* Read the next resource record, skipping any questions left. Returns 0,
 * BCN_ENOTFOUND after the last one, or BCN_EINVAL if it is malformed (the
 * reader is then stuck at that error). Only the record's framing is
 * checked, not its rdata. */
int dns_reader_rr(struct dns_reader *r, struct dns_rr_view *rr) BCN_MUST_CHECK;

/* Bytes after the last counted record, once dns_reader_rr() has returned
 * BCN_ENOTFOUND. */
size_t dns_reader_trailing(const struct dns_reader *r);

/* Decode the rdata of the OPT record @rr (type 41) into @e. Returns 0 or
 * BCN_EINVAL (owner not root, options overrunning the rdata, a malformed
 * client subnet). Unknown options are skipped. */
int dns_edns_parse(struct dns_edns *e, const struct dns_reader *r,
		   const struct dns_rr_view *rr) BCN_MUST_CHECK;

/* ---- encoding responses ----------------------------------------------------
 *
 * dns_msg_init() writes the header and the question; records are then
 * appended section by section (answer, authority, additional: never back to
 * an earlier one); dns_msg_finish() writes the OPT record reserved by
 * dns_msg_set_edns(). The header counts match the records written after
 * every call. Names are compressed (RFC 1035 §4.1.4) in owners and in the
 * rdata of NS, CNAME, PTR and SOA; SRV targets are written in full (RFC
 * 2782, RFC 3597 §4) but later names may point into them. */

/* A character-string for TXT rdata. */
struct dns_str {
	const void *p;
	size_t len; /* at most DNS_MAX_TXT */
};

/* A record to append; every pointer is borrowed for the call only. */
struct dns_rr {
	const struct dns_name *owner;
	uint16_t type; /* A, AAAA, NS, CNAME, PTR, SRV, TXT, SOA */
	uint16_t rclass;
	uint32_t ttl;
	union {
		uint8_t a[4];
		uint8_t aaaa[16];
		const struct dns_name *name; /* NS, CNAME, PTR */
		struct {
			uint16_t priority;
			uint16_t weight;
			uint16_t port;
			const struct dns_name *target;
		} srv;
		struct {
			const struct dns_str *strs;
			size_t n; /* at least 1 */
		} txt;
		struct {
			const struct dns_name *mname;
			const struct dns_name *rname;
			uint32_t serial;
			uint32_t refresh;
			uint32_t retry;
			uint32_t expire;
			uint32_t minimum;
		} soa;
	} rd;
};

/* Internal to the encoder; here because struct dns_msg embeds it. */
struct dns_comp_entry {
	uint16_t off;  /* where the suffix starts in the message */
	uint16_t hash; /* of the suffix, lower-cased */
	uint8_t len;   /* the suffix's uncompressed wire length */
};

/* A response under construction in a caller's buffer. The caller
 * allocates it (about 1 KiB) and uses only the functions below. */
struct dns_msg {
	uint8_t *buf; /* borrowed; must outlive the message */
	size_t cap;   /* the size limit */
	size_t len;
	size_t reserved; /* bytes kept back for the OPT record */
	uint16_t count[DNS_SEC_NR];
	enum dns_section section; /* the last section appended to */
	unsigned rcode;
	bool finished;
	struct dns_edns edns; /* what dns_msg_finish() writes */
	unsigned n_comp;
	struct dns_comp_entry comp[DNS_COMP_MAX];
};

/* Start a response to @query in @buf[0..@cap) (a @cap over 65535 counts as
 * 65535): copy id, opcode, RD and CD, set QR, and echo @question unless it
 * is NULL (for an error about an unparsed query). Flags and rcode start
 * clear. Returns 0, or DNS_ENOSPC if the header and question do not fit. */
int dns_msg_init(struct dns_msg *m, void *buf, size_t cap,
		 const struct dns_header *query,
		 const struct dns_question *question) BCN_MUST_CHECK;

/* Set (@on) or clear header flag @flag: DNS_FLAG_AA, TC, RA or AD. */
void dns_msg_set_flag(struct dns_msg *m, uint16_t flag, bool on);

/* Set the response code. Returns 0, or BCN_EINVAL if @rcode is over 4095,
 * or over 15 without dns_msg_set_edns() first. */
int dns_msg_set_rcode(struct dns_msg *m, unsigned rcode) BCN_MUST_CHECK;

/* Reserve room for an OPT record built from @e (copied): its UDP size, its
 * DO bit and its client subnet if present (with the scope the caller put
 * there); VERSION is always 0, the one we speak. Call it right after
 * dns_msg_init(), so that the OPT record always fits whatever is appended.
 * Returns 0, DNS_ENOSPC if it does not fit, or BCN_EINVAL if called twice or
 * with a malformed subnet. */
int dns_msg_set_edns(struct dns_msg *m,
		     const struct dns_edns *e) BCN_MUST_CHECK;

/* Append @rr to @sec. Returns 0; DNS_ENOSPC if it would not fit in the size
 * limit, after which the message, its counts and its compression table are
 * exactly as before the call (only bytes between dns_msg_len() and the
 * limit may have changed; nothing is ever written past the limit), so the
 * caller can stop there and set TC; BCN_EINVAL, with nothing written, for
 * an unsupported type, a missing name, a TXT string over 255 bytes or none
 * at all, a section earlier than the last one used, or a finished
 * message. */
int dns_msg_add_rr(struct dns_msg *m, enum dns_section sec,
		   const struct dns_rr *rr) BCN_MUST_CHECK;

/* Write the reserved OPT record, if any, and set *@len to the length of
 * the message, which is then complete. Returns 0, or BCN_EINVAL if called
 * twice. */
int dns_msg_finish(struct dns_msg *m, size_t *len) BCN_MUST_CHECK;

/* Bytes written so far, the reserved OPT record not included. */
size_t dns_msg_len(const struct dns_msg *m);

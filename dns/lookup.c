/* Answering DNS queries from the catalog (see dns/lookup.h).
 *
 * The happy path: parse the query; find which of our zones holds the name;
 * read its labels right to left up to the kind (service, node, addr), as
 * Consul does; read the catalog; plan the records (struct rec says what to
 * write, not yet the bytes); shuffle; encode. Usually everything fits at
 * the first try. When it does not, the largest number of answers that fit
 * together with their additional records is found by binary search over
 * complete encodings (the encoder cannot remove a record once written, and
 * compression makes sizes depend on what came before).
 *
 * Failure modes: a catalog error or an allocation failure answers SERVFAIL;
 * a name under our zones that does not parse, or names nothing, answers
 * NXDOMAIN with our SOA; a catalog string that makes no valid DNS name (a
 * node called "a..b") drops that record only. Nothing a client sends
 * reaches an assert.
 *
 * Caches, so that a query usually costs one indexed read of SQLite (the
 * catalog's overall index, "gen" below) instead of five statements. Each
 * context keeps the catalog's service and node names lower-cased and
 * sorted (service and node names are matched case-insensitively although
 * the catalog compares them exactly; the node list also answers PTR
 * queries), checked against the index of the list of services ("S") or
 * nodes ("N") whenever the overall index has moved. The instances of a
 * service, with their worst check status, are kept the same way, checked
 * against the index of the topic "s/<name>", which moves with the service's
 * instances, their checks, their nodes' checks and addresses (see
 * health/catalog.h). Topic indexes only grow, so an unchanged index is an
 * unchanged topic: the caches can never serve something the catalog no
 * longer says, as of the last applied entry.
 *
 * In front of all this, the answer cache (dns/cache.h) keeps whole wire
 * answers, valid at the overall index they were built at, so that a
 * repeated query costs a hash lookup and a copy. What else an answer
 * depends on goes into its key (the query's bytes, transport, capacity) or
 * its validity (the second, for the SOA serial); the shuffle draws from a
 * number the cache knows (see shuffle()), so each order is an answer of
 * its own. */
#include "dns/lookup.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/alloc.h"
#include "common/parse.h"
#include "dns/cache.h"
#include "dns/wire.h"
#include "health/catalog.h"

#define TTL_MAX	    0x7fffffffu /* RFC 2181 §8 */
#define SOA_REFRESH 3600
#define SOA_RETRY   600
#define SOA_EXPIRE  86400
#define SOA_MINTTL  0
#define NS_MAX	    3	 /* servers named in an NS answer */
#define TXT_BUF	    1530 /* 6 character-strings of meta text */
#define NAME_TEXT   2100 /* a name being composed as text */

/* ---- configuration ------------------------------------------------------- */

struct ttl_rule {
	char *key; /* lower-cased; a prefix rule without its '*' */
	bool prefix;
	uint32_t ttl;
};

struct zone {
	struct dns_name name;	     /* lower-cased */
	char text[DNS_MAX_TEXT + 1]; /* presentation form, escaped */
};

/* A service instance as cached: strings at offsets into the blob. */
struct cinst {
	size_t node, addr, tags, tags_len;
	bool svc_addr;	/* the service has an address of its own */
	uint8_t alen;	/* of @ip: 4, 16, or 0 for a host name */
	uint8_t status; /* the worst of its own and its node's checks */
	uint8_t ip[16];
	uint8_t node_alen; /* the node's address, for NS glue */
	uint8_t node_ip[16];
	uint16_t port;
	uint32_t weight_passing, weight_warning;
};

/* Every instance of the services of one lower-cased name. */
struct svc_cache {
	uint64_t sum;	  /* of the topic indexes of those names */
	uint64_t checked; /* the overall index it was last checked at */
	uint32_t ttl;
	struct cinst *v;
	size_t n;
	char *blob;
};

struct svc_ent {
	char *lower;
	char *name;		 /* as the catalog spells it */
	struct svc_cache *cache; /* first entry of each lower name only */
};

struct node_ent {
	char *lower;
	char *name;
	uint8_t alen; /* 4, 16, or 0 when the address is not an IP */
	uint8_t ip[16];
};

struct dns_lookup {
	struct zone zones[2];
	unsigned n_zones;
	char dc[DNS_MAX_TEXT + 1];	/* lower-cased, as configured */
	char dc_text[DNS_MAX_TEXT + 1]; /* escaped as one label */
	bool only_passing, enable_truncate, recursor;
	unsigned udp_answer_limit;
	uint32_t node_ttl;
	struct ttl_rule *ttl;
	size_t n_ttl;

	/* Caches (see the top of this file). */
	const struct cat_store *cache_cat;
	bool svcs_valid, nodes_valid;
	uint64_t svcs_index, nodes_index; /* of "S" and "N" */
	uint64_t svcs_gen, nodes_gen;	  /* overall index when checked */
	struct svc_ent *svcs;
	size_t n_svcs;
	struct node_ent *nodes;
	size_t n_nodes;

	/* The answer cache (NULL: none), and the catalog it holds answers
	 * of. */
	struct dns_cache *cache;
	const struct cat_store *ans_cat;
	/* The catalog's overall index at the caller's version (see
	 * catalog_gen()). */
	bool ver_valid;
	const struct cat_store *ver_cat;
	uint64_t ver, ver_gen;
};

static char lower_c(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c;
}

static void lower_str(char *s)
{
	for (; *s != '\0'; s++)
		*s = lower_c(*s);
}

static uint32_t secs_of_ms(uint64_t ms)
{
	return ms / 1000 > TTL_MAX ? TTL_MAX : (uint32_t)(ms / 1000);
}

static int zone_init(struct zone *z, const char *text, const char *what,
		     char *errmsg)
{
	char buf[DNS_MAX_TEXT + 1];
	size_t len = strlen(text), tlen;

	if (len == 0 || len >= sizeof buf) {
		bcn_errf(errmsg, "bad DNS %s '%s'", what, text);
		return BCN_EINVAL;
	}
	memcpy(buf, text, len + 1);
	lower_str(buf);
	if (dns_name_from_text(&z->name, buf, len) != 0 ||
	    z->name.n_labels == 0) {
		bcn_errf(errmsg, "bad DNS %s '%s'", what, text);
		return BCN_EINVAL;
	}
	if (dns_name_to_text(&z->name, z->text, sizeof z->text, &tlen) != 0)
		return BCN_EINVAL; /* cannot happen: the buffer is the max */
	return 0;
}

/* Parse "web=10s,api*=5s,*=0s" into @l->ttl. */
static int ttl_parse(struct dns_lookup *l, const char *spec, char *errmsg)
{
	const char *p = spec;
	size_t n = 1;

	for (const char *q = spec; *q != '\0'; q++)
		n += *q == ',';
	l->ttl = bcn_calloc(n, sizeof *l->ttl);
	if (l->ttl == NULL)
		return BCN_ENOMEM;
	while (*p != '\0') {
		const char *end = strchr(p, ','), *eq;
		char item[256], *key, *val;
		size_t len, klen;
		uint64_t ms;
		struct ttl_rule *r;

		len = end != NULL ? (size_t)(end - p) : strlen(p);
		if (len >= sizeof item)
			goto bad;
		memcpy(item, p, len);
		item[len] = '\0';
		p += len + (end != NULL);
		key = item;
		while (*key == ' ')
			key++;
		if (*key == '\0' && end == NULL)
			break; /* a final comma */
		eq = strchr(key, '=');
		if (eq == NULL)
			goto bad;
		val = item + (eq - item) + 1;
		klen = (size_t)(eq - key);
		while (klen > 0 && key[klen - 1] == ' ')
			klen--;
		while (*val == ' ')
			val++;
		for (size_t v = strlen(val); v > 0 && val[v - 1] == ' '; v--)
			val[v - 1] = '\0';
		if (klen == 0 || bcn_parse_duration_ms(val, &ms) != 0)
			goto bad;
		r = &l->ttl[l->n_ttl];
		r->prefix = key[klen - 1] == '*';
		if (r->prefix)
			klen--;
		if (memchr(key, '*', klen) != NULL)
			goto bad; /* '*' only at the end */
		r->key = bcn_strndup(key, klen);
		if (r->key == NULL)
			return BCN_ENOMEM;
		lower_str(r->key);
		r->ttl = secs_of_ms(ms);
		l->n_ttl++;
	}
	return 0;
bad:
	bcn_errf(errmsg,
		 "bad DNS service TTLs '%s' (want NAME=DURATION,"
		 "PREFIX*=DURATION,*=DURATION)",
		 spec);
	return BCN_EINVAL;
}

static void svc_cache_free(struct svc_cache *sc)
{
	if (sc == NULL)
		return;
	bcn_free(sc->v);
	bcn_free(sc->blob);
	bcn_free(sc);
}

static void cache_clear_svcs(struct dns_lookup *l)
{
	for (size_t i = 0; i < l->n_svcs; i++) {
		bcn_free(l->svcs[i].lower);
		bcn_free(l->svcs[i].name);
		svc_cache_free(l->svcs[i].cache);
	}
	bcn_free(l->svcs);
	l->svcs = NULL;
	l->n_svcs = 0;
	l->svcs_valid = false;
}

static void cache_clear_nodes(struct dns_lookup *l)
{
	for (size_t i = 0; i < l->n_nodes; i++) {
		bcn_free(l->nodes[i].lower);
		bcn_free(l->nodes[i].name);
	}
	bcn_free(l->nodes);
	l->nodes = NULL;
	l->n_nodes = 0;
	l->nodes_valid = false;
}

int dns_lookup_new(struct dns_lookup **out, const struct dns_lookup_config *c,
		   char *errmsg)
{
	struct dns_lookup *l = bcn_calloc(1, sizeof *l);
	const char *dc = c->datacenter != NULL ? c->datacenter : "";
	size_t dclen = strlen(dc), o = 0;
	int rc;

	if (l == NULL)
		return BCN_ENOMEM;
	rc = zone_init(&l->zones[0], c->domain != NULL ? c->domain : "",
		       "domain", errmsg);
	if (rc != 0)
		goto err_free;
	l->n_zones = 1;
	if (c->alt_domain != NULL && c->alt_domain[0] != '\0') {
		rc = zone_init(&l->zones[1], c->alt_domain, "alt domain",
			       errmsg);
		if (rc != 0)
			goto err_free;
		if (dns_name_equal(&l->zones[0].name, &l->zones[1].name)) {
			bcn_errf(errmsg, "the DNS alt domain is the domain");
			rc = BCN_EINVAL;
			goto err_free;
		}
		l->n_zones = 2;
	}
	/* The datacenter is one label: escape what would split it. */
	if (dclen == 0 || dclen > DNS_MAX_LABEL) {
		bcn_errf(errmsg, "datacenter '%s' is not a DNS label", dc);
		rc = BCN_EINVAL;
		goto err_free;
	}
	memcpy(l->dc, dc, dclen + 1);
	lower_str(l->dc);
	for (size_t i = 0; i < dclen; i++) {
		if (l->dc[i] == '.' || l->dc[i] == '\\')
			l->dc_text[o++] = '\\';
		l->dc_text[o++] = l->dc[i];
	}
	l->dc_text[o] = '\0';
	l->only_passing = c->only_passing;
	l->enable_truncate = c->enable_truncate;
	l->recursor = c->recursor;
	l->udp_answer_limit = c->udp_answer_limit > 0 ? c->udp_answer_limit : 1;
	l->node_ttl = c->node_ttl > TTL_MAX ? TTL_MAX : c->node_ttl;
	rc = ttl_parse(l, c->service_ttl != NULL ? c->service_ttl : "", errmsg);
	if (rc != 0)
		goto err_free;
	if (!c->no_cache) {
		rc = dns_cache_new(&l->cache,
				   c->cache_entries > 0
				       ? c->cache_entries
				       : DNS_LOOKUP_CACHE_ENTRIES,
				   c->cache_bytes > 0 ? c->cache_bytes
						      : DNS_LOOKUP_CACHE_BYTES);
		if (rc != 0)
			goto err_free;
	}
	*out = l;
	return 0;
err_free:
	dns_lookup_free(l);
	return rc;
}

void dns_lookup_free(struct dns_lookup *l)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < l->n_ttl; i++)
		bcn_free(l->ttl[i].key);
	bcn_free(l->ttl);
	cache_clear_svcs(l);
	cache_clear_nodes(l);
	dns_cache_free(l->cache);
	bcn_free(l);
}

void dns_lookup_cache_stats(const struct dns_lookup *l,
			    struct dns_cache_stats *out)
{
	if (l->cache != NULL)
		dns_cache_get_stats(l->cache, out);
	else
		memset(out, 0, sizeof *out);
}

/* The catalog's overall index into *@gen. With a @version from the caller
 * it is read once per version, which changes whenever the catalog may
 * have (dns_lookup_req); without one, on every call. */
static int catalog_gen(struct dns_lookup *l, struct cat_store *cat,
		       uint64_t version, uint64_t *gen)
{
	int rc;

	if (version != 0 && l->ver_valid && l->ver_cat == cat &&
	    l->ver == version) {
		*gen = l->ver_gen;
		return 0;
	}
	rc = cat_index(cat, "", gen);
	l->ver_valid = rc == 0 && version != 0;
	l->ver_cat = cat;
	l->ver = version;
	l->ver_gen = *gen;
	return rc;
}

/* The TTL of service @name: exact beats the longest prefix. */
static uint32_t service_ttl(const struct dns_lookup *l, const char *name)
{
	size_t best = 0;
	const struct ttl_rule *hit = NULL;

	for (size_t i = 0; i < l->n_ttl; i++) {
		const struct ttl_rule *r = &l->ttl[i];
		size_t klen = strlen(r->key);

		if (!r->prefix) {
			if (strcasecmp(r->key, name) == 0)
				return r->ttl;
		} else if (strncasecmp(r->key, name, klen) == 0 &&
			   (hit == NULL || klen > best)) {
			hit = r;
			best = klen;
		}
	}
	return hit != NULL ? hit->ttl : 0;
}

/* ---- name caches --------------------------------------------------------- */

static int cmp_svc_ent(const void *a, const void *b)
{
	const struct svc_ent *x = a, *y = b;
	int c = strcmp(x->lower, y->lower);

	return c != 0 ? c : strcmp(x->name, y->name);
}

static int cmp_node_ent(const void *a, const void *b)
{
	const struct node_ent *x = a, *y = b;
	int c = strcmp(x->lower, y->lower);

	return c != 0 ? c : strcmp(x->name, y->name);
}

/* Parse @s as an IPv4 or IPv6 address into @ip; 4, 16, or 0 if neither. */
static uint8_t parse_ip(const char *s, uint8_t ip[16])
{
	if (inet_pton(AF_INET, s, ip) == 1)
		return 4;
	if (inet_pton(AF_INET6, s, ip) == 1)
		return 16;
	return 0;
}

static void cache_check_store(struct dns_lookup *l, struct cat_store *cat)
{
	if (l->cache_cat != cat) {
		cache_clear_svcs(l);
		cache_clear_nodes(l);
		l->cache_cat = cat;
	}
}

/* Make the service names current as of overall index @gen. */
static int refresh_svcs(struct dns_lookup *l, struct cat_store *cat,
			uint64_t gen)
{
	struct cat_rows rows = {0};
	struct svc_ent *v = NULL;
	size_t n = 0;
	uint64_t index;
	int rc;

	cache_check_store(l, cat);
	if (l->svcs_valid && l->svcs_gen == gen)
		return 0;
	rc = cat_index(cat, "S", &index);
	if (rc != 0)
		return rc;
	if (l->svcs_valid && index == l->svcs_index) {
		l->svcs_gen = gen;
		return 0;
	}
	rc = cat_services(cat, NULL, NULL, &rows);
	if (rc == 0 && rows.n_svcs > 0) {
		v = bcn_calloc(rows.n_svcs, sizeof *v);
		rc = v == NULL ? BCN_ENOMEM : 0;
	}
	for (size_t i = 0; rc == 0 && i < rows.n_svcs; i++) {
		v[n].name = bcn_strdup(rows.svcs[i].name);
		v[n].lower = bcn_strdup(rows.svcs[i].name);
		if (v[n].name == NULL || v[n].lower == NULL) {
			bcn_free(v[n].name);
			bcn_free(v[n].lower);
			rc = BCN_ENOMEM;
			break;
		}
		lower_str(v[n].lower);
		n++;
	}
	cat_rows_close(&rows);
	if (rc == 0 && n > 1) {
		size_t w = 1;

		qsort(v, n, sizeof *v, cmp_svc_ent);
		for (size_t i = 1; i < n; i++) {
			if (strcmp(v[i].name, v[w - 1].name) == 0) {
				bcn_free(v[i].name);
				bcn_free(v[i].lower);
			} else {
				v[w++] = v[i];
			}
		}
		n = w;
	}
	if (rc != 0) {
		for (size_t i = 0; i < n; i++) {
			bcn_free(v[i].name);
			bcn_free(v[i].lower);
		}
		bcn_free(v);
		return rc;
	}
	cache_clear_svcs(l);
	l->svcs = v;
	l->n_svcs = n;
	l->svcs_index = index;
	l->svcs_gen = gen;
	l->svcs_valid = true;
	return 0;
}

/* Make the node names current as of overall index @gen. */
static int refresh_nodes(struct dns_lookup *l, struct cat_store *cat,
			 uint64_t gen)
{
	struct cat_rows rows = {0};
	struct node_ent *v = NULL;
	size_t n = 0;
	uint64_t index;
	int rc;

	cache_check_store(l, cat);
	if (l->nodes_valid && l->nodes_gen == gen)
		return 0;
	rc = cat_index(cat, "N", &index);
	if (rc != 0)
		return rc;
	if (l->nodes_valid && index == l->nodes_index) {
		l->nodes_gen = gen;
		return 0;
	}
	rc = cat_nodes(cat, &rows);
	if (rc == 0 && rows.n_nodes > 0) {
		v = bcn_calloc(rows.n_nodes, sizeof *v);
		rc = v == NULL ? BCN_ENOMEM : 0;
	}
	for (size_t i = 0; rc == 0 && i < rows.n_nodes; i++) {
		v[n].name = bcn_strdup(rows.nodes[i].name);
		v[n].lower = bcn_strdup(rows.nodes[i].name);
		if (v[n].name == NULL || v[n].lower == NULL) {
			bcn_free(v[n].name);
			bcn_free(v[n].lower);
			rc = BCN_ENOMEM;
			break;
		}
		lower_str(v[n].lower);
		v[n].alen = parse_ip(rows.nodes[i].address, v[n].ip);
		n++;
	}
	cat_rows_close(&rows);
	if (rc != 0) {
		for (size_t i = 0; i < n; i++) {
			bcn_free(v[i].name);
			bcn_free(v[i].lower);
		}
		bcn_free(v);
		return rc;
	}
	if (n > 1)
		qsort(v, n, sizeof *v, cmp_node_ent);
	cache_clear_nodes(l);
	l->nodes = v;
	l->n_nodes = n;
	l->nodes_index = index;
	l->nodes_gen = gen;
	l->nodes_valid = true;
	return 0;
}

/* ---- records to write ---------------------------------------------------- */

enum hn_kind {
	HN_QNAME,      /* the question's name, as spelt */
	HN_APEX,       /* the zone */
	HN_NODE,       /* <s>.node.<dc>.<zone> */
	HN_ADDR,       /* <hex of ip>.addr.<dc>.<zone> */
	HN_HOST,       /* @s itself */
	HN_NS,	       /* ns.<zone> */
	HN_HOSTMASTER, /* hostmaster.<zone> */
};

/* A name to write, described rather than built (a dns_name is 385 bytes
 * and an answer may hold thousands). */
struct hname {
	uint8_t kind;
	uint8_t alen;
	uint8_t ip[16];
	const char *s; /* borrowed from the rows or the cache */
};

struct rec {
	uint16_t type;
	bool skip;  /* an additional record already sent for another answer */
	long group; /* additional: the answer it serves, or -1 for none */
	uint32_t ttl;
	struct hname owner;
	struct hname target; /* CNAME, PTR, NS, SRV */
	uint8_t ip[16];	     /* A, AAAA */
	uint16_t weight, port;
	const char *key, *val; /* TXT: a meta pair */
};

struct recs {
	struct rec *v;
	size_t n, cap;
};

/* A service instance that may be answered. */
struct inst {
	const char *node;
	const char *addr; /* the service's address, else the node's */
	bool svc_addr;	  /* the service has an address of its own */
	uint8_t alen;
	uint8_t ip[16];
	uint8_t node_alen; /* the node's own address */
	uint8_t node_ip[16];
	uint16_t port, weight;
	uint32_t ttl;
};

enum { SEC_AN, SEC_NS, SEC_AR, SEC_NR };

struct ctx {
	struct dns_lookup *l;
	struct cat_store *cat;
	const struct dns_lookup_req *req;
	struct dns_query q;
	const struct zone *zone; /* of the question; the primary for PTR */
	struct recs sec[SEC_NR];
	struct cat_rows rows;
	uint64_t gen; /* the catalog's overall index for this query */
	bool have_gen;
	unsigned rcode;
	bool aa;
	bool cut;    /* answers were left out */
	bool parsed; /* the query parsed: the answer echoes its question */
	/* The shuffle's draws (see shuffle()), and what the answer depends
	 * on besides the query and the catalog. */
	uint64_t draw;	  /* the query's random number */
	uint64_t variant; /* what the draws left of it */
	uint64_t perms;	  /* the number of orders the draws chose from */
	bool random;	  /* draws beyond @variant were needed */
	bool now_dep;	  /* an SOA, whose serial is the time */
};

/* Append @s to the name text @buf; if @esc, escape backslashes (dots stay:
 * they separate labels). */
static int name_cat(char *buf, size_t cap, size_t *o, const char *s, bool esc)
{
	for (; *s != '\0'; s++) {
		if (*o + 2 >= cap)
			return BCN_EINVAL;
		if (esc && *s == '\\')
			buf[(*o)++] = '\\';
		buf[(*o)++] = *s;
	}
	buf[*o] = '\0';
	return 0;
}

static int hname_build(const struct ctx *c, const struct hname *h,
		       struct dns_name *out)
{
	static const char hex[] = "0123456789abcdef";
	char text[NAME_TEXT];
	size_t o = 0;
	int rc = 0;

	switch (h->kind) {
	case HN_QNAME:
		*out = c->q.question.name;
		return 0;
	case HN_APEX:
		*out = c->zone->name;
		return 0;
	case HN_HOST:
		return dns_name_from_text(out, h->s, strlen(h->s));
	case HN_NS:
		rc = name_cat(text, sizeof text, &o, "ns.", false);
		break;
	case HN_HOSTMASTER:
		rc = name_cat(text, sizeof text, &o, "hostmaster.", false);
		break;
	case HN_NODE:
		/* Node names may hold dots: they make labels (Consul). */
		rc = name_cat(text, sizeof text, &o, h->s, true);
		if (rc == 0)
			rc = name_cat(text, sizeof text, &o, ".node.", false);
		if (rc == 0)
			rc = name_cat(text, sizeof text, &o, c->l->dc_text,
				      false);
		if (rc == 0)
			rc = name_cat(text, sizeof text, &o, ".", false);
		break;
	case HN_ADDR:
		for (unsigned i = 0; i < h->alen; i++) {
			text[o++] = hex[h->ip[i] >> 4];
			text[o++] = hex[h->ip[i] & 0xf];
		}
		text[o] = '\0';
		rc = name_cat(text, sizeof text, &o, ".addr.", false);
		if (rc == 0)
			rc = name_cat(text, sizeof text, &o, c->l->dc_text,
				      false);
		if (rc == 0)
			rc = name_cat(text, sizeof text, &o, ".", false);
		break;
	default:
		return BCN_EINVAL;
	}
	/* The zone's text is escaped already: copy it as it is. */
	if (rc == 0 && o + strlen(c->zone->text) + 1 > sizeof text)
		rc = BCN_EINVAL;
	if (rc != 0)
		return rc;
	memcpy(text + o, c->zone->text, strlen(c->zone->text) + 1);
	o += strlen(c->zone->text);
	return dns_name_from_text(out, text, o);
}

static bool hname_ok(const struct ctx *c, const struct hname *h)
{
	struct dns_name n;

	return hname_build(c, h, &n) == 0;
}

static struct hname hn(uint8_t kind, const char *s)
{
	struct hname h = {.kind = kind, .s = s};

	return h;
}

static struct hname hn_addr(const uint8_t *ip, uint8_t alen)
{
	struct hname h = {.kind = HN_ADDR, .alen = alen};

	memcpy(h.ip, ip, alen);
	return h;
}

/* Append a zeroed record to section @s; NULL on OOM. */
static struct rec *rec_add(struct ctx *c, int s, uint16_t type,
			   struct hname owner, uint32_t ttl)
{
	struct recs *r = &c->sec[s];
	struct rec *x;

	if (r->n == r->cap) {
		size_t cap = r->cap == 0 ? 8 : 2 * r->cap;
		struct rec *v = bcn_realloc(r->v, cap * sizeof *v);

		if (v == NULL)
			return NULL;
		r->v = v;
		r->cap = cap;
	}
	x = &r->v[r->n++];
	memset(x, 0, sizeof *x);
	if (type == DNS_TYPE_SOA)
		c->now_dep = true; /* its serial: req->now */
	x->type = type;
	x->owner = owner;
	x->ttl = ttl;
	x->group = -1;
	return x;
}

/* An A or AAAA record of @ip; NULL on OOM. */
static struct rec *rec_addr(struct ctx *c, int s, struct hname owner,
			    const uint8_t *ip, uint8_t alen, uint32_t ttl)
{
	struct rec *x =
	    rec_add(c, s, alen == 4 ? DNS_TYPE_A : DNS_TYPE_AAAA, owner, ttl);

	if (x != NULL)
		memcpy(x->ip, ip, alen);
	return x;
}

/* ---- encoding ------------------------------------------------------------ */

/* RFC 1464: "key=value", with '=', '`' and blanks at the ends of the key
 * quoted by '`'; keys starting "rfc1035-" give the value alone (Consul). */
static size_t txt_text(const struct rec *r, char *buf, size_t cap)
{
	size_t o = 0, klen = strlen(r->key);

	if (strncmp(r->key, "rfc1035-", 8) != 0) {
		for (size_t i = 0; i < klen && o + 3 < cap; i++) {
			char ch = r->key[i];

			if (ch == '=' || ch == '`' ||
			    (ch == ' ' && (i == 0 || i == klen - 1)))
				buf[o++] = '`';
			buf[o++] = ch;
		}
		if (o + 1 < cap)
			buf[o++] = '=';
	}
	for (const char *v = r->val; *v != '\0' && o < cap; v++)
		buf[o++] = *v;
	return o;
}

static int emit(const struct ctx *c, struct dns_msg *m, enum dns_section s,
		const struct rec *r)
{
	struct dns_name owner, target, rname;
	struct dns_rr rr = {.owner = &owner,
			    .type = r->type,
			    .rclass = DNS_CLASS_IN,
			    .ttl = r->ttl};
	struct dns_str strs[TXT_BUF / DNS_MAX_TXT + 1];
	char txt[TXT_BUF];
	size_t tlen;

	if (hname_build(c, &r->owner, &owner) != 0)
		return BCN_EINVAL;
	switch (r->type) {
	case DNS_TYPE_A:
		memcpy(rr.rd.a, r->ip, 4);
		break;
	case DNS_TYPE_AAAA:
		memcpy(rr.rd.aaaa, r->ip, 16);
		break;
	case DNS_TYPE_CNAME:
	case DNS_TYPE_PTR:
	case DNS_TYPE_NS:
		if (hname_build(c, &r->target, &target) != 0)
			return BCN_EINVAL;
		rr.rd.name = &target;
		break;
	case DNS_TYPE_SRV:
		if (hname_build(c, &r->target, &target) != 0)
			return BCN_EINVAL;
		rr.rd.srv.priority = 1;
		rr.rd.srv.weight = r->weight;
		rr.rd.srv.port = r->port;
		rr.rd.srv.target = &target;
		break;
	case DNS_TYPE_TXT:
		tlen = txt_text(r, txt, sizeof txt);
		rr.rd.txt.strs = strs;
		rr.rd.txt.n = 0;
		do {
			size_t n = tlen > DNS_MAX_TXT ? DNS_MAX_TXT : tlen;

			strs[rr.rd.txt.n].p = txt + (rr.rd.txt.n * DNS_MAX_TXT);
			strs[rr.rd.txt.n++].len = n;
			tlen -= n;
		} while (tlen > 0);
		break;
	case DNS_TYPE_SOA: {
		struct hname ns = hn(HN_NS, NULL), hm = hn(HN_HOSTMASTER, NULL);

		if (hname_build(c, &ns, &target) != 0 ||
		    hname_build(c, &hm, &rname) != 0)
			return BCN_EINVAL;
		rr.rd.soa.mname = &target;
		rr.rd.soa.rname = &rname;
		rr.rd.soa.serial = c->req->now;
		rr.rd.soa.refresh = SOA_REFRESH;
		rr.rd.soa.retry = SOA_RETRY;
		rr.rd.soa.expire = SOA_EXPIRE;
		rr.rd.soa.minimum = SOA_MINTTL;
		break;
	}
	default:
		return BCN_EINVAL;
	}
	return dns_msg_add_rr(m, s, &rr);
}

/* The size limit of the reply. */
static size_t size_limit(const struct ctx *c, size_t cap)
{
	size_t lim;

	if (c->req->tcp) {
		lim = DNS_MAX_MSG;
	} else {
		lim = DNS_MAX_UDP;
		if (c->q.edns.present && c->q.edns.udp_size > lim)
			lim = c->q.edns.udp_size;
		if (lim > DNS_LOOKUP_UDP_MAX)
			lim = DNS_LOOKUP_UDP_MAX;
	}
	return lim < cap ? lim : cap;
}

static int msg_start(const struct ctx *c, struct dns_msg *m, void *out,
		     size_t cap, bool question)
{
	int rc = dns_msg_init(m, out, cap, &c->q.hdr,
			      question ? &c->q.question : NULL);

	if (rc == 0 && c->q.edns.present) {
		struct dns_edns e = c->q.edns;

		e.udp_size = DNS_LOOKUP_UDP_MAX;
		e.ext_rcode = 0;
		e.version = 0;
		e.ecs.scope_prefix = 0; /* RFC 7871 §7.2.1: valid for all */
		rc = dns_msg_set_edns(m, &e);
	}
	if (rc == 0)
		rc = dns_msg_set_rcode(m, c->rcode);
	if (rc == 0) {
		dns_msg_set_flag(m, DNS_FLAG_AA, c->aa);
		dns_msg_set_flag(m, DNS_FLAG_RA, c->l->recursor);
	}
	return rc;
}

/* Encode answers [0, @k), the authority section and the additional records
 * of those answers. @strict: fail with DNS_ENOSPC if any of them does not
 * fit; otherwise skip what does not fit. Additional records that serve no
 * answer are always optional. Returns 0, DNS_ENOSPC or another error. */
static int encode(const struct ctx *c, size_t k, bool strict, void *out,
		  size_t cap, size_t *len)
{
	struct dns_msg m;
	int rc = msg_start(c, &m, out, cap, true);

	for (size_t i = 0; rc == 0 && i < k; i++) {
		rc = emit(c, &m, DNS_SEC_ANSWER, &c->sec[SEC_AN].v[i]);
		if (rc == BCN_EINVAL || (rc == DNS_ENOSPC && !strict))
			rc = 0;
	}
	for (size_t i = 0; rc == 0 && i < c->sec[SEC_NS].n; i++) {
		rc = emit(c, &m, DNS_SEC_AUTHORITY, &c->sec[SEC_NS].v[i]);
		if (rc == BCN_EINVAL || (rc == DNS_ENOSPC && !strict))
			rc = 0;
	}
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; rc == 0 && i < c->sec[SEC_AR].n; i++) {
			const struct rec *r = &c->sec[SEC_AR].v[i];

			if (r->skip || (pass == 0) != (r->group >= 0) ||
			    (r->group >= 0 && (size_t)r->group >= k))
				continue;
			rc = emit(c, &m, DNS_SEC_ADDITIONAL, r);
			if (rc == BCN_EINVAL ||
			    (rc == DNS_ENOSPC && (!strict || pass == 1)))
				rc = 0;
		}
	}
	if (rc == 0)
		rc = dns_msg_finish(&m, len);
	return rc;
}

/* Encode the planned records, dropping answers from the end to fit. */
static enum dns_action reply(struct ctx *c, void *out, size_t cap, size_t *len)
{
	size_t lim = size_limit(c, cap);
	size_t n = c->sec[SEC_AN].n, max = n, lo, hi;
	const uint8_t *p = out;

	/* Amplification: a small UDP reply carries a few answers only. */
	if (!c->req->tcp && lim <= DNS_MAX_UDP && max > c->l->udp_answer_limit)
		max = c->l->udp_answer_limit;
	if (encode(c, max, true, out, lim, len) != 0) {
		/* The largest k in [1, max) that fits, or 0 if none. */
		lo = 0;
		hi = max;
		while (hi - lo > 1) {
			size_t mid = lo + (hi - lo) / 2;

			if (encode(c, mid, true, out, lim, len) == 0)
				lo = mid;
			else
				hi = mid;
		}
		/* At least one answer, even without its additional
		 * records, if it fits at all. */
		if (encode(c, lo > 0 ? lo : 1, lo > 0, out, lim, len) != 0)
			return DNS_ACT_DROP; /* not even the question fits */
	}
	/* Count what went out: names that could not be built are left out
	 * too, and are no reason for TC. */
	if ((size_t)(p[6] << 8 | p[7]) < max || max < n) {
		c->cut = true;
		if (c->l->enable_truncate)
			((uint8_t *)out)[2] |= DNS_FLAG_TC >> 8;
	}
	return DNS_ACT_REPLY;
}

static void recs_clear(struct ctx *c)
{
	for (int s = 0; s < SEC_NR; s++)
		c->sec[s].n = 0;
}

/* An answer with @rcode and no records. */
static enum dns_action reply_rcode(struct ctx *c, unsigned rcode, bool aa,
				   void *out, size_t cap, size_t *len)
{
	recs_clear(c);
	c->rcode = rcode;
	c->aa = aa;
	return reply(c, out, cap, len);
}

/* NXDOMAIN or NODATA: our SOA in the authority section. */
static enum dns_action reply_negative(struct ctx *c, bool nxdomain, void *out,
				      size_t cap, size_t *len)
{
	recs_clear(c);
	if (rec_add(c, SEC_NS, DNS_TYPE_SOA, hn(HN_APEX, NULL), SOA_MINTTL) ==
	    NULL)
		return reply_rcode(c, DNS_RCODE_SERVFAIL, false, out, cap, len);
	c->rcode = nxdomain ? DNS_RCODE_NXDOMAIN : DNS_RCODE_NOERROR;
	c->aa = true;
	return reply(c, out, cap, len);
}

/* ---- instances ----------------------------------------------------------- */

struct insts {
	struct inst *v;
	size_t n, cap;
};

static uint64_t rnd(const struct ctx *c)
{
	return c->req->rand != NULL ? c->req->rand(c->req->rand_data) : 0;
}

/* Fisher-Yates. The draws are the digits of c->variant, one random number
 * per query, read in mixed radix (base i for the i-th last position) while
 * the product of the bases, c->perms, stays within
 * DNS_LOOKUP_CACHE_VARIANTS: the order is then a function of variant %
 * perms, a bijection onto the perms orders, which the answer cache keeps
 * apart. Beyond that, fresh draws (c->random: the answer is not cached). */
static void shuffle(struct ctx *c, void *base, size_t n, size_t size)
{
	unsigned char tmp[sizeof(struct inst)];
	unsigned char *v = base;

	if (c->req->rand == NULL || size > sizeof tmp)
		return;
	for (size_t i = n; i > 1; i--) {
		size_t j;

		if (!c->random && c->perms <= DNS_LOOKUP_CACHE_VARIANTS / i) {
			j = (size_t)(c->variant % i);
			c->variant /= i;
			c->perms *= i;
		} else {
			j = (size_t)(rnd(c) % i);
			c->random = true;
		}

		if (j == i - 1)
			continue;
		memcpy(tmp, v + j * size, size);
		memcpy(v + j * size, v + (i - 1) * size, size);
		memcpy(v + (i - 1) * size, tmp, size);
	}
}

static bool has_tag(const struct cat_strs *tags, const char *tag)
{
	size_t pos = 0;
	const char *t;

	while ((t = cat_strs_next(tags, &pos)) != NULL)
		if (strcasecmp(t, tag) == 0)
			return true;
	return false;
}

/* Append @p[0..@n) to the blob being built; its offset in *@off. */
static int blob_put(struct bcn_buf *b, const void *p, size_t n, size_t *off)
{
	*off = b->len;
	bcn_buf_put(b, p, n);
	bcn_buf_putc(b, '\0');
	return bcn_buf_failed(b) ? BCN_ENOMEM : 0;
}

/* Cache every instance among rows [s0..], [n0..], [k0..], which one
 * cat_health_service() call appended (each part sorted by node), with its
 * worst status. */
static int cache_rows(const struct cat_rows *r, size_t s0, size_t n0, size_t k0,
		      struct cinst **v, size_t *n, size_t *cap,
		      struct bcn_buf *blob)
{
	size_t k = k0, nd = n0;
	int rc = 0;

	for (size_t i = s0; rc == 0 && i < r->n_svcs; i++) {
		const struct cat_service *sv = &r->svcs[i];
		enum cat_status worst = CAT_PASSING;
		const char *addr;
		struct cinst *x;

		while (k < r->n_chks && strcmp(r->chks[k].node, sv->node) < 0)
			k++;
		for (size_t j = k;
		     j < r->n_chks && strcmp(r->chks[j].node, sv->node) == 0;
		     j++) {
			const struct cat_check *ck = &r->chks[j];

			if ((ck->service_id[0] == '\0' ||
			     strcmp(ck->service_id, sv->id) == 0) &&
			    ck->status > worst)
				worst = ck->status;
		}
		while (nd < r->n_nodes &&
		       strcmp(r->nodes[nd].name, sv->node) < 0)
			nd++;
		if (nd == r->n_nodes ||
		    strcmp(r->nodes[nd].name, sv->node) != 0)
			continue; /* cannot happen: a service needs its node */
		if (*n == *cap) {
			size_t nc = *cap == 0 ? 8 : 2 * *cap;
			struct cinst *nv = bcn_realloc(*v, nc * sizeof *nv);

			if (nv == NULL)
				return BCN_ENOMEM;
			*v = nv;
			*cap = nc;
		}
		x = &(*v)[*n];
		memset(x, 0, sizeof *x);
		x->svc_addr = sv->address[0] != '\0';
		addr = x->svc_addr ? sv->address : r->nodes[nd].address;
		x->alen = parse_ip(addr, x->ip);
		x->node_alen = parse_ip(r->nodes[nd].address, x->node_ip);
		x->status = (uint8_t)worst;
		x->port = (uint16_t)sv->port;
		x->weight_passing = sv->weight_passing;
		x->weight_warning = sv->weight_warning;
		x->tags_len = sv->tags.len;
		rc = blob_put(blob, sv->node, strlen(sv->node), &x->node);
		if (rc == 0)
			rc = blob_put(blob, addr, strlen(addr), &x->addr);
		if (rc == 0)
			rc = blob_put(blob, sv->tags.data, sv->tags.len,
				      &x->tags);
		if (rc == 0)
			(*n)++;
	}
	return rc;
}

/* The cache of services [lo, hi) of the name list (one lower-cased name),
 * current as of overall index c->gen. */
static int svc_cache_get(struct ctx *c, size_t lo, size_t hi,
			 struct svc_cache **out)
{
	struct svc_ent *e = &c->l->svcs[lo];
	struct svc_cache *sc = e->cache;
	struct cat_rows rows = {0};
	struct bcn_buf blob;
	uint64_t sum = 0;
	size_t cap = 0;
	int rc = 0;

	if (sc != NULL && sc->checked == c->gen) {
		*out = sc;
		return 0;
	}
	for (size_t i = lo; rc == 0 && i < hi; i++) {
		char topic[CAT_MAX_NAME + 3];
		uint64_t idx;

		snprintf(topic, sizeof topic, "s/%s", c->l->svcs[i].name);
		rc = cat_index(c->cat, topic, &idx);
		sum += idx;
	}
	if (rc != 0)
		return rc;
	if (sc != NULL && sc->sum == sum) {
		sc->checked = c->gen;
		*out = sc;
		return 0;
	}
	sc = bcn_calloc(1, sizeof *sc);
	if (sc == NULL)
		return BCN_ENOMEM;
	bcn_buf_init(&blob);
	for (size_t i = lo; rc == 0 && i < hi; i++) {
		rc = cat_health_service(c->cat, c->l->svcs[i].name, &rows);
		if (rc == 0)
			rc = cache_rows(&rows, 0, 0, 0, &sc->v, &sc->n, &cap,
					&blob);
		cat_rows_close(&rows);
	}
	if (rc != 0) {
		bcn_buf_close(&blob);
		svc_cache_free(sc);
		return rc;
	}
	sc->blob = bcn_buf_steal(&blob, &cap); /* NULL if no instance */
	sc->sum = sum;
	sc->checked = c->gen;
	sc->ttl = service_ttl(c->l, e->name);
	svc_cache_free(e->cache);
	e->cache = sc;
	*out = sc;
	return 0;
}

/* The healthy instances (with @tag, if not NULL) of the services whose
 * name is @lname ignoring case. Strings point into the cache, which stays
 * as it is until the next query. */
static int find_insts(struct ctx *c, const char *lname, const char *tag,
		      struct insts *out)
{
	struct dns_lookup *l = c->l;
	struct svc_cache *sc;
	size_t lo = 0, hi, end;
	int rc = refresh_svcs(l, c->cat, c->gen);

	if (rc != 0)
		return rc;
	hi = l->n_svcs;
	while (lo < hi) { /* the first entry not below @lname */
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(l->svcs[mid].lower, lname) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (end = lo;
	     end < l->n_svcs && strcmp(l->svcs[end].lower, lname) == 0; end++)
		;
	if (end == lo)
		return 0;
	rc = svc_cache_get(c, lo, end, &sc);
	if (rc != 0)
		return rc;
	if (sc->n > 0) {
		out->v = bcn_malloc(sc->n * sizeof *out->v);
		if (out->v == NULL)
			return BCN_ENOMEM;
		out->cap = sc->n;
	}
	for (size_t i = 0; i < sc->n; i++) {
		const struct cinst *ci = &sc->v[i];
		struct cat_strs tags = {sc->blob + ci->tags, ci->tags_len};
		struct inst *x;
		uint32_t w;

		if (ci->status >= CAT_CRITICAL ||
		    (ci->status == CAT_WARNING && l->only_passing))
			continue;
		if (tag != NULL && !has_tag(&tags, tag))
			continue;
		x = &out->v[out->n++];
		memset(x, 0, sizeof *x);
		x->node = sc->blob + ci->node;
		x->addr = sc->blob + ci->addr;
		x->svc_addr = ci->svc_addr;
		x->alen = ci->alen;
		memcpy(x->ip, ci->ip, sizeof x->ip);
		x->node_alen = ci->node_alen;
		memcpy(x->node_ip, ci->node_ip, sizeof x->node_ip);
		x->port = ci->port;
		w = ci->status == CAT_WARNING ? ci->weight_warning
					      : ci->weight_passing;
		x->weight = w > 65535 ? 65535 : (uint16_t)w;
		x->ttl = sc->ttl;
	}
	return 0;
}

static int cmp_srv_key(const void *a, const void *b)
{
	const struct inst *x = a, *y = b;
	int r = strcmp(x->node, y->node);

	if (r == 0)
		r = strcmp(x->addr, y->addr);
	if (r == 0)
		r = (int)x->port - (int)y->port;
	return r;
}

static int cmp_ip_key(const void *a, const void *b)
{
	const struct inst *x = a, *y = b;

	if (x->alen != y->alen)
		return (int)x->alen - (int)y->alen;
	return x->alen == 0 ? strcmp(x->addr, y->addr)
			    : memcmp(x->ip, y->ip, x->alen);
}

/* Sort @v by @cmp and keep one of each run of equals. */
static void dedupe(struct insts *v, int (*cmp)(const void *, const void *))
{
	size_t w = 1;

	if (v->n < 2)
		return;
	qsort(v->v, v->n, sizeof *v->v, cmp);
	for (size_t i = 1; i < v->n; i++)
		if (cmp(&v->v[i], &v->v[w - 1]) != 0)
			v->v[w++] = v->v[i];
	v->n = w;
}

/* Same owner and data, whichever answer they serve. */
static int cmp_additional(const void *a, const void *b)
{
	const struct rec *x = *(const struct rec *const *)a;
	const struct rec *y = *(const struct rec *const *)b;
	int r = (int)x->owner.kind - (int)y->owner.kind;

	if (r == 0 && x->owner.kind == HN_NODE)
		r = strcmp(x->owner.s, y->owner.s);
	if (r == 0)
		r = memcmp(x->owner.ip, y->owner.ip, sizeof x->owner.ip);
	if (r == 0)
		r = (int)x->type - (int)y->type;
	if (r == 0)
		r = memcmp(x->ip, y->ip, sizeof x->ip);
	return r;
}

static int cmp_additional_group(const void *a, const void *b)
{
	const struct rec *x = *(const struct rec *const *)a;
	const struct rec *y = *(const struct rec *const *)b;
	int r = cmp_additional(a, b);

	if (r == 0)
		r = x->group < y->group ? -1 : x->group > y->group;
	return r;
}

/* Send an additional record once, with the first answer that needs it:
 * mark the copies for later answers. */
static int mark_duplicates(struct ctx *c)
{
	struct recs *ar = &c->sec[SEC_AR];
	struct rec **idx;

	if (ar->n < 2)
		return 0;
	idx = bcn_malloc(ar->n * sizeof *idx);
	if (idx == NULL)
		return BCN_ENOMEM;
	for (size_t i = 0; i < ar->n; i++)
		idx[i] = &ar->v[i];
	qsort(idx, ar->n, sizeof *idx, cmp_additional_group);
	for (size_t i = 1; i < ar->n; i++)
		if (cmp_additional(&idx[i], &idx[i - 1]) == 0)
			idx[i]->skip = true;
	bcn_free(idx);
	return 0;
}

/* ---- answers ------------------------------------------------------------- *
 * Each answer_*() plans records and returns 0 (an empty answer section
 * then means NODATA), ANS_NXDOMAIN, ANS_FORWARD or an error. */

enum { ANS_NXDOMAIN = 1, ANS_FORWARD = 2 };

static bool want4(uint16_t qt)
{
	return qt == DNS_TYPE_A || qt == DNS_TYPE_ANY;
}

static bool want6(uint16_t qt)
{
	return qt == DNS_TYPE_AAAA || qt == DNS_TYPE_ANY;
}

static int plan_srv(struct ctx *c, struct insts *v)
{
	dedupe(v, cmp_srv_key); /* Consul: one per node, address, port */
	shuffle(c, v->v, v->n, sizeof *v->v);
	for (size_t i = 0; i < v->n; i++) {
		const struct inst *x = &v->v[i];
		struct hname target = !x->svc_addr  ? hn(HN_NODE, x->node)
				      : x->alen > 0 ? hn_addr(x->ip, x->alen)
						    : hn(HN_HOST, x->addr);
		struct rec *r, *a;

		if (!hname_ok(c, &target))
			continue;
		r = rec_add(c, SEC_AN, DNS_TYPE_SRV, hn(HN_QNAME, NULL),
			    x->ttl);
		if (r == NULL)
			return BCN_ENOMEM;
		r->target = target;
		r->weight = x->weight;
		r->port = x->port;
		if (x->alen == 0)
			continue; /* a host name: its own resolver finds it */
		a = rec_addr(c, SEC_AR, target, x->ip, x->alen, x->ttl);
		if (a == NULL)
			return BCN_ENOMEM;
		a->group = (long)c->sec[SEC_AN].n - 1;
	}
	return mark_duplicates(c);
}

static int plan_addresses(struct ctx *c, struct insts *v, uint16_t qt)
{
	const struct inst *host = NULL;

	dedupe(v, cmp_ip_key);
	shuffle(c, v->v, v->n, sizeof *v->v);
	for (size_t i = 0; i < v->n; i++) {
		const struct inst *x = &v->v[i];

		if (x->alen == 0) {
			if (host == NULL)
				host = x;
		} else if ((x->alen == 4 && want4(qt)) ||
			   (x->alen == 16 && want6(qt))) {
			if (rec_addr(c, SEC_AN, hn(HN_QNAME, NULL), x->ip,
				     x->alen, x->ttl) == NULL)
				return BCN_ENOMEM;
		}
	}
	/* Only when there is nothing else: a CNAME stands alone (RFC 1034
	 * §3.6.2). */
	if (c->sec[SEC_AN].n == 0 && host != NULL && (want4(qt) || want6(qt))) {
		struct hname h = hn(HN_HOST, host->addr);
		struct rec *r;

		if (!hname_ok(c, &h))
			return 0;
		r = rec_add(c, SEC_AN, DNS_TYPE_CNAME, hn(HN_QNAME, NULL),
			    host->ttl);
		if (r == NULL)
			return BCN_ENOMEM;
		r->target = h;
	}
	return 0;
}

static int answer_service(struct ctx *c, const char *name, const char *tag)
{
	uint16_t qt = c->q.question.qtype;
	struct insts v = {0};
	int rc = find_insts(c, name, tag, &v);

	if (rc == 0 && v.n == 0)
		rc = ANS_NXDOMAIN;
	else if (rc == 0 && qt == DNS_TYPE_SRV)
		rc = plan_srv(c, &v);
	else if (rc == 0)
		rc = plan_addresses(c, &v, qt);
	bcn_free(v.v);
	return rc;
}

/* The meta pairs of @n as TXT records in section @s. */
static int plan_txt(struct ctx *c, int s, const struct cat_node *n,
		    struct hname owner)
{
	size_t pos = 0;
	const char *k, *v;

	while ((k = cat_strs_next(&n->meta, &pos)) != NULL &&
	       (v = cat_strs_next(&n->meta, &pos)) != NULL) {
		struct rec *r =
		    rec_add(c, s, DNS_TYPE_TXT, owner, c->l->node_ttl);

		if (r == NULL)
			return BCN_ENOMEM;
		r->key = k;
		r->val = v;
	}
	return 0;
}

/* The first node named @lname ignoring case, or NULL. */
static const struct node_ent *node_find(const struct dns_lookup *l,
					const char *lname)
{
	size_t lo = 0, hi = l->n_nodes;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(l->nodes[mid].lower, lname) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < l->n_nodes && strcmp(l->nodes[lo].lower, lname) == 0
		   ? &l->nodes[lo]
		   : NULL;
}

static int answer_node(struct ctx *c, const char *lname)
{
	uint16_t qt = c->q.question.qtype;
	const struct node_ent *e;
	const struct cat_node *n;
	uint8_t ip[16], alen;
	int rc = refresh_nodes(c->l, c->cat, c->gen);

	if (rc != 0)
		return rc;
	e = node_find(c->l, lname);
	if (e == NULL)
		return ANS_NXDOMAIN;
	rc = cat_node(c->cat, e->name, &c->rows);
	if (rc == BCN_ENOTFOUND)
		return ANS_NXDOMAIN;
	if (rc != 0)
		return rc;
	n = &c->rows.nodes[c->rows.n_nodes - 1];
	alen = parse_ip(n->address, ip);
	if ((alen == 4 && want4(qt)) || (alen == 16 && want6(qt))) {
		if (rec_addr(c, SEC_AN, hn(HN_QNAME, NULL), ip, alen,
			     c->l->node_ttl) == NULL)
			return BCN_ENOMEM;
	} else if (alen == 0 && (want4(qt) || want6(qt))) {
		struct hname h = hn(HN_HOST, n->address);
		struct rec *r;

		if (hname_ok(c, &h)) {
			r = rec_add(c, SEC_AN, DNS_TYPE_CNAME,
				    hn(HN_QNAME, NULL), c->l->node_ttl);
			if (r == NULL)
				return BCN_ENOMEM;
			r->target = h;
		}
	}
	if (qt == DNS_TYPE_TXT || qt == DNS_TYPE_ANY)
		return plan_txt(c, SEC_AN, n, hn(HN_QNAME, NULL));
	if (c->sec[SEC_AN].n > 0) /* Consul: meta rides along */
		return plan_txt(c, SEC_AR, n, hn(HN_QNAME, NULL));
	return 0;
}

static int hex_nibble(uint8_t ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

static int answer_addr(struct ctx *c, const uint8_t *hex, size_t len)
{
	uint16_t qt = c->q.question.qtype;
	uint8_t ip[16];

	if (len != 8 && len != 32)
		return ANS_NXDOMAIN;
	for (size_t i = 0; i < len; i += 2) {
		int hi = hex_nibble(hex[i]), lo = hex_nibble(hex[i + 1]);

		if (hi < 0 || lo < 0)
			return ANS_NXDOMAIN;
		ip[i / 2] = (uint8_t)(hi << 4 | lo);
	}
	if ((len == 8 && want4(qt)) || (len == 32 && want6(qt)))
		if (rec_addr(c, SEC_AN, hn(HN_QNAME, NULL), ip,
			     (uint8_t)(len / 2), c->l->node_ttl) == NULL)
			return BCN_ENOMEM;
	return 0;
}

/* NS records for up to NS_MAX random healthy servers, in section @s, with
 * their addresses as glue. */
static int plan_ns(struct ctx *c, int s)
{
	struct insts v = {0};
	size_t named = 0;
	int rc = find_insts(c, CAT_SERVER_SVC, NULL, &v);

	if (rc == 0) {
		size_t w = v.n > 0 ? 1 : 0;

		/* One per node (the catalog sorts instances by node). */
		for (size_t i = 1; i < v.n; i++)
			if (strcmp(v.v[i].node, v.v[w - 1].node) != 0)
				v.v[w++] = v.v[i];
		v.n = w;
		shuffle(c, v.v, v.n, sizeof *v.v);
	}
	for (size_t i = 0; rc == 0 && i < v.n && named < NS_MAX; i++) {
		const struct inst *x = &v.v[i];
		struct hname target = hn(HN_NODE, x->node);
		struct rec *r;

		if (!hname_ok(c, &target))
			continue;
		r = rec_add(c, s, DNS_TYPE_NS, hn(HN_APEX, NULL),
			    c->l->node_ttl);
		if (r == NULL) {
			rc = BCN_ENOMEM;
			break;
		}
		r->target = target;
		named++;
		if (x->node_alen == 0)
			continue;
		r = rec_addr(c, SEC_AR, target, x->node_ip, x->node_alen,
			     c->l->node_ttl);
		if (r == NULL)
			rc = BCN_ENOMEM;
		else if (s == SEC_AN)
			r->group = (long)c->sec[SEC_AN].n - 1;
	}
	bcn_free(v.v);
	return rc;
}

static int answer_apex(struct ctx *c)
{
	uint16_t qt = c->q.question.qtype;
	int rc = 0;

	if (qt == DNS_TYPE_SOA || qt == DNS_TYPE_ANY)
		if (rec_add(c, SEC_AN, DNS_TYPE_SOA, hn(HN_APEX, NULL),
			    SOA_MINTTL) == NULL)
			return BCN_ENOMEM;
	if (qt == DNS_TYPE_NS || qt == DNS_TYPE_ANY)
		rc = plan_ns(c, SEC_AN);
	return rc;
}

static int answer_ptr(struct ctx *c)
{
	uint16_t qt = c->q.question.qtype;
	uint8_t ip[16];
	size_t alen;
	bool found = false;
	int rc;

	if (dns_ptr_parse(&c->q.lname, ip, &alen) != 0)
		return c->l->recursor ? ANS_FORWARD : ANS_NXDOMAIN;
	rc = refresh_nodes(c->l, c->cat, c->gen);
	if (rc != 0)
		return rc;
	for (size_t i = 0; i < c->l->n_nodes; i++) {
		const struct node_ent *e = &c->l->nodes[i];
		struct hname target = hn(HN_NODE, e->name);
		struct rec *r;

		if (e->alen != alen || memcmp(e->ip, ip, alen) != 0 ||
		    !hname_ok(c, &target))
			continue;
		found = true;
		if (qt != DNS_TYPE_PTR && qt != DNS_TYPE_ANY)
			continue;
		r = rec_add(c, SEC_AN, DNS_TYPE_PTR, hn(HN_QNAME, NULL),
			    c->l->node_ttl);
		if (r == NULL)
			return BCN_ENOMEM;
		r->target = target;
	}
	if (!found)
		return c->l->recursor ? ANS_FORWARD : ANS_NXDOMAIN;
	return 0;
}

/* ---- reading the name ---------------------------------------------------- */

static const uint8_t *label_at(const struct dns_name *n, unsigned i,
			       size_t *len)
{
	const uint8_t *p = n->data + n->label_off[i];

	*len = p[0];
	return p + 1;
}

static bool label_is(const struct dns_name *n, unsigned i, const char *s)
{
	size_t len;
	const uint8_t *p = label_at(n, i, &len);

	return len == strlen(s) && memcmp(p, s, len) == 0;
}

static bool label_starts(const struct dns_name *n, unsigned i, char ch)
{
	size_t len;
	const uint8_t *p = label_at(n, i, &len);

	return len > 0 && p[0] == (uint8_t)ch;
}

/* Join labels [@from, @to) of @n, from byte @skip of each, with dots into
 * @out. False if a label holds a NUL (no catalog name does). */
static bool join_labels(const struct dns_name *n, unsigned from, unsigned to,
			size_t skip, char *out)
{
	size_t o = 0; /* at most 255 bytes: @out has DNS_MAX_NAME + 1 */

	for (unsigned i = from; i < to; i++) {
		size_t len;
		const uint8_t *p = label_at(n, i, &len);

		if (len < skip || memchr(p, '\0', len) != NULL)
			return false;
		if (i > from)
			out[o++] = '.';
		memcpy(out + o, p + skip, len - skip);
		o += len - skip;
	}
	out[o] = '\0';
	return true;
}

/* Labels [@from, @to) are empty, "<dc>" or "<dc>.dc". */
static bool dc_ok(const struct ctx *c, unsigned from, unsigned to)
{
	const struct dns_name *n = &c->q.lname;

	switch (to - from) {
	case 0:
		return true;
	case 1:
		return label_is(n, from, c->l->dc);
	case 2:
		return label_is(n, from, c->l->dc) &&
		       label_is(n, from + 1, "dc");
	default:
		return false;
	}
}

#define N_KINDS 7

/* A name under our zone with @m labels before it. */
static int answer_zone(struct ctx *c, unsigned m)
{
	static const char *const kinds[N_KINDS] = {
	    "service", "node", "addr", "query", "connect", "ingress", "virtual",
	};
	const struct dns_name *n = &c->q.lname;
	char a[DNS_MAX_NAME + 1], b[DNS_MAX_NAME + 1];
	unsigned i, kind = 0;
	bool found = false;

	if (m == 0)
		return answer_apex(c);
	/* Consul reads right to left up to the first kind label. */
	for (i = m; i > 0 && !found;) {
		i--;
		for (kind = 0; kind < N_KINDS && !found; kind++)
			found = label_is(n, i, kinds[kind]);
	}
	kind--; /* the loop went one further */
	if (!found) {
		/* RFC 2782 without ".service": _web._tcp[.dc1].consul */
		if (m >= 2 && label_starts(n, 0, '_') &&
		    label_starts(n, 1, '_') && dc_ok(c, 2, m) &&
		    join_labels(n, 0, 1, 1, a) && join_labels(n, 1, 2, 1, b))
			return answer_service(c, a,
					      strcmp(b, "tcp") == 0 ? NULL : b);
		/* "<dc>", "dc" and "<dc>.dc" lead to names: they exist. */
		if (dc_ok(c, 0, m) || (m == 1 && label_is(n, 0, "dc")))
			return 0;
		return ANS_NXDOMAIN;
	}
	if (!dc_ok(c, i + 1, m))
		return ANS_NXDOMAIN;
	if (i == 0) /* "service.consul": leads to names */
		return kind <= 2 ? 0 : ANS_NXDOMAIN;
	switch (kind) {
	case 0: /* service */
		if (i == 2 && label_starts(n, 0, '_') &&
		    label_starts(n, 1, '_')) {
			if (!join_labels(n, 0, 1, 1, a) ||
			    !join_labels(n, 1, 2, 1, b))
				return ANS_NXDOMAIN;
			return answer_service(c, a,
					      strcmp(b, "tcp") == 0 ? NULL : b);
		}
		if (!join_labels(n, i - 1, i, 0, a) ||
		    !join_labels(n, 0, i - 1, 0, b))
			return ANS_NXDOMAIN;
		return answer_service(c, a, i > 1 ? b : NULL);
	case 1: /* node */
		if (!join_labels(n, 0, i, 0, a))
			return ANS_NXDOMAIN;
		return answer_node(c, a);
	case 2: { /* addr */
		size_t len;
		const uint8_t *p = label_at(n, 0, &len);

		return i == 1 ? answer_addr(c, p, len) : ANS_NXDOMAIN;
	}
	default: /* prepared queries and the mesh: not served */
		return ANS_NXDOMAIN;
	}
}

static const struct zone *find_zone(const struct dns_lookup *l,
				    const struct dns_name *n)
{
	const struct zone *best = NULL;

	for (unsigned i = 0; i < l->n_zones; i++)
		if (dns_name_in_zone(n, &l->zones[i].name) &&
		    (best == NULL ||
		     l->zones[i].name.n_labels > best->name.n_labels))
			best = &l->zones[i];
	return best;
}

static bool is_reverse(const struct dns_name *n)
{
	static const uint8_t v4[] = "\7in-addr\4arpa", v6[] = "\3ip6\4arpa";
	struct dns_name z4, z6;

	z4.len = sizeof v4; /* the array's NUL is the root label */
	z4.n_labels = 2;
	memcpy(z4.data, v4, sizeof v4);
	z6.len = sizeof v6;
	z6.n_labels = 2;
	memcpy(z6.data, v6, sizeof v6);
	return dns_name_in_zone(n, &z4) || dns_name_in_zone(n, &z6);
}

/* ---- the entry point ----------------------------------------------------- */

static enum dns_action answer(struct ctx *c, void *out, size_t cap, size_t *len)
{
	uint16_t qt, qc;
	bool reverse;
	int rc;

	if (dns_query_parse(&c->q, c->req->msg, c->req->len) != 0) {
		struct dns_msg m;

		if (c->q.rcode == DNS_RCODE_DROP)
			return DNS_ACT_DROP;
		/* No question and no OPT: we could not read them. */
		c->q.edns.present = false;
		c->rcode = (unsigned)c->q.rcode;
		if (msg_start(c, &m, out, size_limit(c, cap), false) != 0 ||
		    dns_msg_finish(&m, len) != 0)
			return DNS_ACT_DROP;
		return DNS_ACT_REPLY;
	}
	c->parsed = true;
	qt = c->q.question.qtype;
	qc = c->q.question.qclass;
	if (c->q.edns.present && c->q.edns.version != 0)
		return reply_rcode(c, DNS_RCODE_BADVERS, false, out, cap, len);
	c->zone = find_zone(c->l, &c->q.lname);
	reverse = c->zone == NULL && is_reverse(&c->q.lname);
	if (c->zone == NULL && !reverse)
		return c->l->recursor ? DNS_ACT_FORWARD
				      : reply_rcode(c, DNS_RCODE_REFUSED, false,
						    out, cap, len);
	if (qt == DNS_TYPE_AXFR || qt == DNS_TYPE_IXFR)
		return reply_rcode(c, DNS_RCODE_NOTIMP, false, out, cap, len);
	if (qc != DNS_CLASS_IN && qc != DNS_CLASS_ANY)
		return reply_rcode(c, DNS_RCODE_REFUSED, false, out, cap, len);
	if (c->cat == NULL ||
	    (!c->have_gen &&
	     catalog_gen(c->l, c->cat, c->req->version, &c->gen) != 0))
		return reply_rcode(c, DNS_RCODE_SERVFAIL, false, out, cap, len);
	if (reverse) {
		c->zone = &c->l->zones[0]; /* PTR targets: the primary */
		rc = answer_ptr(c);
	} else {
		rc = answer_zone(c,
				 c->q.lname.n_labels - c->zone->name.n_labels);
	}
	if (rc == ANS_FORWARD)
		return DNS_ACT_FORWARD;
	if (rc < 0)
		return reply_rcode(c, DNS_RCODE_SERVFAIL, false, out, cap, len);
	if (rc == ANS_NXDOMAIN || c->sec[SEC_AN].n == 0)
		return reply_negative(c, rc == ANS_NXDOMAIN, out, cap, len);
	c->rcode = DNS_RCODE_NOERROR;
	c->aa = true;
	return reply(c, out, cap, len);
}

/* The cached answer to @req (drawn @draw), if any, into @out; else false,
 * with @key built and *@gen set if *@cacheable (then an answer built at
 * *@gen may be stored under @key). */
static bool cache_find(struct dns_lookup *l, struct cat_store *cat,
		       const struct dns_lookup_req *req, uint64_t draw,
		       struct dns_cache_key *key, uint64_t *gen, void *out,
		       size_t cap, size_t *len, bool *cacheable)
{
	const uint8_t *hit;
	size_t hlen;

	*cacheable = false;
	if (l->cache == NULL || cat == NULL)
		return false;
	if (l->ans_cat != cat) {
		/* Another catalog: nothing cached holds. The hash seed comes
		 * from the caller's random source: the lookup has none. */
		dns_cache_reset(l->cache, draw ^ 0x6a09e667f3bcc909ULL);
		l->ans_cat = cat;
	}
	if (dns_cache_key(l->cache, key, req->msg, req->len, req->tcp, cap) !=
		0 ||
	    catalog_gen(l, cat, req->version, gen) != 0)
		return false;
	*cacheable = true;
	hit = dns_cache_get(l->cache, key, *gen, req->now, draw, &hlen);
	/* A cached answer echoes a question of the same length. */
	if (hit == NULL || hlen > cap || hlen < DNS_HEADER_LEN + key->qname_len)
		return false;
	memcpy(out, hit, hlen);
	/* What the answer copies from the query: the ID, and the name as
	 * spelt (the key has it lower-cased). */
	memcpy(out, req->msg, 2);
	memcpy((uint8_t *)out + DNS_HEADER_LEN,
	       (const uint8_t *)req->msg + DNS_HEADER_LEN, key->qname_len);
	*len = hlen;
	return true;
}

enum dns_action dns_lookup_answer(struct dns_lookup *l, struct cat_store *cat,
				  const struct dns_lookup_req *req, void *out,
				  size_t cap, size_t *len)
{
	uint64_t draw = req->rand != NULL ? req->rand(req->rand_data) : 0;
	uint64_t gen = 0;
	struct dns_cache_key key;
	struct ctx c;
	enum dns_action act;
	bool cacheable;

	*len = 0;
	if (cache_find(l, cat, req, draw, &key, &gen, out, cap, len,
		       &cacheable))
		return DNS_ACT_REPLY;
	memset(&c, 0, sizeof c);
	c.l = l;
	c.cat = cat;
	c.req = req;
	c.zone = &l->zones[0];
	c.gen = gen;
	c.have_gen = cacheable;
	c.draw = draw;
	c.variant = draw;
	c.perms = 1;
	act = answer(&c, out, cap, len);
	if (cacheable && act == DNS_ACT_REPLY && c.parsed && !c.random &&
	    c.rcode != DNS_RCODE_SERVFAIL) {
		struct dns_cache_ans a = {
		    .gen = c.gen,
		    .now = req->now,
		    .now_dep = c.now_dep,
		    .n_var = (uint32_t)c.perms,
		    .var = (uint32_t)(c.draw % c.perms),
		    .ans = out,
		    .len = *len,
		};

		if (dns_cache_put(l->cache, &key, &a) != 0) {
			/* Not cached (too big, or out of memory): the answer
			 * stands all the same. */
		}
	}
	for (int s = 0; s < SEC_NR; s++)
		bcn_free(c.sec[s].v);
	cat_rows_close(&c.rows);
	if (act != DNS_ACT_REPLY)
		*len = 0;
	return act;
}

int dns_lookup_error(const void *msg, size_t len, unsigned rcode, bool ra,
		     void *out, size_t cap, size_t *out_len)
{
	struct dns_query q;
	struct dns_msg m;
	int rc;

	if (dns_query_parse(&q, msg, len) != 0)
		return BCN_EINVAL;
	if (q.edns.present) {
		q.edns.udp_size = DNS_LOOKUP_UDP_MAX;
		q.edns.ecs.scope_prefix = 0;
	}
	rc = dns_msg_init(&m, out, cap, &q.hdr, &q.question);
	if (rc == 0 && q.edns.present)
		rc = dns_msg_set_edns(&m, &q.edns);
	if (rc == 0)
		rc = dns_msg_set_rcode(&m, rcode);
	if (rc == 0) {
		dns_msg_set_flag(&m, DNS_FLAG_RA, ra);
		rc = dns_msg_finish(&m, out_len);
	}
	return rc == 0 ? 0 : BCN_EINVAL;
}

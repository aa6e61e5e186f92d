/* The answer cache (see dns/cache.h).
 *
 * The happy path of a hit: hash the key, look at the DNS_CACHE_WAYS slots
 * of its set (each keeps the full hash, so a mismatch costs no pointer
 * chase), compare the key bytes, check the index and second, move the
 * entry to the front of the LRU list, return the variant's bytes.
 *
 * Memory: one allocation per entry (its bookkeeping, the variant table and
 * the key) and one per stored answer; the slot table is allocated once, in
 * dns_cache_new(). Every byte but the slot table counts towards the byte
 * bound. A failed allocation in dns_cache_put() leaves the cache
 * consistent, merely without the new answer.
 *
 * The hash is seeded (dns_cache_reset()) but not cryptographic: it need
 * not be, because a set holds DNS_CACHE_WAYS entries at most, so keys made
 * to collide only evict each other. */
#include "dns/cache.h"

#include <assert.h>
#include <string.h>

#include "common/alloc.h"
#include "dns/wire.h"

struct cvar {
	uint8_t *data; /* NULL: this variant was not asked for yet */
	size_t len;
};

struct centry {
	struct centry *prev, *next; /* the LRU list: most recent first */
	size_t slot;		    /* its index in c->slots */
	uint64_t used;		    /* c->tick when last touched */
	uint64_t gen;
	uint32_t now;
	bool now_dep;
	uint32_t n_var;
	size_t bytes; /* counted in c->stats.bytes */
	size_t klen;
	struct cvar var[]; /* n_var of them, then the key's klen bytes */
};

struct slot {
	uint64_t hash;
	struct centry *e; /* NULL: free */
};

struct dns_cache {
	struct slot *slots; /* n_sets * DNS_CACHE_WAYS */
	size_t n_sets;	    /* a power of two */
	size_t max_entries, max_bytes;
	struct centry *head, *tail;
	uint64_t seed, tick;
	struct dns_cache_stats stats;
};

static uint8_t *ent_key(struct centry *e)
{
	return (uint8_t *)(e->var + e->n_var);
}

static uint64_t rotl(uint64_t x, unsigned r)
{
	return x << r | x >> (64 - r);
}

/* A 64-bit finaliser: every input bit reaches every output bit. */
static uint64_t fmix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

static uint64_t hash_bytes(uint64_t seed, const uint8_t *p, size_t n)
{
	uint64_t h = seed ^ (n * 0x9e3779b97f4a7c15ULL);
	uint64_t w;

	for (; n >= 8; p += 8, n -= 8) {
		memcpy(&w, p, 8);
		h = rotl(h ^ (w * 0x87c37b91114253d5ULL), 31) *
		    0x4cf5ad432745937fULL;
	}
	w = 0;
	memcpy(&w, p, n);
	h = rotl(h ^ (w * 0x87c37b91114253d5ULL), 31) * 0x4cf5ad432745937fULL;
	return fmix(h);
}

int dns_cache_new(struct dns_cache **out, size_t max_entries, size_t max_bytes)
{
	struct dns_cache *c = bcn_calloc(1, sizeof *c);
	size_t n_sets = 1;

	if (c == NULL)
		return BCN_ENOMEM;
	c->max_entries = max_entries > 0 ? max_entries : 1;
	c->max_bytes = max_bytes;
	/* Twice as many slots as entries: a set is rarely full before the
	 * entry bound is reached, so eviction is mostly least recently used
	 * overall, not within a set. */
	while (n_sets * DNS_CACHE_WAYS < 2 * c->max_entries &&
	       n_sets < ((size_t)1 << 40))
		n_sets *= 2;
	c->n_sets = n_sets;
	c->slots = bcn_calloc(n_sets * DNS_CACHE_WAYS, sizeof *c->slots);
	if (c->slots == NULL) {
		bcn_free(c);
		return BCN_ENOMEM;
	}
	*out = c;
	return 0;
}

static void lru_unlink(struct dns_cache *c, struct centry *e)
{
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		c->head = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	else
		c->tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push(struct dns_cache *c, struct centry *e)
{
	e->prev = NULL;
	e->next = c->head;
	if (c->head != NULL)
		c->head->prev = e;
	else
		c->tail = e;
	c->head = e;
	e->used = ++c->tick;
}

static void touch(struct dns_cache *c, struct centry *e)
{
	if (c->head != e) {
		lru_unlink(c, e);
		lru_push(c, e);
	} else {
		e->used = ++c->tick;
	}
}

static void drop(struct dns_cache *c, struct centry *e)
{
	assert(c->slots[e->slot].e == e);
	c->slots[e->slot].e = NULL;
	lru_unlink(c, e);
	for (uint32_t i = 0; i < e->n_var; i++)
		bcn_free(e->var[i].data);
	assert(c->stats.bytes >= e->bytes && c->stats.entries > 0);
	c->stats.bytes -= e->bytes;
	c->stats.entries--;
	bcn_free(e);
}

void dns_cache_reset(struct dns_cache *c, uint64_t seed)
{
	while (c->head != NULL)
		drop(c, c->head);
	c->seed = seed;
}

void dns_cache_free(struct dns_cache *c)
{
	if (c == NULL)
		return;
	dns_cache_reset(c, 0);
	bcn_free(c->slots);
	bcn_free(c);
}

int dns_cache_key(const struct dns_cache *c, struct dns_cache_key *k,
		  const void *msg, size_t len, bool tcp, size_t cap)
{
	const uint8_t *m = msg;
	size_t o = DNS_HEADER_LEN;
	uint32_t cap32 = cap > UINT32_MAX ? UINT32_MAX : (uint32_t)cap;

	if (len < DNS_HEADER_LEN || len > DNS_CACHE_QUERY_MAX)
		return BCN_EINVAL;
	/* The question's name, as the parser will read it: labels up to the
	 * root, no pointer (nothing precedes it to point at). */
	for (;;) {
		if (o >= len)
			return BCN_EINVAL;
		if (m[o] == 0)
			break;
		if (m[o] > DNS_MAX_LABEL)
			return BCN_EINVAL;
		o += 1u + m[o];
		if (o - DNS_HEADER_LEN >= DNS_MAX_NAME)
			return BCN_EINVAL;
	}
	k->qname_len = o + 1 - DNS_HEADER_LEN;
	k->b[0] = tcp;
	k->b[1] = (uint8_t)(cap32 >> 24);
	k->b[2] = (uint8_t)(cap32 >> 16);
	k->b[3] = (uint8_t)(cap32 >> 8);
	k->b[4] = (uint8_t)cap32;
	memcpy(k->b + 5, m + 2, len - 2);
	k->len = 5 + len - 2;
	/* One entry for every spelling of the name: the answer differs only
	 * in the echoed question, which the caller patches, because the
	 * encoder's compression ignores case (dns/wire.c). Length bytes are
	 * at most 63, below 'A', so they pass unchanged. */
	for (size_t i = 5 + DNS_HEADER_LEN - 2; i < 5 + o - 2; i++)
		if (k->b[i] >= 'A' && k->b[i] <= 'Z')
			k->b[i] = (uint8_t)(k->b[i] + ('a' - 'A'));
	k->hash = hash_bytes(c->seed, k->b, k->len);
	return 0;
}

static struct slot *find(struct dns_cache *c, const struct dns_cache_key *k)
{
	struct slot *set =
	    c->slots + (k->hash & (c->n_sets - 1)) * DNS_CACHE_WAYS;

	for (unsigned w = 0; w < DNS_CACHE_WAYS; w++) {
		struct centry *e = set[w].e;

		if (e != NULL && set[w].hash == k->hash && e->klen == k->len &&
		    memcmp(ent_key(e), k->b, k->len) == 0)
			return &set[w];
	}
	return NULL;
}

static bool ent_valid(const struct centry *e, uint64_t gen, uint32_t now)
{
	return e->gen == gen && (!e->now_dep || e->now == now);
}

const uint8_t *dns_cache_get(struct dns_cache *c, const struct dns_cache_key *k,
			     uint64_t gen, uint32_t now, uint64_t r,
			     size_t *len)
{
	struct slot *s = find(c, k);
	struct centry *e;
	const struct cvar *v;

	if (s == NULL) {
		c->stats.misses++;
		return NULL;
	}
	e = s->e;
	if (!ent_valid(e, gen, now)) {
		drop(c, e);
		c->stats.stale++;
		c->stats.misses++;
		return NULL;
	}
	touch(c, e);
	v = &e->var[r % e->n_var];
	if (v->data == NULL) {
		c->stats.misses++;
		return NULL;
	}
	c->stats.hits++;
	*len = v->len;
	return v->data;
}

static size_t ent_size(size_t klen, uint32_t n_var)
{
	return sizeof(struct centry) + n_var * sizeof(struct cvar) + klen;
}

/* A new, empty entry for @k and @a, in @k's set and at the LRU front. */
static struct centry *ent_new(struct dns_cache *c,
			      const struct dns_cache_key *k,
			      const struct dns_cache_ans *a)
{
	size_t size = ent_size(k->len, a->n_var);
	struct slot *set =
	    c->slots + (k->hash & (c->n_sets - 1)) * DNS_CACHE_WAYS;
	struct slot *s = NULL;
	struct centry *e = bcn_calloc(1, size);

	if (e == NULL)
		return NULL;
	e->gen = a->gen;
	e->now = a->now;
	e->now_dep = a->now_dep;
	e->n_var = a->n_var;
	e->klen = k->len;
	e->bytes = size;
	memcpy(ent_key(e), k->b, k->len);
	/* A free slot of the set, else its least recently used entry. */
	for (unsigned w = 0; w < DNS_CACHE_WAYS; w++) {
		if (set[w].e == NULL) {
			s = &set[w];
			break;
		}
		if (s == NULL || set[w].e->used < s->e->used)
			s = &set[w];
	}
	if (s->e != NULL) {
		drop(c, s->e);
		c->stats.evictions++;
	}
	s->hash = k->hash;
	s->e = e;
	e->slot = (size_t)(s - c->slots);
	lru_push(c, e);
	c->stats.entries++;
	c->stats.bytes += size;
	return e;
}

int dns_cache_put(struct dns_cache *c, const struct dns_cache_key *k,
		  const struct dns_cache_ans *a)
{
	struct slot *s = find(c, k);
	struct centry *e = s != NULL ? s->e : NULL;
	uint8_t *data;
	size_t need;

	if (a->n_var == 0 || a->var >= a->n_var)
		return BCN_EINVAL;
	if (e != NULL && (!ent_valid(e, a->gen, a->now) ||
			  e->now_dep != a->now_dep || e->n_var != a->n_var)) {
		drop(c, e);
		c->stats.stale++;
		e = NULL;
	}
	need = a->len + (e != NULL ? e->bytes : ent_size(k->len, a->n_var));
	/* One entry may not take the room of many (and so is never the
	 * only one left when evicting for room, below). */
	if (need > c->max_bytes / 8)
		return BCN_ETOOBIG;
	if (e != NULL && e->var[a->var].data != NULL) {
		touch(c, e);
		return 0; /* already there, and the same bytes */
	}
	data = bcn_malloc(a->len > 0 ? a->len : 1);
	if (data == NULL)
		return BCN_ENOMEM;
	if (e == NULL) {
		e = ent_new(c, k, a);
		if (e == NULL) {
			bcn_free(data);
			return BCN_ENOMEM;
		}
	} else {
		touch(c, e);
	}
	memcpy(data, a->ans, a->len);
	e->var[a->var].data = data;
	e->var[a->var].len = a->len;
	e->bytes += a->len;
	c->stats.bytes += a->len;
	c->stats.inserts++;
	/* The new entry is at the front, and fits alone (the check above):
	 * the loop stops before reaching it. */
	while (c->stats.entries > c->max_entries ||
	       c->stats.bytes > c->max_bytes) {
		assert(c->tail != e);
		drop(c, c->tail);
		c->stats.evictions++;
	}
	return 0;
}

void dns_cache_get_stats(const struct dns_cache *c, struct dns_cache_stats *out)
{
	*out = c->stats;
}

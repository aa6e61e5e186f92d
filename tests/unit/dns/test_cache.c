/* Unit tests for dns/cache.c: keys (the ID ignored, case folded, what
 * cannot be cached), variants, validity by index and second, the bounds on
 * entries and bytes with least-recently-used eviction, colliding sets, and
 * every allocation failure. The lookup's use of it is tested in
 * test_lookup.c. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "dns/cache.h"
#include "dns/wire.h"
#include "tests/lib/fault_alloc.h"
#include "tests/lib/unit_run.h"

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static struct dns_cache *cache;

static void setup(void)
{
	fault_alloc_fail_at(-1);
	ck_assert_int_eq(dns_cache_new(&cache, 64, 1 << 20), 0);
	dns_cache_reset(cache, 42);
}

static void teardown(void)
{
	fault_alloc_fail_at(-1);
	dns_cache_free(cache); /* with its entries: ASan finds leaks */
	cache = NULL;
}

/* A query for @name (presentation form, no escapes) with ID @id. */
static size_t mkquery(uint8_t *buf, const char *name, uint16_t id)
{
	size_t o = DNS_HEADER_LEN;

	memset(buf, 0, DNS_HEADER_LEN);
	buf[0] = (uint8_t)(id >> 8);
	buf[1] = (uint8_t)id;
	buf[2] = 0x01; /* RD */
	buf[5] = 1;    /* one question */
	while (*name != '\0') {
		const char *dot = strchr(name, '.');
		size_t n = dot != NULL ? (size_t)(dot - name) : strlen(name);

		buf[o++] = (uint8_t)n;
		memcpy(buf + o, name, n);
		o += n;
		name += n + (dot != NULL);
	}
	buf[o++] = 0;
	buf[o++] = 0;
	buf[o++] = 1; /* A */
	buf[o++] = 0;
	buf[o++] = 1; /* IN */
	return o;
}

static void key_of(struct dns_cache_key *k, const char *name, uint16_t id,
		   bool tcp, size_t cap)
{
	uint8_t q[DNS_CACHE_QUERY_MAX];
	size_t len = mkquery(q, name, id);

	ck_assert_int_eq(dns_cache_key(cache, k, q, len, tcp, cap), 0);
}

static bool key_eq(const struct dns_cache_key *a, const struct dns_cache_key *b)
{
	return a->len == b->len && a->hash == b->hash &&
	       memcmp(a->b, b->b, a->len) == 0;
}

static struct dns_cache_ans ans(const char *text, uint64_t gen, uint32_t n_var,
				uint32_t var)
{
	return (struct dns_cache_ans){
	    .gen = gen,
	    .now = 1000,
	    .n_var = n_var,
	    .var = var,
	    .ans = text,
	    .len = strlen(text),
	};
}

/* The cached text for @k at @gen, second 1000, variant @r, or NULL. */
static const char *get(const struct dns_cache_key *k, uint64_t gen, uint64_t r)
{
	static char out[1024];
	size_t len;
	const uint8_t *p = dns_cache_get(cache, k, gen, 1000, r, &len);

	if (p == NULL)
		return NULL;
	ck_assert_uint_lt(len, sizeof out);
	memcpy(out, p, len);
	out[len] = '\0';
	return out;
}

static struct dns_cache_stats stats(void)
{
	struct dns_cache_stats st;

	dns_cache_get_stats(cache, &st);
	return st;
}

START_TEST(keys)
{
	struct dns_cache_key a, b;
	uint8_t q[DNS_CACHE_QUERY_MAX + 8];
	size_t len;

	/* The ID does not count; the name's case does not count. */
	key_of(&a, "web.service.consul", 1, false, 4096);
	key_of(&b, "web.service.consul", 2, false, 4096);
	ck_assert(key_eq(&a, &b));
	ck_assert_uint_eq(a.qname_len, 20);
	key_of(&b, "WeB.SERVICE.consul", 3, false, 4096);
	ck_assert(key_eq(&a, &b));
	/* Transport, capacity, any other byte do. */
	key_of(&b, "web.service.consul", 1, true, 4096);
	ck_assert(!key_eq(&a, &b));
	key_of(&b, "web.service.consul", 1, false, 512);
	ck_assert(!key_eq(&a, &b));
	len = mkquery(q, "web.service.consul", 1);
	q[2] = 0; /* RD clear */
	ck_assert_int_eq(dns_cache_key(cache, &b, q, len, false, 4096), 0);
	ck_assert(!key_eq(&a, &b));
	len = mkquery(q, "web.service.consul", 1);
	q[len - 3] = 28; /* AAAA */
	ck_assert_int_eq(dns_cache_key(cache, &b, q, len, false, 4096), 0);
	ck_assert(!key_eq(&a, &b));
	/* Only letters fold: '[' is 'Z' + 1, '@' is 'A' - 1. */
	key_of(&a, "a[.consul", 1, false, 4096);
	key_of(&b, "a{.consul", 1, false, 4096);
	ck_assert(!key_eq(&a, &b));
	key_of(&a, "a@.consul", 1, false, 4096);
	key_of(&b, "a`.consul", 1, false, 4096);
	ck_assert(!key_eq(&a, &b));
	/* The root as the question. */
	len = mkquery(q, "", 1);
	ck_assert_int_eq(dns_cache_key(cache, &a, q, len, false, 4096), 0);
	ck_assert_uint_eq(a.qname_len, 1);
	/* Another seed, another hash. */
	key_of(&a, "web.service.consul", 1, false, 4096);
	dns_cache_reset(cache, 43);
	key_of(&b, "web.service.consul", 1, false, 4096);
	ck_assert_uint_ne(a.hash, b.hash);
}
END_TEST

START_TEST(keys_refused)
{
	struct dns_cache_key k;
	uint8_t q[DNS_CACHE_QUERY_MAX + 8];
	size_t len = mkquery(q, "web.service.consul", 1);

	/* Short, long, unterminated, compressed, an over-long label. */
	ck_assert_int_eq(dns_cache_key(cache, &k, q, 11, false, 512),
			 BCN_EINVAL);
	ck_assert_int_eq(dns_cache_key(cache, &k, q, 12, false, 512),
			 BCN_EINVAL);
	ck_assert_int_eq(dns_cache_key(cache, &k, q, 20, false, 512),
			 BCN_EINVAL);
	memset(q + len, 0, sizeof q - len);
	ck_assert_int_eq(
	    dns_cache_key(cache, &k, q, DNS_CACHE_QUERY_MAX + 1, false, 512),
	    BCN_EINVAL);
	ck_assert_int_eq(
	    dns_cache_key(cache, &k, q, DNS_CACHE_QUERY_MAX, false, 512), 0);
	q[12] = 0xc0;
	ck_assert_int_eq(dns_cache_key(cache, &k, q, len, false, 512),
			 BCN_EINVAL);
	q[12] = 64;
	ck_assert_int_eq(dns_cache_key(cache, &k, q, len, false, 512),
			 BCN_EINVAL);
	/* Five labels of 50 and the root: 256 bytes, one too many. */
	memset(q + 12, 0, 300);
	for (int i = 0; i < 5; i++) {
		q[12 + i * 51] = 50;
		memset(q + 13 + i * 51, 'a', 50);
	}
	ck_assert_int_eq(dns_cache_key(cache, &k, q, 12 + 256 + 4, false, 512),
			 BCN_EINVAL);
	/* One byte shorter: the longest name. */
	q[12 + 4 * 51] = 49;
	q[12 + 4 * 51 + 50] = 0;
	ck_assert_int_eq(dns_cache_key(cache, &k, q, 12 + 255 + 4, false, 512),
			 0);
	ck_assert_uint_eq(k.qname_len, 255);
}
END_TEST

START_TEST(variants_and_validity)
{
	struct dns_cache_key k;
	struct dns_cache_ans a;

	key_of(&k, "web.service.consul", 1, false, 4096);
	ck_assert_ptr_null(get(&k, 7, 0));
	/* Variant 1 of 3 only: draws 1, 4, 7... hit; the others miss. */
	a = ans("one", 7, 3, 1);
	ck_assert_int_eq(dns_cache_put(cache, &k, &a), 0);
	ck_assert_str_eq(get(&k, 7, 1), "one");
	ck_assert_str_eq(get(&k, 7, 4), "one");
	ck_assert_ptr_null(get(&k, 7, 0));
	ck_assert_ptr_null(get(&k, 7, 5));
	a = ans("two", 7, 3, 2);
	ck_assert_int_eq(dns_cache_put(cache, &k, &a), 0);
	ck_assert_str_eq(get(&k, 7, 5), "two");
	ck_assert_str_eq(get(&k, 7, 1), "one");
	ck_assert_uint_eq(stats().entries, 1);
	/* Putting a variant again keeps the first bytes (they are equal). */
	a = ans("TWO", 7, 3, 2);
	ck_assert_int_eq(dns_cache_put(cache, &k, &a), 0);
	ck_assert_str_eq(get(&k, 7, 2), "two");
	/* Another index: gone, and dropped. */
	ck_assert_ptr_null(get(&k, 8, 1));
	ck_assert_uint_eq(stats().entries, 0);
	ck_assert_uint_eq(stats().stale, 1);
	ck_assert_uint_eq(stats().bytes, 0);
	/* A put at another index or number of variants replaces. */
	a = ans("x", 8, 3, 0);
	ck_assert_int_eq(dns_cache_put(cache, &k, &a), 0);
	a = ans("y", 9, 2, 0);
	ck_assert_int_eq(dns_cache_put(cache, &k, &a), 0);
	ck_assert_ptr_null(get(&k, 8, 0));
	a = ans("y", 9, 2, 0);
	ck_assert_int_eq(dns_cache_put(cache, &k, &a), 0);
	ck_assert_str_eq(get(&k, 9, 0), "y");
	a = ans("z", 9, 1, 0);
	ck_assert_int_eq(dns_cache_put(cache, &k, &a), 0);
	ck_assert_str_eq(get(&k, 9, 1), "z"); /* one variant: any draw */
	ck_assert_uint_eq(stats().entries, 1);
	/* Bad variants. */
	a = ans("z", 9, 2, 2);
	ck_assert_int_eq(dns_cache_put(cache, &k, &a), BCN_EINVAL);
	a = ans("z", 9, 0, 0);
	ck_assert_int_eq(dns_cache_put(cache, &k, &a), BCN_EINVAL);
}
END_TEST

START_TEST(time_dependent)
{
	struct dns_cache_key k;
	struct dns_cache_ans a = ans("soa", 5, 1, 0);
	size_t len;

	key_of(&k, "nx.consul", 1, false, 512);
	a.now_dep = true;
	ck_assert_int_eq(dns_cache_put(cache, &k, &a), 0);
	ck_assert_ptr_nonnull(dns_cache_get(cache, &k, 5, 1000, 0, &len));
	ck_assert_ptr_null(dns_cache_get(cache, &k, 5, 1001, 0, &len));
	ck_assert_uint_eq(stats().entries, 0);
	/* Without now_dep, the second does not matter. */
	a.now_dep = false;
	ck_assert_int_eq(dns_cache_put(cache, &k, &a), 0);
	ck_assert_ptr_nonnull(dns_cache_get(cache, &k, 5, 1001, 0, &len));
	ck_assert_ptr_nonnull(dns_cache_get(cache, &k, 5, 99, 0, &len));
	/* A time-dependent answer replaces one that was not. */
	a.now_dep = true;
	a.ans = "soa2";
	a.len = 4;
	ck_assert_int_eq(dns_cache_put(cache, &k, &a), 0);
	ck_assert_str_eq(get(&k, 5, 0), "soa2");
}
END_TEST

/* Entries beyond the bound go, least recently used first. */
START_TEST(entry_bound_lru)
{
	struct dns_cache_key k[9];
	unsigned per_set[4] = {0};
	char name[32];
	size_t n = 0;

	dns_cache_free(cache);
	ck_assert_int_eq(dns_cache_new(&cache, 8, 1 << 20), 0);
	dns_cache_reset(cache, 1);
	/* 8 entries: 16 slots in 4 sets. Nine keys, at most 3 per set: no
	 * set fills, so only the entry bound evicts. */
	for (int i = 0; n < N_OF(k); i++) {
		snprintf(name, sizeof name, "n%d.consul", i);
		key_of(&k[n], name, 1, false, 512);
		if (per_set[k[n].hash & 3] < 3)
			per_set[k[n++].hash & 3]++;
	}
	for (size_t i = 0; i < 8; i++) {
		struct dns_cache_ans a = ans("answer", 1, 1, 0);

		ck_assert_int_eq(dns_cache_put(cache, &k[i], &a), 0);
	}
	ck_assert_uint_eq(stats().entries, 8);
	ck_assert_uint_eq(stats().evictions, 0);
	/* Touch k[0]: k[1] is now the oldest, and goes for k[8]. */
	ck_assert_ptr_nonnull(get(&k[0], 1, 0));
	{
		struct dns_cache_ans a = ans("answer", 1, 1, 0);

		ck_assert_int_eq(dns_cache_put(cache, &k[8], &a), 0);
	}
	ck_assert_uint_eq(stats().entries, 8);
	ck_assert_uint_eq(stats().evictions, 1);
	ck_assert_ptr_null(get(&k[1], 1, 0));
	for (size_t i = 0; i < N_OF(k); i++)
		if (i != 1)
			ck_assert_ptr_nonnull(get(&k[i], 1, 0));
	/* Many more: the bound holds, the newest is there. */
	for (int i = 0; i < 300; i++) {
		struct dns_cache_key x;
		struct dns_cache_ans a = ans("answer", 1, 1, 0);

		snprintf(name, sizeof name, "m%d.consul", i);
		key_of(&x, name, 1, false, 512);
		ck_assert_int_eq(dns_cache_put(cache, &x, &a), 0);
		ck_assert_uint_le(stats().entries, 8);
		ck_assert_ptr_nonnull(get(&x, 1, 0));
	}
	ck_assert_uint_eq(stats().entries, 8);
}
END_TEST

START_TEST(byte_bound)
{
	static char big[500], mid[901];
	struct dns_cache_key k;
	char name[32];

	dns_cache_free(cache);
	ck_assert_int_eq(dns_cache_new(&cache, 1000, 16384), 0);
	dns_cache_reset(cache, 1);
	memset(big, 'x', sizeof big - 1);
	memset(mid, 'y', sizeof mid - 1);
	for (int i = 0; i < 100; i++) {
		struct dns_cache_ans a = ans(big, 1, 4, (uint32_t)(i % 4));

		snprintf(name, sizeof name, "n%d.consul", i / 2);
		key_of(&k, name, 1, false, 512);
		ck_assert_int_eq(dns_cache_put(cache, &k, &a), 0);
		ck_assert_uint_le(stats().bytes, 16384);
	}
	ck_assert_uint_gt(stats().evictions, 0);
	ck_assert_uint_gt(stats().entries, 0);
	/* An entry over an eighth of the bound is refused. */
	key_of(&k, "huge.consul", 1, false, 512);
	{
		static char huge[2100];
		struct dns_cache_ans a = ans("", 1, 1, 0);

		a.ans = huge;
		a.len = sizeof huge;
		ck_assert_int_eq(dns_cache_put(cache, &k, &a), BCN_ETOOBIG);
		ck_assert_ptr_null(get(&k, 1, 0));
	}
	/* So is the variant that would make an entry grow past it. */
	key_of(&k, "grow.consul", 1, false, 512);
	{
		struct dns_cache_ans a = ans(mid, 1, 3, 0);

		ck_assert_int_eq(dns_cache_put(cache, &k, &a), 0);
		a.var = 1;
		ck_assert_int_eq(dns_cache_put(cache, &k, &a), 0);
		a.var = 2;
		ck_assert_int_eq(dns_cache_put(cache, &k, &a), BCN_ETOOBIG);
		ck_assert_ptr_nonnull(get(&k, 1, 0));
		ck_assert_ptr_null(get(&k, 1, 2));
	}
	ck_assert_uint_le(stats().bytes, 16384);
}
END_TEST

/* Keys in one set evict each other and nothing else; lookups stay right
 * however many collide. */
START_TEST(colliding_set)
{
	struct dns_cache_key k[40], other;
	struct dns_cache_ans a;
	size_t n = 0;
	char name[32];

	dns_cache_free(cache);
	ck_assert_int_eq(dns_cache_new(&cache, 64, 1 << 20), 0);
	dns_cache_reset(cache, 7);
	key_of(&other, "other.consul", 1, false, 512);
	a = ans("other", 1, 1, 0);
	ck_assert_int_eq(dns_cache_put(cache, &other, &a), 0);
	/* 128 slots, 32 sets: keep the keys that share a set with k[0] but
	 * not with "other". */
	for (int i = 0; n < N_OF(k) && i < 100000; i++) {
		snprintf(name, sizeof name, "c%d.consul", i);
		key_of(&k[n], name, 1, false, 512);
		if ((k[n].hash & 31) == (k[0].hash & 31) &&
		    (k[n].hash & 31) != (other.hash & 31))
			n++;
	}
	ck_assert_uint_eq(n, N_OF(k));
	for (size_t i = 0; i < n; i++) {
		char text[32];

		snprintf(text, sizeof text, "a%zu", i);
		a = ans(text, 1, 1, 0);
		ck_assert_int_eq(dns_cache_put(cache, &k[i], &a), 0);
		ck_assert_str_eq(get(&k[i], 1, 0), text);
	}
	ck_assert_uint_eq(stats().entries, DNS_CACHE_WAYS + 1);
	for (size_t i = 0; i < n; i++) {
		const char *got = get(&k[i], 1, 0);
		char text[32];

		snprintf(text, sizeof text, "a%zu", i);
		if (i + DNS_CACHE_WAYS >= n)
			ck_assert_str_eq(got, text);
		else
			ck_assert_ptr_null(got);
	}
	ck_assert_str_eq(get(&other, 1, 0), "other");
}
END_TEST

/* Every allocation of a put may fail: nothing new is cached, what was
 * cached stays right, the counts add up, and nothing leaks. */
START_TEST(put_survives_every_oom)
{
	struct dns_cache_key k, old;
	struct dns_cache_ans a;
	struct dns_cache_stats st;

	key_of(&old, "old.consul", 1, false, 512);
	a = ans("old", 1, 2, 0);
	ck_assert_int_eq(dns_cache_put(cache, &old, &a), 0);
	key_of(&k, "new.consul", 1, false, 512);
	for (long n = 0;; n++) {
		int rc;

		fault_alloc_fail_at(n);
		a = ans("new", 1, 2, 1);
		rc = dns_cache_put(cache, &k, &a);
		fault_alloc_fail_at(-1);
		if (rc == 0)
			break;
		ck_assert_int_eq(rc, BCN_ENOMEM);
		ck_assert_ptr_null(get(&k, 1, 1));
		ck_assert_str_eq(get(&old, 1, 0), "old");
		st = stats();
		ck_assert_uint_eq(st.entries, 1);
	}
	ck_assert_str_eq(get(&k, 1, 1), "new");
	/* A second variant of an existing entry, too. */
	for (long n = 0;; n++) {
		int rc;

		fault_alloc_fail_at(n);
		a = ans("new0", 1, 2, 0);
		rc = dns_cache_put(cache, &k, &a);
		fault_alloc_fail_at(-1);
		if (rc == 0)
			break;
		ck_assert_int_eq(rc, BCN_ENOMEM);
		ck_assert_ptr_null(get(&k, 1, 0));
		ck_assert_str_eq(get(&k, 1, 1), "new");
	}
	ck_assert_str_eq(get(&k, 1, 0), "new0");
	st = stats();
	ck_assert_uint_eq(st.entries, 2);
	ck_assert_uint_eq(st.inserts, 3);
}
END_TEST

START_TEST(new_survives_every_oom)
{
	for (long n = 0;; n++) {
		struct dns_cache *c = NULL;
		int rc;

		fault_alloc_fail_at(n);
		rc = dns_cache_new(&c, 100, 1000);
		fault_alloc_fail_at(-1);
		if (rc == 0) {
			dns_cache_free(c);
			break;
		}
		ck_assert_int_eq(rc, BCN_ENOMEM);
	}
	dns_cache_free(NULL);
}
END_TEST

/* A hit allocates nothing. */
START_TEST(get_allocates_nothing)
{
	struct dns_cache_key k;
	struct dns_cache_ans a = ans("x", 1, 1, 0);

	key_of(&k, "x.consul", 1, false, 512);
	ck_assert_int_eq(dns_cache_put(cache, &k, &a), 0);
	fault_alloc_fail_at(0);
	ck_assert_str_eq(get(&k, 1, 0), "x");
	ck_assert_int_eq(fault_alloc_count(), 0);
	fault_alloc_fail_at(-1);
}
END_TEST

static Suite *cache_suite(void)
{
	Suite *s = suite_create("dns_cache");
	TCase *t = tcase_create("cache");

	tcase_add_checked_fixture(t, setup, teardown);
	tcase_add_test(t, keys);
	tcase_add_test(t, keys_refused);
	tcase_add_test(t, variants_and_validity);
	tcase_add_test(t, time_dependent);
	tcase_add_test(t, entry_bound_lru);
	tcase_add_test(t, byte_bound);
	tcase_add_test(t, colliding_set);
	tcase_add_test(t, put_survives_every_oom);
	tcase_add_test(t, new_survives_every_oom);
	tcase_add_test(t, get_allocates_nothing);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return unit_run(cache_suite());
}

/* The counting, fault-injecting allocator of tests/lib/fault_alloc.h.
 *
 * Each block is [size header, 16 bytes][user bytes]: 16 keeps the user
 * pointer as aligned as malloc's (max_align_t) for SQLite and jansson. */
#include "tests/lib/fault_alloc.h"

#include <jansson.h>
#include <stddef.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"

#define HDR 16

_Static_assert(HDR >= sizeof(size_t), "the header holds a size_t");
_Static_assert(HDR % _Alignof(max_align_t) == 0, "the header keeps alignment");

static long counted;	  /* allocations since the last fail_at() */
static long fail_at = -1; /* index (in counted) that fails; -1 = none */
static int fired;

/* Count one allocation; true if this one must fail. */
static int take(void)
{
	long i = counted++;

	if (fail_at >= 0 && i == fail_at) {
		fired = 1;
		return 1;
	}
	return 0;
}

static void *fa_malloc(size_t n)
{
	unsigned char *p;

	if (take() || n > SIZE_MAX - HDR)
		return NULL;
	p = malloc(HDR + n);
	if (p == NULL)
		return NULL;
	memcpy(p, &n, sizeof n);
	return p + HDR;
}

static void fa_free(void *ptr)
{
	if (ptr != NULL)
		free((unsigned char *)ptr - HDR);
}

static size_t fa_size(void *ptr)
{
	size_t n;

	if (ptr == NULL)
		return 0;
	memcpy(&n, (unsigned char *)ptr - HDR, sizeof n);
	return n;
}

static void *fa_realloc(void *ptr, size_t n)
{
	unsigned char *p;

	if (ptr == NULL)
		return fa_malloc(n);
	/* On failure the old block stays valid, as realloc(3) promises. */
	if (take() || n > SIZE_MAX - HDR)
		return NULL;
	p = realloc((unsigned char *)ptr - HDR, HDR + n);
	if (p == NULL)
		return NULL;
	memcpy(p, &n, sizeof n);
	return p + HDR;
}

/* SQLite's sqlite3_mem_methods. */
static void *sq_malloc(int n)
{
	return n < 0 ? NULL : fa_malloc((size_t)n);
}

static void *sq_realloc(void *p, int n)
{
	return n < 0 ? NULL : fa_realloc(p, (size_t)n);
}

static int sq_size(void *p)
{
	return (int)fa_size(p);
}

static int sq_roundup(int n)
{
	return (n + 7) & ~7;
}

static int sq_init(void *app)
{
	(void)app;
	return SQLITE_OK;
}

static void sq_shutdown(void *app)
{
	(void)app;
}

void fault_alloc_install(void)
{
	static const sqlite3_mem_methods sq = {
	    sq_malloc,	fa_free, sq_realloc,  sq_size,
	    sq_roundup, sq_init, sq_shutdown, NULL,
	};
	static const struct bcn_allocator bcn = {fa_malloc, fa_realloc,
						 fa_free};
	int rc;

	rc = sqlite3_config(SQLITE_CONFIG_MALLOC, &sq);
	if (rc != SQLITE_OK) {
		fprintf(stderr,
			"fault_alloc_install: sqlite3_config: %s (was SQLite "
			"already initialized?)\n",
			sqlite3_errstr(rc));
		abort();
	}
	bcn_alloc_set(&bcn);
	json_set_alloc_funcs(fa_malloc, fa_free);
	fault_alloc_fail_at(-1);
}

void fault_alloc_fail_at(long n)
{
	fail_at = n < 0 ? -1 : n;
	counted = 0;
	fired = 0;
}

long fault_alloc_count(void)
{
	return counted;
}

int fault_alloc_fired(void)
{
	return fired;
}

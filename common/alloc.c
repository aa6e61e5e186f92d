#include "common/alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static struct bcn_allocator cur = {malloc, realloc, free};

void bcn_alloc_set(const struct bcn_allocator *a)
{
	if (a == NULL) {
		cur.malloc = malloc;
		cur.realloc = realloc;
		cur.free = free;
	} else {
		cur = *a;
	}
}

void *bcn_malloc(size_t size)
{
	return cur.malloc(size == 0 ? 1 : size);
}

void *bcn_calloc(size_t n, size_t size)
{
	void *p;

	if (size != 0 && n > SIZE_MAX / size)
		return NULL;
	p = bcn_malloc(n * size);
	if (p != NULL)
		memset(p, 0, n * size);
	return p;
}

void *bcn_realloc(void *ptr, size_t size)
{
	return cur.realloc(ptr, size == 0 ? 1 : size);
}

void bcn_free(void *ptr)
{
	if (ptr != NULL)
		cur.free(ptr);
}

char *bcn_strndup(const char *s, size_t n)
{
	char *p = bcn_malloc(n + 1);

	if (p == NULL)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *bcn_strdup(const char *s)
{
	return bcn_strndup(s, strlen(s));
}

/* Allocation hooks. Every allocation of Beacon's own code goes through these,
 * so that tests can install a fault-injecting allocator (tests/lib). */
#pragma once

#include <stddef.h>

struct bcn_allocator {
	void *(*malloc)(size_t size);
	void *(*realloc)(void *ptr, size_t size);
	void (*free)(void *ptr);
};

/* Install @a (copied); NULL restores libc's allocator. */
void bcn_alloc_set(const struct bcn_allocator *a);

void *bcn_malloc(size_t size);
void *bcn_calloc(size_t n, size_t size);
void *bcn_realloc(void *ptr, size_t size);
void bcn_free(void *ptr);
/* Return a bcn_malloc'd copy of @s (of @n bytes plus a NUL), NULL on OOM. */
char *bcn_strndup(const char *s, size_t n);
char *bcn_strdup(const char *s);

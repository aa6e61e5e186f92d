/* A counting allocator that fails the N-th allocation (STYLE.md §7).
 *
 * One allocator behind every hook the tests install: bcn_alloc_set(),
 * sqlite3_config(SQLITE_CONFIG_MALLOC) and json_set_alloc_funcs(). Every
 * malloc and realloc counts as one allocation, whoever makes it; frees do
 * not count. Blocks carry a 16-byte size header (SQLite's xSize needs it),
 * so a block freed by the wrong allocator's free is caught by ASan.
 *
 * Not thread-safe: the unit tests run one thread per forked test. */
#pragma once

/* Install the allocator into every hook. Call it once, first thing in
 * main(), before any SQLite, jansson or bcn_* allocation: SQLite accepts a
 * new allocator only before it is initialized. Aborts if it cannot. */
void fault_alloc_install(void);

/* Make the @n-th allocation from now fail (0 = the very next one), once;
 * the ones after it succeed again. -1 means never. Also restarts the count
 * returned by fault_alloc_count(). */
void fault_alloc_fail_at(long n);

/* The number of allocations attempted since the last fault_alloc_fail_at()
 * (or since fault_alloc_install()), including a failed one. */
long fault_alloc_count(void);

/* True if the armed failure has been delivered since the last
 * fault_alloc_fail_at(). */
int fault_alloc_fired(void);

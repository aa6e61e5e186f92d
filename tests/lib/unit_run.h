/* The main() of every unit-test binary: install the fault allocator, run
 * @s with Check (fork per test), free the runner. Returns the exit status. */
#pragma once

#include <check.h>

int unit_run(Suite *s);

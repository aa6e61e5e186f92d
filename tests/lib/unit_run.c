#include "tests/lib/unit_run.h"

#include <stdlib.h>

#include "tests/lib/fault_alloc.h"

int unit_run(Suite *s)
{
	SRunner *sr;
	int failed;

	fault_alloc_install();
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* beacond's configuration: an immutable struct filled from the table in
 * config_table.h. Precedence: command-line flag, then BEACON_* environment
 * variable, then the config file, then the default. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "server/config_table.h"

#define CONFIG_STR  char *
#define CONFIG_UINT uint64_t
#define CONFIG_BOOL bool
#define CONFIG_DUR  uint64_t

struct config {
#define CONFIG_FIELD(name, type, def, min, max, help) CONFIG_##type name;
	CONFIG_TABLE(CONFIG_FIELD)
#undef CONFIG_FIELD
	char *dev_dir; /* with --dev: the temporary data directory */
};

/* Fill @c from defaults, the config file, the environment and @argv.
 * Returns 0; 1 if --help or --print-config was handled (exit 0); or
 * BCN_EINVAL/BCN_ENOMEM with a message in @errmsg. Release with
 * config_close() in every case. */
int config_load(struct config *c, int argc, char **argv,
		char *errmsg) BCN_MUST_CHECK;
/* Read the configuration again (for SIGHUP), with no side effects: no temp
 * directory, no printing. Same return values as config_load(). */
int config_reload(struct config *c, int argc, char **argv,
		  char *errmsg) BCN_MUST_CHECK;
void config_close(struct config *c);

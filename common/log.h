/* Logging: one line per event with time, level and module, to stderr.
 *
 * The level is checked before formatting. Client errors go at debug level;
 * secrets and tokens are never logged. */
#pragma once

#include "common/err.h"

enum bcn_log_level { BCN_LOG_DEBUG, BCN_LOG_INFO, BCN_LOG_WARN, BCN_LOG_ERROR };

extern enum bcn_log_level bcn_log_min;

/* Parse "debug", "info", "warn" or "error". Returns 0 or BCN_EINVAL. */
int bcn_log_level_parse(const char *s, enum bcn_log_level *out) BCN_MUST_CHECK;

/* Select plain text (0) or JSON lines (1). */
void bcn_log_set_json(int json);

void bcn_log_write(enum bcn_log_level lvl, const char *module, const char *fmt,
		   ...) BCN_PRINTF(3, 4);

#define bcn_log(lvl, module, ...)                                    \
	do {                                                         \
		if ((lvl) >= bcn_log_min)                            \
			bcn_log_write((lvl), (module), __VA_ARGS__); \
	} while (0)

#define bcn_debug(module, ...) bcn_log(BCN_LOG_DEBUG, module, __VA_ARGS__)
#define bcn_info(module, ...)  bcn_log(BCN_LOG_INFO, module, __VA_ARGS__)
#define bcn_warn(module, ...)  bcn_log(BCN_LOG_WARN, module, __VA_ARGS__)
#define bcn_error(module, ...) bcn_log(BCN_LOG_ERROR, module, __VA_ARGS__)

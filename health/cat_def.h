/* Private to health/: the encoding of a check definition, shared by the
 * op codec (cat_codec.c) and the state (catalog.c, which stores it as a
 * blob column). */
#pragma once

#include "common/buf.h"
#include "health/catalog.h"

void cat_def_encode(const struct cat_check_def *d, struct bcn_buf *b);
/* Fills @d pointing into the cursor's bytes; BCN_ECORRUPT if malformed. */
int cat_def_decode(struct bcn_cursor *c, struct cat_check_def *d);

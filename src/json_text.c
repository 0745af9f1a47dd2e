/* json_text.c - not written yet. */
#include "primehubfs/error.h"

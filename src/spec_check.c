/* spec_check.c - not written yet. */
#include "primehubfs/error.h"

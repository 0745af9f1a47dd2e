/* spec_plan.c - not written yet. */
#include "primehubfs/error.h"

/* spec_render.c - not written yet. */
#include "primehubfs/error.h"

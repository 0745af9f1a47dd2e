/* primehub_codec.c - not written yet. */
#include "primehubfs/error.h"

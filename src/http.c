/* http.c - not written yet. */
#include "primehubfs/error.h"

/* fs_read.c - not written yet. */
#include "primehubfs/error.h"

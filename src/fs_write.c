/* fs_write.c - not written yet. */
#include "primehubfs/error.h"

/* fs_dir.c - not written yet. */
#include "primehubfs/error.h"

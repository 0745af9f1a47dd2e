/*
 * inodes.h - the inode numbers the kernel holds, and the path each stands
 * for.  The FUSE glue speaks libfuse's low-level API (so that it can tell
 * the kernel to keep listings: docs/fs-conventions.md says why), in which
 * the kernel names files by number; the rest of the daemon names them by
 * path.  This table is the bridge, kept the way libfuse's own high-level
 * layer keeps it: one node per (parent, name) the kernel looked up, with
 * the count of lookups the kernel has not forgotten yet.
 *
 * Numbers are never reused while the mount lives (a counter), so a stale
 * number can only miss, never name another file.  A name removed or
 * renamed over is detached: its node lives on, nameless, until the kernel
 * forgets it (an open file keeps its handle; its path is then unknown).
 *
 * Pure: no FUSE, no I/O.  Thread-safe (one mutex).  Ownership: the table
 * owns its nodes and names; paths are copied out into the caller's buffer.
 */
#ifndef PRIMEHUBFS_INODES_H
#define PRIMEHUBFS_INODES_H

#include <stddef.h>
#include <stdint.h>

#define INODES_ROOT 1 /* FUSE_ROOT_ID */

struct inodes;

struct inodes *inodes_new(void);
void inodes_free(struct inodes *t);

/* One more lookup of name in directory parent: its number (made when the
 * name had none), or 0 when parent is unknown or out of memory. */
uint64_t inodes_ref(struct inodes *t, uint64_t parent, const char *name);
/* The kernel forgot n lookups of ino: the node goes at zero.  Returns the
 * directory the node was named in when it went (0: it stays, or had no
 * name any more). */
uint64_t inodes_forget(struct inodes *t, uint64_t ino, uint64_t n);
/* The path of ino ("/" for the root, "/a/b" else) into buf: 0, -ESTALE
 * when ino is unknown or detached, -ENAMETOOLONG when buf is too small. */
int inodes_path(struct inodes *t, uint64_t ino, char *buf, size_t size);
/* The path of name in directory parent (of parent itself when name is
 * NULL): as inodes_path. */
int inodes_child_path(struct inodes *t, uint64_t parent, const char *name, char *buf, size_t size);
/* The number the kernel holds for path, 0 when none. */
uint64_t inodes_find(struct inodes *t, const char *path);
/* name in parent is gone (unlink, rmdir): its node is detached. */
void inodes_unlink(struct inodes *t, uint64_t parent, const char *name);
/* name in parent is now newname in newparent; whatever had that name is
 * detached.  0, or -ENOMEM (the table is unchanged). */
int inodes_rename(struct inodes *t, uint64_t parent, const char *name, uint64_t newparent,
                  const char *newname);
/* Nodes held (the root included). */
size_t inodes_count(struct inodes *t);

#endif

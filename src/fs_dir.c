/*
 * fs_dir.c - the operations that change the tree: mkdir/rmdir of images,
 * touch/rm in groups/, unlink and rename.  configfs is the model: mkdir
 * makes an item, rmdir removes it although it lists files.
 *
 * The `rm -r IMAGE` trap: rm unlinks the entries of IMAGE in listing order
 * and recurses into groups/, so a naive design would disconnect every group
 * one by one and then fail on spec.json, leaving the image half-changed.
 * Here spec.json is listed first; its unlink is refused (EPERM) and noted
 * with the caller's pid, and for PHFS_RM_GUARD_MS that same process may
 * neither disconnect the image's groups nor rmdir the image (find -delete
 * and shutil.rmtree go on to rmdir the directory whatever failed inside).
 * So `rm -r IMAGE` fails having changed nothing, and .error says to use
 * `rmdir IMAGE`.
 */
#include "fs_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "primehubfs/log.h"
#include "primehubfs/spec.h"

#define RM_R_ADVICE                                                                                \
	"to delete the image use rmdir IMAGE; to disconnect groups use rm IMAGE/groups/NAME"

static pid_t caller_pid(void)
{
	return phfs_caller_pid();
}

/* An updateImage that changes only group links.  PrimeHub clears
 * useImagePullSecret and groupName from any update that leaves them out,
 * so they are re-sent as the server holds them right now. */
static int update_groups_locked(struct phfs *fs, const char *image, const char *group_id,
                                bool connect, struct ph_err *err)
{
	struct ph_image_input in = {0};
	struct ph_image *current = NULL, *result = NULL;
	int ret;

	ret = ph_get_image(fs->api, image, &current, err);
	if (ret < 0)
		return ret;
	if (!current)
		return ph_err_set(err, ENOENT, NULL, "image %s no longer exists on PrimeHub",
		                  image);
	if (current->use_image_pull_secret) {
		in.set |= PH_IN_USE_IMAGE_PULL_SECRET;
		ret = ph_strdup_opt(&in.use_image_pull_secret, current->use_image_pull_secret)
		          ? 0
		          : -ENOMEM;
	}
	if (ret == 0 && current->group_name) {
		in.set |= PH_IN_GROUP_NAME;
		ret = ph_strdup_opt(&in.group_name, current->group_name) ? 0 : -ENOMEM;
	}
	if (ret == 0)
		ret = ph_strlist_append(connect ? &in.connect : &in.disconnect, group_id);
	if (ret == 0)
		ret = ph_update_image(fs->api, image, &in, &result, err);
	else
		ph_err_set(err, ENOMEM, NULL, "out of memory");
	if (ret < 0 && err->maybe_applied) {
		/* The answer was lost: never resend, look at what PrimeHub has. */
		const char *what = connect ? "group connection" : "group disconnection";

		ret = phfs_reread_after_lost(fs, image, what, err, &result);
		if (ret == 0 && !result)
			ret = ph_err_set(err, ENOENT, NULL, "image %s no longer exists on PrimeHub",
			                 image);
		else if (ret == 0 && ph_image_has_group(result, group_id) == connect)
			log_info("%s of image %s: the answer was lost but PrimeHub applied it",
			         what, image);
		else if (ret == 0)
			ret = phfs_lost_not_applied(err, what, true);
	}
	ph_image_input_clear(&in);
	ph_image_free(current);
	if (ret < 0) {
		ph_image_free(result);
		store_invalidate(fs->store);
		return ret;
	}
	return store_put_image(fs->store, result);
}

/* update_groups_locked, one change of the image at a time (fs.c); the
 * change goes to /.changes under the group's name. */
static int update_groups(struct phfs *fs, const char *image, const char *group_id,
                         const char *group_name, bool connect, struct ph_err *err)
{
	char detail[TREE_NAME_MAX + 32];
	int ret = phfs_image_lock(fs, image);

	if (ret < 0)
		return ret;
	ret = update_groups_locked(fs, image, group_id, connect, err);
	phfs_image_unlock(fs, image);
	snprintf(detail, sizeof(detail), "groups: %s%s", connect ? "+" : "-", group_name);
	phfs_change(fs, image, "updateImage", detail, ret, err);
	return ret;
}

/* How old the group list may be when a name is not in it: a group made in
 * PrimeHub's UI a moment ago is found, without a fetch per touch. */
#define CATALOG_RECHECK_MS 1000

/* The server's group called name (or with that id): its id and name in
 * *id and *gname (malloc'd).  -ENOENT when there is none, -errno (err set) when
 * the groups cannot be listed. */
static int find_server_group(struct phfs *fs, const char *name, char **id, char **gname,
                             struct ph_err *err)
{
	struct catalog_data *cat;
	const struct ph_group *g;
	int ret = catalog_get(fs->catalog, -1, &cat, err);

	if (ret == 0 && !catalog_find_group(cat, name)) {
		catalog_put(cat);
		ret = catalog_get(fs->catalog, CATALOG_RECHECK_MS, &cat, err);
	}
	if (ret < 0) {
		ph_err_prefix(err, "cannot list PrimeHub's groups: ");
		return ret;
	}
	g = catalog_find_group(cat, name);
	if (g) {
		*id = strdup(g->id);
		*gname = strdup(g->name ? g->name : g->id);
		ret = *id && *gname ? 0 : -ENOMEM;
	} else {
		ret = -ENOENT;
	}
	catalog_put(cat);
	return ret;
}

int phfs_group_connect(struct phfs *fs, const struct node *node)
{
	struct ph_err err = {0};
	struct snapshot *snap;
	const struct snap_image *e;
	char what[2 * TREE_NAME_MAX + 16], *id = NULL, *name = NULL;
	bool pending = false;
	int ret;

	snprintf(what, sizeof(what), "%s/groups/%s", node->image, node->leaf);
	ret = phfs_snapshot_groups(fs, node->image, &snap);
	if (ret < 0)
		return ret;
	e = snapshot_find(snap, node->image);
	if (!e && !(pending = staging_pending_exists(fs->staging, node->image))) {
		snapshot_put(snap);
		return -ENOENT;
	}
	/* Touching a connected group changes nothing and sends nothing. */
	if (e && ph_image_find_group(e->img, node->leaf)) {
		snapshot_put(snap);
		return 0;
	}
	snapshot_put(snap);
	ret = find_server_group(fs, node->leaf, &id, &name, &err);
	if (ret == -ENOENT) {
		/* Copied from another server: the image must not be made
		 * without it (fs_write.c refuses the create). */
		if (pending)
			staging_pending_group_missing(fs->staging, node->image, node->leaf);
		ph_err_set(&err, ENOENT, NULL,
		           "no group is named '%s' (or has that id); ls shows group names, "
		           "and PrimeHub's groups are listed in its admin UI",
		           node->leaf);
		phfs_refuse(fs, node->image, what, &err);
		goto out;
	}
	if (ret == 0 && pending)
		ret = staging_pending_group_add(fs->staging, node->image, id, name);
	else if (ret == 0)
		ret = update_groups(fs, node->image, id, name, true, &err);
	if (ret < 0) {
		if (!err.msg[0])
			ph_err_set(&err, -ret, NULL, "%s", strerror(-ret));
		phfs_refuse(fs, node->image, what, &err);
	} else {
		char caller[128];

		phfs_succeeded(fs, node->image);
		phfs_describe_caller(caller, sizeof(caller));
		log_info("connected group %s to image %s%s (by %s): ok", name, node->image,
		         pending ? " (kept here until spec.json is saved)" : "", caller);
	}
out:
	free(id);
	free(name);
	return phfs_user_error(ret);
}

static int group_disconnect(struct phfs *fs, const struct node *node)
{
	struct ph_err err = {0};
	struct snapshot *snap;
	const struct snap_image *e;
	const struct ph_group *g;
	char what[2 * TREE_NAME_MAX + 16], *id = NULL;
	int ret;

	snprintf(what, sizeof(what), "%s/groups/%s", node->image, node->leaf);
	if (staging_pending_exists(fs->staging, node->image))
		return staging_pending_group_remove(fs->staging, node->image, node->leaf);
	if (staging_recent_spec_unlink(fs->staging, node->image, caller_pid(), PHFS_RM_GUARD_MS)) {
		ph_err_set(&err, EPERM, NULL,
		           "not disconnecting: this looks like rm -r of the image, which would "
		           "strip its groups one by one and then fail; " RM_R_ADVICE);
		phfs_refuse(fs, node->image, what, &err);
		return -EPERM;
	}
	ret = phfs_snapshot_groups(fs, node->image, &snap);
	if (ret < 0)
		return ret;
	e = snapshot_find(snap, node->image);
	g = e ? ph_image_find_group(e->img, node->leaf) : NULL;
	if (!g) {
		snapshot_put(snap);
		return -ENOENT;
	}
	id = strdup(g->id);
	snapshot_put(snap);
	if (!id)
		return -ENOMEM;
	ret = update_groups(fs, node->image, id, node->leaf, false, &err);
	if (ret < 0) {
		phfs_refuse(fs, node->image, what, &err);
	} else {
		char caller[128];

		phfs_succeeded(fs, node->image);
		phfs_describe_caller(caller, sizeof(caller));
		log_info("disconnected group %s from image %s (by %s): ok", node->leaf, node->image,
		         caller);
	}
	free(id);
	return phfs_user_error(ret);
}

int phfs_mkdir(const char *path, mode_t mode)
{
	struct phfs *fs = phfs_ctx();
	struct ph_err err = {0};
	struct snapshot *snap;
	struct node n;
	int ret;

	(void)mode;
	if (phfs_sink_path(path))
		return phfs_sink_mkdir_op(fs, path);
	ret = tree_parse(path, &n);
	if (ret < 0)
		return ret;
	if (n.kind == NODE_ROOT_ERROR || n.kind == NODE_ROOT_STATUS) {
		/* ".error" and ".status" at the top are not names an image can
		 * have. */
		spec_check_image_name(path + 1, &err);
		phfs_refuse(fs, "", path + 1, &err);
		return -EINVAL;
	}
	if (n.kind == NODE_GROUPS) {
		/* Every image directory has groups/.  A copy tool that made the
		 * image directory makes it as if it were new (fs_copy.c). */
		ret = phfs_snapshot(fs, &snap);
		if (ret < 0)
			return ret;
		ret = phfs_image_exists(fs, snap, n.image, &(bool){false}) ? -EEXIST : -ENOENT;
		snapshot_put(snap);
		if (ret == -EEXIST && phfs_copies_take(fs->copies, &n, caller_pid()))
			ret = 0;
		return ret;
	}
	if (n.kind != NODE_IMAGE) {
		ph_err_set(&err, EPERM, NULL,
		           "directories can only be made at the top of the mount (one per image)");
		phfs_refuse(fs, n.image, path + 1, &err);
		return -EPERM;
	}
	ret = spec_check_image_name(n.image, &err);
	if (ret < 0) {
		phfs_refuse(fs, "", path + 1, &err);
		return ret;
	}
	ret = phfs_snapshot(fs, &snap);
	if (ret < 0)
		return ret;
	if (snapshot_find(snap, n.image))
		ret = -EEXIST;
	snapshot_put(snap);
	if (ret == 0)
		ret = staging_pending_add(fs->staging, n.image);
	if (ret == -EEXIST) {
		ph_err_set(&err, EEXIST, NULL, "an image named %s already exists", n.image);
		phfs_refuse(fs, "", path + 1, &err);
		return ret;
	}
	if (ret == 0) {
		phfs_copies_made_dir(fs->copies, n.image, caller_pid(),
		                     phfs_caller_is_copier(false));
		phfs_succeeded(fs, "");
		log_info("new image directory %s: it is created on PrimeHub when its spec.json "
		         "is first saved",
		         n.image);
	}
	return ret;
}

int phfs_rmdir(const char *path)
{
	struct phfs *fs = phfs_ctx();
	struct ph_err err = {0};
	struct snapshot *snap;
	bool exists;
	struct node n;
	int ret;

	if (phfs_sink_path(path))
		return phfs_sink_remove_op(fs, path, true);
	ret = tree_parse(path, &n);
	if (ret < 0)
		return ret;
	if (n.kind == NODE_GROUPS && phfs_caller_is_rsync()) {
		log_debug("%s: rsync --delete removing an image; rmdir %s deletes it", path + 1,
		          n.image);
		return 0; /* see phfs_unlink */
	}
	if (n.kind == NODE_GROUPS) {
		ph_err_set(&err, EPERM, NULL, "groups/ is part of every image; " RM_R_ADVICE);
		phfs_refuse(fs, n.image, path + 1, &err);
		return -EPERM;
	}
	if (n.kind == NODE_HISTORY) {
		ph_err_set(&err, EPERM, NULL,
		           ".history is kept by primehubfs on this machine (-o history_keep bounds "
		           "it; -o history_keep=0 keeps none)");
		phfs_refuse(fs, n.image, path + 1, &err);
		return -EPERM;
	}
	if (n.kind != NODE_IMAGE)
		return n.kind == NODE_ROOT ? -EBUSY : -ENOTDIR;
	if (staging_pending_exists(fs->staging, n.image)) {
		/* Never created: just forget it. */
		staging_drop_dir(fs->staging, n.image);
		phfs_succeeded(fs, "");
		return 0;
	}
	ret = phfs_snapshot(fs, &snap);
	if (ret < 0)
		return ret;
	exists = snapshot_find(snap, n.image) != NULL;
	snapshot_put(snap);
	if (!exists)
		return -ENOENT;
	/* find -delete and shutil.rmtree(ignore_errors=True) go on to rmdir
	 * the image after its files refused to go: that is the same rm -r at
	 * work, not a request to delete the image. */
	if (staging_recent_spec_unlink(fs->staging, n.image, caller_pid(), PHFS_RM_GUARD_MS)) {
		ph_err_set(&err, EPERM, NULL,
		           "not deleting image %s: this process just tried to remove its files one "
		           "by one (rm -r, find -delete, rmtree); to delete the image use rmdir %s",
		           n.image, n.image);
		phfs_refuse(fs, "", path + 1, &err);
		return -EPERM;
	}
	ret = phfs_image_lock(fs, n.image);
	if (ret < 0)
		return ret;
	ret = ph_delete_image(fs->api, n.image, &err);
	if (ret < 0 && err.maybe_applied) {
		/* The answer was lost: never resend; gone means deleted. */
		struct ph_image *now = NULL;

		ret = phfs_reread_after_lost(fs, n.image, "deletion", &err, &now);
		if (ret == 0 && now)
			ret = phfs_lost_not_applied(&err, "deletion", true);
		else if (ret == 0)
			log_info("deleting image %s: the answer was lost but PrimeHub deleted it",
			         n.image);
		ph_image_free(now);
	}
	phfs_change(fs, n.image, "deleteImage", NULL, ret == -ENOENT ? 0 : ret, &err);
	if (ret < 0 && ret != -ENOENT) {
		phfs_image_unlock(fs, n.image);
		phfs_refuse(fs, "", path + 1, &err);
		return phfs_user_error(ret);
	}
	/* Deleted (or already gone): drop it from the view and every note. */
	store_remove_image(fs->store, n.image);
	phfs_image_unlock(fs, n.image);
	staging_drop_dir(fs->staging, n.image);
	phfs_readers_forget(fs, n.image);
	phfs_succeeded(fs, "");
	{
		char caller[128];

		phfs_describe_caller(caller, sizeof(caller));
		log_info("deleted image %s (by %s): ok", n.image, caller);
	}
	return 0;
}

int phfs_unlink(const char *path)
{
	struct phfs *fs = phfs_ctx();
	struct ph_err err = {0};
	struct node n;
	int ret;

	if (phfs_sink_path(path))
		return phfs_sink_remove_op(fs, path, false);
	ret = tree_parse(path, &n);
	if (ret < 0)
		return ret;
	/* rsync --delete removes an image that is not in its source as it
	 * removes any directory: its files, then the directory.  The files are
	 * the image's and go with it at the rmdir; removing them alone changes
	 * nothing (a group's file is a connection, and goes at once). */
	if ((n.kind == NODE_SPEC || n.kind == NODE_STATUS || n.kind == NODE_BUILD_LOG) &&
	    phfs_caller_is_rsync()) {
		log_debug("%s: rsync --delete removing an image; rmdir %s deletes it", path + 1,
		          n.image);
		return 0;
	}
	switch (n.kind) {
	case NODE_SCRATCH:
		return staging_scratch_unlink(fs->staging, n.image, n.leaf);
	case NODE_GROUP:
		return group_disconnect(fs, &n);
	case NODE_REJECTED:
		/* Dismissing the kept draft is the user's call. */
		staging_clear_rejected(fs->staging, n.image);
		return 0;
	case NODE_IMAGE_ERROR:
	case NODE_ROOT_ERROR:
		staging_clear_error(fs->staging, n.image);
		return 0;
	case NODE_SPEC:
		staging_note_spec_unlink(fs->staging, n.image, caller_pid());
		ph_err_set(&err, EPERM, NULL, "spec.json cannot be removed; " RM_R_ADVICE);
		phfs_refuse(fs, n.image, path + 1, &err);
		return -EPERM;
	case NODE_STATUS:
	case NODE_BUILD_LOG:
		ph_err_set(&err, EPERM, NULL, "%s is read-only server state; " RM_R_ADVICE,
		           n.kind == NODE_STATUS ? "status.json" : "build.log");
		phfs_refuse(fs, n.image, path + 1, &err);
		return -EPERM;
	case NODE_ROOT_STATUS:
		ph_err_set(&err, EPERM, NULL,
		           ".status is the mount's own state and cannot be "
		           "removed");
		phfs_refuse(fs, "", path + 1, &err);
		return -EPERM;
	default:
		return -EPERM;
	}
}

int phfs_rename(const char *from, const char *to, unsigned int flags)
{
	struct phfs *fs = phfs_ctx();
	struct ph_err err = {0};
	struct node a, b;
	int ret;

	if (phfs_sink_path(from))
		return phfs_sink_rename_op(fs, from, to);
	if (phfs_sink_path(to))
		return -EXDEV; /* nothing moves from the images to beside them */
	ret = tree_parse(from, &a);
	if (ret == 0)
		ret = tree_parse(to, &b);
	if (ret < 0)
		return ret;
	if (flags & RENAME_EXCHANGE)
		return -EINVAL;
	if (a.kind == NODE_IMAGE) {
		ph_err_set(&err, EPERM, NULL,
		           "images cannot be renamed (PrimeHub image names never change); make a "
		           "new one with mkdir and save its spec.json with the old one's settings "
		           "and the new \"name\"");
		phfs_refuse(fs, "", from + 1, &err);
		return -EPERM;
	}
	if (a.kind != NODE_SCRATCH) {
		/* vim then writes in place, Emacs backs up elsewhere. */
		ph_err_set(&err, EPERM, NULL, "%s cannot be renamed or moved", from + 1);
		if (a.kind == NODE_SPEC)
			log_debug("refused rename of %s (editors then save in place)", from);
		else
			phfs_refuse(fs, a.image, from + 1, &err);
		return -EPERM;
	}
	if (strcmp(a.image, b.image) != 0)
		return -EXDEV; /* mv copies across image directories */
	if (b.kind == NODE_SPEC) {
		if (flags & RENAME_NOREPLACE)
			return -EEXIST;
		return phfs_rename_onto_spec(fs, &a, &b);
	}
	if (b.kind == NODE_GROUP) {
		/* rsync's temporary file moved to groups/NAME: connect NAME,
		 * as touch does; what the file held does not matter. */
		ret = phfs_group_connect(fs, &b);
		if (ret == 0)
			staging_scratch_unlink(fs->staging, a.image, a.leaf);
		return ret;
	}
	if (b.kind == NODE_STATUS || b.kind == NODE_BUILD_LOG) {
		/* A copy's status.json or build.log: PrimeHub derives them, so
		 * the copy is taken and dropped (fs_file.c, open_sink). */
		log_debug("%s written by a copy: taken and dropped (PrimeHub derives it)", to);
		return staging_scratch_unlink(fs->staging, a.image, a.leaf);
	}
	if ((b.kind == NODE_IMAGE_ERROR || b.kind == NODE_REJECTED) &&
	    phfs_caller_is_copier(true)) {
		/* The notes of a refused save, copied from another mount or a
		 * backup: they describe that mount's past, not this one's. */
		log_debug("%s written by a copy: taken and dropped (a note of another mount)", to);
		phfs_sink_note(fs->sink, to);
		return staging_scratch_unlink(fs->staging, a.image, a.leaf);
	}
	if (b.kind != NODE_SCRATCH)
		return -EPERM;
	if ((flags & RENAME_NOREPLACE) && staging_scratch_exists(fs->staging, b.image, b.leaf))
		return -EEXIST;
	return staging_scratch_rename(fs->staging, a.image, a.leaf, b.leaf);
}

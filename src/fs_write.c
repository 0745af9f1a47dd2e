/*
 * fs_write.c - saving spec.json, and the editors' scratch files.
 *
 * A handle opened for writing keeps its own buffer, started from the text the
 * writer opened (or empty with O_TRUNC).  Writes, truncates and O_TRUNC only
 * change that buffer.  The commit point is flush (close) or fsync of a handle
 * that has written since its last commit, and rename(scratch -> spec.json):
 * then the text is validated as a whole and turned into API calls by spec,
 * and the outcome decides what close/fsync/rename return.  A refused save
 * changes nothing on the server, leaves the reason in .error and the log,
 * and keeps the refused text as spec.json.rejected.
 *
 * What a save is compared with (its base) is the version the writer saw, not
 * the one the server holds when it writes: otherwise another admin's change
 * made while the writer's text was waiting would be "changed back" by it.
 *   - A handle that opens spec.json without O_TRUNC holds the text it opened
 *     and that is its base (what it does not rewrite stays that text),
 *     unless it is write-only and emptied (ftruncate to 0) before its first
 *     write, as vim does: then it is a whole new text made from what the
 *     process read before, as with O_TRUNC below.
 *   - A handle opened with O_TRUNC, and rename(scratch -> spec.json), bring
 *     a whole new text that the process made from something it read earlier
 *     (vim reads at start and writes much later; sed -i reads, then writes a
 *     temp file and renames it).  Their base is the OLDEST version of that
 *     image's spec.json this process (thread group, told apart from a later
 *     process with the same pid by its start time) opened since its last
 *     successful save of it; with none remembered, what spec.json shows now.
 *     The oldest, not the latest: vim re-reads the file to make its backup
 *     just before writing.  An older base can only add a refusal (EBUSY for
 *     a field someone changed since), never a silent overwrite.  After such
 *     a refusal the process starts afresh: what it reads next (vim's :e!)
 *     is what its next save is compared with.
 * What each process read is remembered in fs_readers.c.
 */
#include "fs_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "primehubfs/log.h"
#include "primehubfs/spec.h"

/* ---- the write buffer ---- */

static int buf_reserve(struct phfs_handle *h, size_t want)
{
	size_t cap = h->buf_cap ? h->buf_cap : 4096;
	char *p;

	if (want <= h->buf_cap)
		return 0;
	while (cap < want)
		cap *= 2;
	p = realloc(h->buf, cap);
	if (!p)
		return -ENOMEM;
	h->buf = p;
	h->buf_cap = cap;
	return 0;
}

static int buf_set(struct phfs_handle *h, const char *text, size_t len)
{
	int ret = buf_reserve(h, len + 1);

	if (ret < 0)
		return ret;
	memcpy(h->buf, text, len);
	h->buf_len = len;
	return 0;
}

static char *dup_bytes(const char *src, size_t len)
{
	char *p = malloc(len + 1);

	if (p) {
		memcpy(p, src, len);
		p[len] = '\0';
	}
	return p;
}

int phfs_open_spec(struct phfs *fs, struct phfs_handle *h, int flags)
{
	struct snapshot *snap;
	const struct snap_image *e;
	char *tmpl = NULL;
	const char *text;
	size_t len = 0;
	int ret;

	/* A reader gets the version the kernel's caches describe (held while
	 * a refresh is being told); a writer starts from the newest. */
	ret = (flags & O_ACCMODE) == O_RDONLY ? phfs_snapshot_shown(fs, h->node.image, &snap)
	                                      : phfs_snapshot(fs, &snap);
	if (ret < 0)
		return ret;
	e = snapshot_find(snap, h->node.image);
	if (e && snap_image_texts(e)) {
		h->entry = snap_image_get(e); /* keeps the texts alive */
		text = snap_image_texts(e)->spec;
		len = snap_image_texts(e)->spec_len;
	} else if (e) {
		ret = -ENOMEM;
	} else if (staging_pending_exists(fs->staging, h->node.image)) {
		tmpl = spec_render_template(h->node.image, &len);
		text = tmpl;
		h->pending = true;
		if (!tmpl)
			ret = -ENOMEM;
	} else {
		ret = -ENOENT;
	}
	snapshot_put(snap);
	if (ret < 0)
		return ret;

	/* What this process has seen of the image, for its later saves. */
	if (h->entry && !(flags & O_TRUNC))
		phfs_reader_note(fs, h->node.image, h->entry, false);
	/* A writer is about to change this version: keep it (undo). */
	if (h->entry)
		phfs_history_keep(fs, h->node.image, text, len, (flags & O_ACCMODE) != O_RDONLY);

	if ((flags & O_ACCMODE) == O_RDONLY) {
		if (tmpl) {
			h->own_text = tmpl;
			h->ro_text = tmpl;
		} else {
			h->ro_text = text;
		}
		h->ro_len = len;
		return 0;
	}
	/* Writable: remember what the writer starts from (the diff base and
	 * the conflict check), and start the buffer from it unless O_TRUNC.
	 * With O_TRUNC the new text was made from what this process read
	 * before, if it did (see the top of the file). */
	h->writable = true;
	ret = 0;
	if ((flags & O_TRUNC) && h->entry)
		ret = phfs_reader_seen_text(fs, h->node.image, &h->base, &h->base_len);
	else if (h->entry && (flags & O_ACCMODE) == O_WRONLY)
		/* Write-only: whatever it writes was read before, elsewhere.
		 * (O_RDWR may read through this handle: its base is what it
		 * opened.) */
		ret = phfs_reader_seen_text(fs, h->node.image, &h->seen, &h->seen_len);
	if (h->seen && h->seen_len == len && memcmp(h->seen, text, len) == 0) {
		free(h->seen); /* what it read is what it opens: nothing to switch to */
		h->seen = NULL;
	}
	if (ret == 0 && !h->base) {
		h->base = dup_bytes(text, len);
		h->base_len = len;
	}
	if (ret == 0)
		ret = h->base
		          ? buf_set(h, (flags & O_TRUNC) ? "" : text, (flags & O_TRUNC) ? 0 : len)
		          : -ENOMEM;
	free(tmpl);
	return ret;
}

int phfs_spec_write(struct phfs_handle *h, const char *buf, size_t size, off_t off)
{
	size_t end = (size_t)off + size;
	int ret;

	if (off < 0)
		return -EINVAL;
	/* Refuse at once rather than after buffering a huge file: the limit
	 * is PrimeHub's, spec.json will never legitimately be this big. */
	if (end > SPEC_MAX_SIZE) {
		/* The writer may not look at write's result (a short write is
		 * not an error to many programs): close must say it too. */
		pthread_mutex_lock(&h->lock);
		h->too_big = true;
		h->dirty = true;
		pthread_mutex_unlock(&h->lock);
		return -EFBIG;
	}
	pthread_mutex_lock(&h->lock);
	ret = buf_reserve(h, end + 1);
	if (ret == 0) {
		if ((size_t)off > h->buf_len)
			memset(h->buf + h->buf_len, 0, (size_t)off - h->buf_len); /* a hole */
		memcpy(h->buf + off, buf, size);
		if (end > h->buf_len)
			h->buf_len = end;
		h->dirty = true;
		h->wrote = true;
		ret = (int)size;
	}
	pthread_mutex_unlock(&h->lock);
	return ret;
}

int phfs_spec_truncate(struct phfs_handle *h, off_t size)
{
	int ret = 0;

	if (size < 0)
		return -EINVAL;
	if ((size_t)size > SPEC_MAX_SIZE)
		return -EFBIG;
	pthread_mutex_lock(&h->lock);
	h->too_big = false; /* truncating starts the content anew */
	if ((size_t)size > h->buf_len) {
		ret = buf_reserve(h, (size_t)size + 1);
		if (ret == 0)
			memset(h->buf + h->buf_len, 0, (size_t)size - h->buf_len);
	}
	if (ret == 0) {
		/* A truncate alone is not a save, but it is a change: vim's
		 * backupcopy=yes truncates, writes, then fsyncs. */
		h->buf_len = (size_t)size;
		h->dirty = true;
	}
	if (ret == 0 && size == 0 && !h->wrote && h->seen) {
		/* Emptied before the first write: a whole new text, made from
		 * what the process read before, as with O_TRUNC. */
		free(h->base);
		h->base = h->seen;
		h->base_len = h->seen_len;
		h->seen = NULL;
	}
	pthread_mutex_unlock(&h->lock);
	return ret;
}

/* ---- the commit ---- */

/* A copy of the spec.json the snapshot shows for image: what a writer who
 * did not open spec.json saw, and what a writer builds on after a save.
 * *text stays NULL (and 0 is returned) for an image the snapshot lacks. */
static int shown_spec_copy(struct phfs *fs, const char *image, char **text, size_t *len)
{
	const struct snap_image *e;
	const struct snap_texts *tx;
	struct snapshot *snap;
	int ret;

	*text = NULL;
	*len = 0;
	ret = phfs_snapshot(fs, &snap);
	if (ret < 0)
		return ret;
	e = snapshot_find(snap, image);
	tx = e ? snap_image_texts(e) : NULL;
	if (e && !tx)
		ret = -ENOMEM;
	if (tx) {
		*text = dup_bytes(tx->spec, tx->spec_len);
		*len = tx->spec_len;
		if (!*text)
			ret = -ENOMEM;
	}
	snapshot_put(snap);
	return ret;
}

static void keep_rejected(struct phfs *fs, const char *image, const char *text, size_t len,
                          const struct ph_err *err)
{
	char what[TREE_NAME_MAX + 16];

	snprintf(what, sizeof(what), "%s/spec.json", image);
	if (staging_set_rejected(fs->staging, image, text, len) < 0) {
		struct ph_err more = *err;

		/* Scratch files fill the memory drafts share with them. */
		snprintf(more.msg, sizeof(more.msg),
		         "%.380s (the text was not kept: scratch files "
		         "of this mount fill the memory refused drafts share with them)",
		         err->msg);
		phfs_refuse(fs, image, what, &more);
		return;
	}
	phfs_refuse(fs, image, what, err);
}

static void saved(struct phfs *fs, const char *image)
{
	staging_clear_rejected(fs->staging, image);
	phfs_succeeded(fs, image);
}

/*
 * createImage said the name is taken.  PrimeHub makes the image's Keycloak
 * role (img:NAME) before the Kubernetes object and does not remove it when
 * Kubernetes rejects the object, so a failed create elsewhere (the web UI,
 * the CLI, an old client) can leave the name held by a role while no image
 * NAME exists; every later create then answers "Resource already exist".
 * Tell which case this is, and what an administrator can do.
 */
static int explain_taken_name(struct phfs *fs, const char *image, struct ph_err *err)
{
	struct ph_image *now = NULL;
	struct ph_err look = {0};
	char cause[sizeof(err->msg)];

	snprintf(cause, sizeof(cause), "%s", err->msg);
	if (ph_get_image(fs->api, image, &now, &look) < 0)
		return -EEXIST; /* keep the server's words */
	if (now) {
		ph_image_free(now);
		store_invalidate(fs->store);
		return ph_err_set(
		    err, EEXIST, NULL,
		    "an image named %s already exists on PrimeHub (made after this "
		    "directory was, by someone else); your text is kept in "
		    "spec.json.rejected: rmdir this directory to see that image, or mkdir "
		    "another name",
		    image);
	}
	return ph_err_set(err, EEXIST, NULL,
	                  "PrimeHub refused the name %s although no image has it (%s): the name is "
	                  "held by a role img:%s left in Keycloak by an earlier create that "
	                  "Kubernetes rejected; an administrator can delete that role in Keycloak "
	                  "(the PrimeHub realm's roles) and save again, or use another name",
	                  image, cause, image);
}

/* What a createImage sets, for /.changes: type, url and groups. */
static void describe_create(const struct ph_image_input *in, const struct ph_strlist *names,
                            char *out, size_t size)
{
	const char *url = in->image_spec ? in->image_spec->base_image : in->url;
	size_t n;

	/* Quoted plainly: phfs_change escapes the line. */
	n = (size_t)snprintf(out, size, "type: '%.20s'; %s: '%.100s'; global: %s",
	                     in->type ? in->type : "",
	                     in->image_spec ? "imageSpec.baseImage" : "url", url ? url : "",
	                     in->global ? "true" : "false");
	for (size_t i = 0; i < names->n && n < size; i++)
		n += (size_t)snprintf(out + n, size - n, "%s%s", i ? ", +" : "; groups: +",
		                      names->items[i]);
}

/* createImage failed with its answer lost: never resend it (a second create
 * would fail with "already exists" forever).  Look the name up: when the
 * image is there, adopt it, so the directory's later saves are updates;
 * groups staged for it that PrimeHub did not connect are named in .error. */
static int settle_lost_create(struct phfs *fs, const char *image, const struct ph_image_input *in,
                              const struct ph_strlist *names, struct ph_image **created,
                              char *remark, size_t remark_size, struct ph_err *err)
{
	struct ph_image *now = NULL;
	char missing[400] = "";
	size_t used = 0;
	int ret;

	ret = phfs_reread_after_lost(fs, image, "creation", err, &now);
	if (ret < 0)
		return ret;
	if (!now)
		return phfs_lost_not_applied(err, "creation", true);
	for (size_t i = 0; i < in->connect.n; i++) {
		if (ph_image_has_group(now, in->connect.items[i]) || used >= sizeof(missing) - 1)
			continue;
		used += (size_t)snprintf(missing + used, sizeof(missing) - used, "%s%s",
		                         used ? ", " : "",
		                         i < names->n ? names->items[i] : in->connect.items[i]);
	}
	log_info("creating image %s: the answer was lost but PrimeHub created it; this directory "
	         "is that image now",
	         image);
	if (missing[0])
		snprintf(remark, remark_size,
		         "the image was created (its answer was lost) but these groups were not "
		         "connected: %s; touch %s/groups/NAME connects one",
		         missing, image);
	ph_image_free(*created);
	*created = now;
	return 0;
}

/* "description, url, rebuild": what a save changed, for its log line. */
static void changed_fields(const struct spec_update *plan, char *out, size_t size)
{
	static const struct {
		unsigned bit;
		const char *name;
	} names[] = {
	    {PH_IN_NAME, "name"},
	    {PH_IN_DISPLAY_NAME, "displayName"},
	    {PH_IN_DESCRIPTION, "description"},
	    {PH_IN_TYPE, "type"},
	    {PH_IN_URL, "url"},
	    {PH_IN_URL_FOR_GPU, "urlForGpu"},
	    {PH_IN_GLOBAL, "global"},
	    {PH_IN_USE_IMAGE_PULL_SECRET, "useImagePullSecret"},
	    {PH_IN_GROUP_NAME, "groupName"},
	    {PH_IN_IMAGE_SPEC, "imageSpec"},
	};
	size_t n = 0;

	out[0] = '\0';
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if ((plan->changed | plan->input.set) & names[i].bit)
			n += (size_t)snprintf(out + n, n < size ? size - n : 0, "%s%s",
			                      n ? ", " : "", names[i].name);
	if (plan->rebuild)
		n += (size_t)snprintf(out + n, n < size ? size - n : 0, "%srebuild", n ? ", " : "");
	if (plan->cancel_build)
		n += (size_t)snprintf(out + n, n < size ? size - n : 0, "%scancel build",
		                      n ? ", " : "");
}

/* The pull secrets into ctx, for a plan that has to check one (it asked with
 * -EAGAIN); *cat holds them until the caller's catalog_put. */
static int list_pull_secrets(struct phfs *fs, struct spec_context *ctx, struct catalog_data **cat,
                             struct ph_err *err)
{
	int ret = catalog_get(fs->catalog, -1, cat, err);

	if (ret < 0) {
		*cat = NULL;
		ph_err_prefix(err, "cannot list the pull secrets to check the one given: ");
		return ret;
	}
	ctx->secrets = (*cat)->secrets;
	ctx->nsecrets = (*cat)->nsecrets;
	ctx->secrets_unknown = false;
	return 0;
}

/* createImage for a pending directory, with the groups staged in it. */
static int commit_create(struct phfs *fs, const char *image, const char *text, size_t len,
                         char *remark, size_t remark_size, struct ph_err *err)
{
	struct spec_context ctx = {.dir_name = image, .secrets_unknown = true};
	struct ph_image_input in = {0};
	struct ph_strlist names = {0};
	struct ph_image *created = NULL;
	struct catalog_data *cat = NULL;
	int ret;

	ret = spec_plan_create(text, len, &ctx, &in, err);
	if (ret == -EAGAIN && (ret = list_pull_secrets(fs, &ctx, &cat, err)) == 0)
		ret = spec_plan_create(text, len, &ctx, &in, err);
	catalog_put(cat);
	if (ret == 0) {
		char missing[400];

		/* A copy from another server brought groups this one lacks:
		 * make nothing rather than an image without them. */
		if (staging_pending_missing(fs->staging, image, missing, sizeof(missing)))
			ret =
			    ph_err_set(err, ENOENT, NULL,
			               "groups/ was given group(s) this server does not have: %s; "
			               "nothing was created; make the group(s) on this server, or "
			               "rmdir %s and copy again without them",
			               missing, image);
	}
	if (ret == 0)
		ret = staging_pending_groups(fs->staging, image, &in.connect, &names);
	if (ret == 0)
		ret = ph_create_image(fs->api, &in, &created, err);
	if (ret == -EEXIST && !err->maybe_applied)
		ret = explain_taken_name(fs, image, err);
	if (ret < 0 && err->maybe_applied)
		ret =
		    settle_lost_create(fs, image, &in, &names, &created, remark, remark_size, err);
	if (in.set) { /* planned, so sent (or, in a dry run, described) */
		char detail[600];

		describe_create(&in, &names, detail, sizeof(detail));
		phfs_change(fs, image, "createImage", detail, ret, err);
	}
	ph_image_input_clear(&in);
	ph_strlist_free(&names);
	if (ret < 0) {
		/* A create can fail half-way (the image made, a group connect
		 * refused): look again rather than assume nothing happened. */
		if (ret != -EINVAL && ret != -EFBIG)
			store_invalidate(fs->store);
		return ret;
	}
	staging_pending_remove(fs->staging, image);
	{
		char caller[128];

		phfs_describe_caller(caller, sizeof(caller));
		log_info("created image %s (by %s): ok", image, caller);
	}
	return store_put_image(fs->store, created);
}

/* Plan a save against `current`.  The pull secrets are listed only when the
 * save sets one (catalog.h: listing them costs PrimeHub a request). */
static int plan_against(struct phfs *fs, const char *image, const char *text, size_t len,
                        const char *base, size_t base_len, const struct ph_image *current,
                        struct spec_update *plan, struct ph_err *err)
{
	struct spec_context ctx = {.dir_name = image, .secrets_unknown = true};
	struct catalog_data *cat = NULL;
	int ret;

	ret = spec_plan_update(base, base_len, text, len, current, &ctx, plan, err);
	if (ret == -EAGAIN && (ret = list_pull_secrets(fs, &ctx, &cat, err)) == 0)
		ret = spec_plan_update(base, base_len, text, len, current, &ctx, plan, err);
	catalog_put(cat);
	return ret;
}

/* ---- answers lost on the way back ---- */

static bool same_str(const char *a, const char *b)
{
	/* PrimeHub turns some nulls into "" and back: either means "none". */
	return strcmp(a ? a : "", b ? b : "") == 0;
}

/* Whether a and b agree on the fields `in` sets; with b NULL, whether a
 * holds the values `in` sets.  Groups `in` connects or disconnects count. */
static bool holds_fields(const struct ph_image *a, const struct ph_image *b,
                         const struct ph_image_input *in)
{
	unsigned s = in->set;

#define SAME(bit, field, value)                                                                    \
	if ((s & (bit)) && !same_str(a->field, b ? b->field : (value)))                            \
		return false;
	SAME(PH_IN_DISPLAY_NAME, display_name, in->display_name)
	SAME(PH_IN_DESCRIPTION, description, in->description)
	SAME(PH_IN_TYPE, type, in->type)
	SAME(PH_IN_URL, url, in->url)
	SAME(PH_IN_URL_FOR_GPU, url_for_gpu, in->url_for_gpu)
	SAME(PH_IN_USE_IMAGE_PULL_SECRET, use_image_pull_secret, in->use_image_pull_secret)
	SAME(PH_IN_GROUP_NAME, group_name, in->group_name)
#undef SAME
	if ((s & PH_IN_GLOBAL) && a->global != (b ? b->global : in->global))
		return false;
	for (size_t i = 0; i < in->connect.n; i++)
		if (ph_image_has_group(a, in->connect.items[i]) !=
		    (b ? ph_image_has_group(b, in->connect.items[i]) : true))
			return false;
	for (size_t i = 0; i < in->disconnect.n; i++)
		if (ph_image_has_group(a, in->disconnect.items[i]) !=
		    (b ? ph_image_has_group(b, in->disconnect.items[i]) : false))
			return false;
	return true;
}

static bool same_build(const struct ph_build_spec *a, const struct ph_build_spec *b)
{
	if (!a || !b)
		return a == b;
	return same_str(a->base_image, b->base_image) && same_str(a->pull_secret, b->pull_secret) &&
	       a->has_packages == b->has_packages && ph_strlist_equal(&a->apt, &b->apt) &&
	       ph_strlist_equal(&a->pip, &b->pip) && ph_strlist_equal(&a->conda, &b->conda);
}

enum save_step { STEP_UPDATE, STEP_REBUILD, STEP_CANCEL };

static const char *const step_what[] = {"save", "rebuild", "build cancel"};

/* Whether img holds what `step` of plan asked for (before == NULL) or
 * still what `before` held there. */
static bool step_holds(enum save_step step, const struct spec_update *plan,
                       const struct ph_image *img, const struct ph_image *before)
{
	switch (step) {
	case STEP_UPDATE:
		return holds_fields(img, before, &plan->input);
	case STEP_REBUILD:
		return same_build(img->image_spec, before ? before->image_spec : plan->rebuild);
	case STEP_CANCEL:
		return img->image_spec &&
		       img->image_spec->cancel ==
		           (before ? before->image_spec && before->image_spec->cancel : true);
	}
	return false;
}

/* A step of a save failed with err->maybe_applied: never resend it, re-read
 * the image and say what PrimeHub now holds.  0 with *result the image
 * when the step was applied; -EIO (the image re-read is published) when it
 * was not or cannot be told. */
static int settle_lost_step(struct phfs *fs, const char *image, enum save_step step,
                            const struct spec_update *plan, const struct ph_image *before,
                            struct ph_image **result, struct ph_err *err)
{
	struct ph_image *now = NULL;
	int ret;

	ret = phfs_reread_after_lost(fs, image, step_what[step], err, &now);
	if (ret < 0)
		return ret;
	if (!now)
		return ph_err_set(err, ENOENT, NULL, "image %s no longer exists on PrimeHub",
		                  image);
	if (step_holds(step, plan, now, NULL)) {
		log_info("%s of image %s: the answer was lost but PrimeHub applied the save",
		         step_what[step], image);
		ph_image_free(*result);
		*result = now;
		return 0;
	}
	if (step_holds(step, plan, now, before)) {
		ret = phfs_lost_not_applied(err, step_what[step], step == STEP_UPDATE);
	} else {
		char cause[sizeof(err->msg)];

		snprintf(cause, sizeof(cause), "%s", err->msg);
		ret =
		    ph_err_set(err, EIO, NULL,
		               "PrimeHub did not answer (%s); the image now holds neither what was "
		               "saved nor what it held before (changed by someone else "
		               "meanwhile?); the save was not sent again; cat spec.json shows what "
		               "it holds",
		               cause);
	}
	store_put_image(fs->store, now);
	return ret;
}

/* updateTime's second ("2026-12-01T10:00:00"): PrimeHub stamps it with
 * second precision. */
static bool same_update_second(const struct ph_image *a, const struct ph_image *b)
{
	const char *x = a && a->image_spec ? a->image_spec->update_time : NULL;
	const char *y = b && b->image_spec ? b->image_spec->update_time : NULL;

	return x && y && strlen(x) >= 19 && strncmp(x, y, 19) == 0;
}

/* Sleep ms, in slices, unless the mount is going away: false then. */
static bool wait_unless_stopping(struct phfs *fs, long ms)
{
	for (long left = ms; left > 0; left -= 50) {
		struct timespec slice = {0, (left < 50 ? left : 50) * 1000000L};

		if (__atomic_load_n(&fs->stopping, __ATOMIC_RELAXED))
			return false;
		nanosleep(&slice, NULL);
	}
	return !__atomic_load_n(&fs->stopping, __ATOMIC_RELAXED);
}

/*
 * rebuildImage, made to count.  PrimeHub's builder starts a build only when
 * imageSpec.updateTime is strictly later than its last job's, and PrimeHub
 * stamps updateTime to the second: a rebuild in the same second as the
 * build before it (a create, then a quick fix) would leave the server
 * showing the new imageSpec while the build used the old one.  So when the
 * answer's stamp is the second of `before`'s (what the server held just
 * before), wait until a second has passed since that answer (the server
 * stamped it before answering, so its next stamp is then strictly later)
 * and ask again.  A lost answer is never resent here (the caller settles).
 */
static int send_rebuild(struct phfs *fs, const char *image, const struct ph_build_spec *spec,
                        const struct ph_image *before, struct ph_image **result, struct ph_err *err)
{
	int ret = ph_rebuild_image(fs->api, image, spec, result, err);

	if (ret < 0 || !same_update_second(before, *result))
		return ret;
	log_info("rebuild of image %s: stamped in the same second as the build before it (%s), "
	         "which PrimeHub's builder would ignore; asking again after a second",
	         image, (*result)->image_spec->update_time);
	if (!wait_unless_stopping(fs, 1050))
		return ph_err_set(err, EIO, NULL, "primehubfs is shutting down");
	ph_image_free(*result);
	*result = NULL;
	ret = ph_rebuild_image(fs->api, image, spec, result, err);
	if (ret == 0 && same_update_second(before, *result))
		return ph_err_set(
		    err, EAGAIN, NULL,
		    "PrimeHub stamped the rebuild in the same second as the build "
		    "before it twice (is its clock stuck?); its builder will not start "
		    "it; touch %s/rebuild to try again",
		    image);
	return ret;
}

/* touch IMAGE/rebuild, under the image's lock. */
static int rebuild_locked(struct phfs *fs, const char *image, struct ph_err *err)
{
	struct ph_image *current = NULL, *result = NULL, *now = NULL;
	struct ph_build_spec *spec = NULL;
	int ret;

	ret = ph_get_image(fs->api, image, &current, err);
	if (ret < 0)
		return ret;
	if (!current) {
		ret = ph_err_set(err, ENOENT, NULL, "image %s no longer exists on PrimeHub", image);
		goto out;
	}
	/* rebuildImage on a plain image would quietly make it a custom build. */
	if (!current->image_spec) {
		ret = ph_err_set(err, EPERM, NULL,
		                 "image %s is not a custom build: there is nothing to rebuild",
		                 image);
		goto out;
	}
	if (ph_image_building(current, false)) {
		ret =
		    ph_err_set(err, EBUSY, NULL,
		               "a build of %s is under way (%s); wait for it to end, or cancel it "
		               "(\"cancel\": true in spec.json) and touch rebuild again",
		               image, current->job_phase);
		goto out;
	}
	spec = spec_build_input(current->image_spec);
	if (!spec) {
		ret = ph_err_set(err, ENOMEM, NULL, "out of memory");
		goto out;
	}
	ret = send_rebuild(fs, image, spec, current, &result, err);
	if (ret < 0 && err->maybe_applied) {
		/* Applied when the stamp moved on: the content is the same. */
		ret = phfs_reread_after_lost(fs, image, "rebuild", err, &now);
		if (ret == 0 && now && now->image_spec && current->image_spec->update_time &&
		    now->image_spec->update_time &&
		    strcmp(now->image_spec->update_time, current->image_spec->update_time) > 0) {
			log_info("rebuild of image %s: the answer was lost but PrimeHub applied it",
			         image);
			result = now;
			now = NULL;
		} else if (ret == 0) {
			ret = phfs_lost_not_applied(err, "rebuild", false);
			if (now) {
				store_put_image(fs->store, now);
				now = NULL;
			}
		}
	}
	phfs_change(fs, image, "rebuildImage", "(touch rebuild: the same imageSpec)", ret, err);
	if (ret == 0) {
		char caller[128];

		phfs_describe_caller(caller, sizeof(caller));
		log_info("rebuild of image %s (by %s): ok", image, caller);
		ret = store_put_image(fs->store, result);
		result = NULL;
	}
out:
	ph_build_spec_free(spec);
	ph_image_free(current);
	ph_image_free(result);
	ph_image_free(now);
	return ret;
}

int phfs_rebuild(struct phfs *fs, const struct node *node)
{
	struct ph_err err = {0};
	char what[TREE_NAME_MAX + 16];
	bool pending = false;
	struct snapshot *snap;
	int ret;

	snprintf(what, sizeof(what), "%s/" TREE_REBUILD_NAME, node->image);
	ret = phfs_snapshot(fs, &snap);
	if (ret < 0)
		return ret;
	if (!phfs_image_exists(fs, snap, node->image, &pending)) {
		snapshot_put(snap);
		return -ENOENT;
	}
	snapshot_put(snap);
	if (pending) {
		ph_err_set(&err, ENOENT, NULL,
		           "%s is not on PrimeHub yet: saving its spec.json creates and builds it",
		           node->image);
		phfs_refuse(fs, node->image, what, &err);
		return -ENOENT;
	}
	ret = phfs_image_lock(fs, node->image);
	if (ret < 0)
		return ret;
	ret = rebuild_locked(fs, node->image, &err);
	phfs_image_unlock(fs, node->image);
	if (ret < 0) {
		if (!err.msg[0])
			ph_err_set(&err, -ret, NULL, "%s", strerror(-ret));
		phfs_refuse(fs, node->image, what, &err);
	} else {
		phfs_succeeded(fs, node->image);
		phfs_expect_build(fs, node->image);
	}
	return phfs_user_error(ret);
}

/* updateImage / rebuildImage / cancelImageBuild for an existing image. */
static int commit_update(struct phfs *fs, const char *image, const char *text, size_t len,
                         const char *base, size_t base_len, struct ph_err *err)
{
	struct spec_update plan = {0};
	struct ph_image *current = NULL, *result = NULL;
	struct snapshot *snap;
	const struct snap_image *e;
	char ops[64] = ""; /* what was sent, for /.changes */
	int ret;

	/* First against the snapshot: bad content and unchanged content are
	 * decided without a single request. */
	ret = phfs_snapshot(fs, &snap);
	if (ret < 0)
		return ph_err_set(err, -ret, NULL, "cannot reach PrimeHub");
	e = snapshot_find(snap, image);
	ret = e ? plan_against(fs, image, text, len, base, base_len, e->img, &plan, err)
	        : ph_err_set(err, ENOENT, NULL, "image %s no longer exists on PrimeHub", image);
	snapshot_put(snap);
	if (ret < 0 || spec_update_empty(&plan))
		goto out;
	spec_update_clear(&plan);

	/* Then against what the server holds now, not a snapshot up to ttl
	 * old: this is what catches someone else's concurrent change, and
	 * what the values PrimeHub needs re-sent are taken from. */
	ret = ph_get_image(fs->api, image, &current, err);
	if (ret < 0)
		goto out;
	if (!current) {
		ret = ph_err_set(err, ENOENT, NULL, "image %s no longer exists on PrimeHub", image);
		goto out;
	}
	ret = plan_against(fs, image, text, len, base, base_len, current, &plan, err);
	if (ret < 0)
		goto out;
	if (spec_update_empty(&plan)) {
		/* Someone already made the same change: nothing to send. */
		ret = store_put_image(fs->store, current);
		current = NULL;
		goto out;
	}
	if (plan.input.set) {
		strcat(ops, "updateImage");
		ret = ph_update_image(fs->api, image, &plan.input, &result, err);
		if (ret < 0 && err->maybe_applied)
			ret =
			    settle_lost_step(fs, image, STEP_UPDATE, &plan, current, &result, err);
		if (ret < 0)
			goto partial;
	}
	if (plan.rebuild) {
		ph_image_free(result);
		result = NULL;
		strcat(ops, ops[0] ? "+rebuildImage" : "rebuildImage");
		ret = send_rebuild(fs, image, plan.rebuild, current, &result, err);
		if (ret < 0 && err->maybe_applied)
			ret =
			    settle_lost_step(fs, image, STEP_REBUILD, &plan, current, &result, err);
		if (ret < 0)
			goto partial;
	}
	if (plan.cancel_build) {
		ph_image_free(result);
		result = NULL;
		strcat(ops, ops[0] ? "+cancelImageBuild" : "cancelImageBuild");
		ret = ph_cancel_image_build(fs->api, image, &result, err);
		if (ret < 0 && err->maybe_applied)
			ret =
			    settle_lost_step(fs, image, STEP_CANCEL, &plan, current, &result, err);
		if (ret < 0)
			goto partial;
	}
	{
		char fields[256], caller[128];

		changed_fields(&plan, fields, sizeof(fields));
		phfs_describe_caller(caller, sizeof(caller));
		log_info("saved image %s: %s (by %s): ok", image, fields, caller);
	}
	ret = store_put_image(fs->store, result);
	result = NULL;
	goto out;
partial:
	/* Part of the save may have landed (PrimeHub applies a patch before a
	 * failing group step): the next look fetches the truth. */
	store_invalidate(fs->store);
out:
	if (ops[0]) {
		char detail[700];

		spec_describe_update(current, &plan, detail, sizeof(detail));
		phfs_change(fs, image, ops, detail, ret, err);
	}
	ph_image_free(current);
	ph_image_free(result);
	spec_update_clear(&plan);
	return ret;
}

int phfs_commit_text(struct phfs *fs, const char *image, const char *text, size_t len,
                     const char *base, size_t base_len)
{
	struct ph_err err = {0};
	char remark[600] = "";
	bool pending;
	int ret;

	/* One change of an image at a time: a second save waits for the
	 * first and is then compared with what the first left, so two
	 * writers of one mount cannot both "win" (EBUSY for the later). */
	ret = phfs_image_lock(fs, image);
	if (ret < 0)
		return ret;
	pending = staging_pending_exists(fs->staging, image);
	ret = pending ? commit_create(fs, image, text, len, remark, sizeof(remark), &err)
	              : commit_update(fs, image, text, len, base, base_len, &err);
	/* The notes too, under the lock: a later save's refusal must not be
	 * wiped by this one's success. */
	if (ret < 0) {
		if (!err.msg[0])
			ph_err_set(&err, -ret, NULL, "%s", strerror(-ret));
		keep_rejected(fs, image, text, len, &err);
		if (ret == -EBUSY)
			phfs_reader_drop(fs, image);
		phfs_image_unlock(fs, image);
		return phfs_user_error(ret);
	}
	/* Right after publishing, before anyone else's change of it. */
	phfs_reader_saved(fs, image);
	saved(fs, image);
	phfs_expect_build(fs, image); /* a custom image's create or rebuild */
	{
		char *now;
		size_t now_len;

		if (shown_spec_copy(fs, image, &now, &now_len) == 0 && now) {
			phfs_history_keep(fs, image, now, now_len, true);
			free(now);
		}
	}
	if (remark[0]) {
		char what[TREE_NAME_MAX + 16];

		snprintf(what, sizeof(what), "%s/spec.json", image);
		phfs_remark(fs, image, what, remark);
	}
	phfs_image_unlock(fs, image);
	return 0;
}

int phfs_spec_commit(struct phfs *fs, struct phfs_handle *h)
{
	char *text, *base;
	size_t len, base_len;
	int ret;

	pthread_mutex_lock(&h->lock);
	if (!h->dirty) {
		pthread_mutex_unlock(&h->lock);
		return 0;
	}
	/* Take the text out of the handle so no lock is held over the
	 * network; a write racing this commit makes the handle dirty again. */
	text = dup_bytes(h->buf ? h->buf : "", h->buf_len);
	len = h->buf_len;
	/* The base too: another flush of this handle (a dup'd descriptor) may
	 * replace it meanwhile. */
	base = dup_bytes(h->base ? h->base : "", h->base_len);
	base_len = h->base_len;
	h->dirty = false;
	if (h->too_big) {
		struct ph_err err;

		h->too_big = false;
		pthread_mutex_unlock(&h->lock);
		ph_err_set(&err, EFBIG, NULL, "spec.json is limited to %d bytes; nothing was sent",
		           SPEC_MAX_SIZE);
		if (text)
			keep_rejected(fs, h->node.image, text, len, &err);
		free(text);
		free(base);
		return -EFBIG;
	}
	pthread_mutex_unlock(&h->lock);
	if (!text || !base) {
		free(text);
		free(base);
		return -ENOMEM;
	}

	ret = phfs_commit_text(fs, h->node.image, text, len, base, base_len);
	free(text);
	free(base);
	if (ret < 0)
		return ret;

	/* Saved: what this writer now builds on is what PrimeHub holds. */
	if (shown_spec_copy(fs, h->node.image, &base, &base_len) == 0 && base) {
		pthread_mutex_lock(&h->lock);
		free(h->base);
		h->base = base;
		h->base_len = base_len;
		h->pending = false;
		pthread_mutex_unlock(&h->lock);
	}
	return 0;
}

/* rename(scratch -> spec.json): the save of write-to-temp-then-rename
 * editors (sed -i, os.replace, gedit).  On success the scratch file is gone,
 * as rename promises; on refusal rename fails and the scratch file stays. */
int phfs_rename_onto_spec(struct phfs *fs, const struct node *from, const struct node *to)
{
	struct scratch *s;
	char *text = NULL, *base = NULL;
	size_t len = 0, base_len = 0;
	int ret;

	ret = staging_scratch_open(fs->staging, from->image, from->leaf, &s);
	if (ret < 0)
		return ret;
	ret = scratch_copy(s, &text, &len);
	scratch_put(s);
	if (ret < 0)
		return ret;
	/* The writer's base is the version it read (sed -i read spec.json
	 * before writing its temp file), else what spec.json shows now; none
	 * for a pending image: its save is a create. */
	ret = phfs_reader_seen_text(fs, to->image, &base, &base_len);
	if (ret == 0 && !base)
		ret = shown_spec_copy(fs, to->image, &base, &base_len);
	if (ret == 0)
		ret = phfs_commit_text(fs, to->image, text, len, base, base_len);
	if (ret == 0)
		staging_scratch_unlink(fs->staging, from->image, from->leaf);
	free(text);
	free(base);
	return ret;
}

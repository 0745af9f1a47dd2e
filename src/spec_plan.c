/*
 * spec_plan.c - a saved spec.json -> the PrimeHub calls that apply it.
 *
 * An update is planned from three versions: `base` (what the writer opened,
 * rendered by us), `text` (what they saved) and `current` (the server now).
 * Only what differs between base and text is sent and checked, so a save
 * of what `cat` showed always succeeds, even when the server holds values
 * our rules would refuse.  A field the user changed that the server also
 * changed is refused (EBUSY) rather than overwritten.  The update then works
 * around PrimeHub's update quirks (docs/primehub-facts.md) so that it never
 * destroys what the user did not touch.
 */
#include "spec_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "primehubfs/json_text.h"

/* The string keys of spec.json that updateImage can send. */
struct str_field {
	const char *key;
	unsigned bit;
	size_t doc_off; /* const char * in struct spec_doc */
	size_t in_off;  /* char * in struct ph_image_input */
	bool url;       /* PrimeHub treats "" like null for it (urls, the pull secret) */
};

#define STR_FIELD(key, bit, doc, in, url)                                                          \
	{                                                                                          \
		key, bit, offsetof(struct spec_doc, doc), offsetof(struct ph_image_input, in), url \
	}

static const struct str_field str_fields[] = {
    STR_FIELD("displayName", PH_IN_DISPLAY_NAME, display_name, display_name, false),
    STR_FIELD("description", PH_IN_DESCRIPTION, description, description, false),
    STR_FIELD("type", PH_IN_TYPE, type, type, false),
    STR_FIELD("url", PH_IN_URL, url, url, true),
    STR_FIELD("urlForGpu", PH_IN_URL_FOR_GPU, url_for_gpu, url_for_gpu, true),
    STR_FIELD("useImagePullSecret", PH_IN_USE_IMAGE_PULL_SECRET, pull_secret, use_image_pull_secret,
              true),
};
#define NSTR_FIELDS (sizeof(str_fields) / sizeof(str_fields[0]))

static const char *doc_str(const struct spec_doc *d, const struct str_field *f)
{
	return *(const char *const *)(const void *)((const char *)d + f->doc_off);
}

static char **input_str(struct ph_image_input *in, const struct str_field *f)
{
	return (char **)(void *)((char *)in + f->in_off);
}

static const char *input_cstr(const struct ph_image_input *in, const struct str_field *f)
{
	return *(const char *const *)(const void *)((const char *)in + f->in_off);
}

static bool empty(const char *s)
{
	return !s || !*s;
}

static bool is_both(const char *type)
{
	return type && strcmp(type, "both") == 0;
}

static bool field_eq(const struct str_field *f, const char *a, const char *b)
{
	if (f->url && empty(a) && empty(b))
		return true;
	return spec_streq(a, b);
}

bool spec_update_empty(const struct spec_update *u)
{
	return !u || (u->input.set == 0 && !u->rebuild && !u->cancel_build);
}

void spec_update_clear(struct spec_update *u)
{
	if (!u)
		return;
	ph_image_input_clear(&u->input);
	ph_build_spec_free(u->rebuild);
	memset(u, 0, sizeof(*u));
}

/* `name` may be left out or null; if given it must be the directory's. */
static int check_name(const char *name, const char *dir, bool create, struct ph_err *err)
{
	char q1[96], q2[96];

	if (!name || (dir && strcmp(name, dir) == 0))
		return 0;
	/* A new image's name is its directory's: a spec.json copied in from
	 * another image (cp -r A B, promotion to another server, a restore)
	 * creates the image the directory names.  A name no image could have
	 * is still refused. */
	if (create)
		return spec_check_image_name(name, err) ? -EINVAL : 0;
	jt_quote(q1, sizeof(q1), name, 60);
	jt_quote(q2, sizeof(q2), dir, 60);
	return ph_err_set(err, EINVAL, "name",
	                  "name %s differs from this image's name %s; names cannot change (mkdir a "
	                  "new image instead)",
	                  q1, q2);
}

/*
 * urlForGpu on a non-"both" image is not stored as sent: PrimeHub sets it
 * to the url.  Refuse a value that would silently not stick.
 */
static int check_gpu_follows_url(const char *type, const char *url, const char *gpu, bool create,
                                 struct ph_err *err)
{
	char qt[64];

	if (is_both(type) || spec_streq(gpu, url))
		return 0;
	jt_quote(qt, sizeof(qt), type, 20);
	return ph_err_set(
	    err, EINVAL, "urlForGpu",
	    "urlForGpu differs from url on an image of type %s, where PrimeHub always "
	    "sets urlForGpu to the url; set it equal to url, %s, or use type \"both\"",
	    qt, create ? "leave it out" : "leave it unchanged");
}

/* The url, urlForGpu and pull secret rules, on the fields in *changed (see
 * spec.h).  Drops the bit of a change that has no effect on the server
 * ("" <-> null on a url: PrimeHub reads both as "keep"). */
static int check_update(const struct spec_doc *b, const struct spec_doc *t,
                        const struct ph_image *cur, const struct spec_context *ctx,
                        unsigned *changed, struct ph_err *err)
{
	const char *new_type, *new_url;
	int r;

	if (t->image_spec && (t->url || t->url_for_gpu))
		return ph_err_set(err, EINVAL, t->url ? "url" : "urlForGpu",
		                  "imageSpec cannot use with url and urlForGpu");
	if (*changed & PH_IN_URL) {
		if (empty(t->url) && empty(b->url)) {
			*changed &= ~(unsigned)PH_IN_URL;
		} else if (empty(t->url)) {
			return ph_err_set(err, EINVAL, "url",
			                  "url cannot be removed; set another image reference");
		} else {
			r = spec_check_image_ref("url", t->url, err);
			if (r)
				return r;
		}
	}
	new_type = (*changed & PH_IN_TYPE) ? t->type : cur->type;
	new_url = (*changed & PH_IN_URL) ? t->url : cur->url;
	if (*changed & PH_IN_URL_FOR_GPU) {
		if (empty(t->url_for_gpu) && empty(b->url_for_gpu)) {
			*changed &= ~(unsigned)PH_IN_URL_FOR_GPU;
		} else {
			if (!empty(t->url_for_gpu)) {
				r = spec_check_image_ref("urlForGpu", t->url_for_gpu, err);
				if (r)
					return r;
			}
			r = check_gpu_follows_url(new_type, new_url, t->url_for_gpu, false, err);
			if (r)
				return r;
			if (empty(t->url_for_gpu))
				return ph_err_set(err, EINVAL, "urlForGpu",
				                  "urlForGpu cannot be removed; set an image "
				                  "reference (the same as url to use one image for "
				                  "both)");
		}
	}
	/* A new type other than "both" makes PrimeHub set urlForGpu to the url
	 * whatever is sent, and going back to "both" does not restore it: the
	 * file's urlForGpu must be what the server will hold (fill_update sends
	 * it when going to "both").  A custom build's urls are the builder's. */
	if ((*changed & PH_IN_TYPE) && !(*changed & PH_IN_URL_FOR_GPU) && !t->image_spec &&
	    !is_both(new_type) && !empty(t->url_for_gpu) && !spec_streq(t->url_for_gpu, new_url)) {
		char qt[64], qu[160];

		jt_quote(qt, sizeof(qt), new_type, 20);
		jt_quote(qu, sizeof(qu), new_url, 120);
		return ph_err_set(err, EINVAL, "urlForGpu",
		                  "changing type to %s makes PrimeHub set urlForGpu to the url, so "
		                  "this file's urlForGpu would be lost; set urlForGpu to %s in the "
		                  "same save",
		                  qt, qu);
	}
	/* Already what the server holds (the builder set it after the writer's
	 * base was read, and the writer kept what it saw): nothing to check or
	 * send; the update re-sends it anyway. */
	if ((*changed & PH_IN_USE_IMAGE_PULL_SECRET) &&
	    ((empty(t->pull_secret) && empty(cur->use_image_pull_secret)) ||
	     spec_streq(t->pull_secret, cur->use_image_pull_secret)))
		*changed &= ~(unsigned)PH_IN_USE_IMAGE_PULL_SECRET;
	if (*changed & PH_IN_USE_IMAGE_PULL_SECRET)
		return spec_check_pull_secret("useImagePullSecret", t->pull_secret, ctx, err);
	return 0;
}

static int check_type_change(const struct spec_doc *t, unsigned changed, struct ph_err *err)
{
	if (!(changed & PH_IN_TYPE))
		return 0;
	if (!t->type)
		return ph_err_set(err, EINVAL, "type",
		                  "type cannot be removed; type should be one of ['cpu', 'gpu', "
		                  "'both']");
	return spec_check_type(t->type, err);
}

/* imageSpec: the custom build's recipe, changed through rebuild/cancel. */
static int check_build_change(const struct spec_doc *b, const struct spec_doc *t,
                              const struct spec_context *ctx, bool *content, bool *cancel,
                              struct ph_err *err)
{
	*content = *cancel = false;
	if (b->image_spec && !t->image_spec)
		return ph_err_set(err, EINVAL, "imageSpec",
		                  "imageSpec cannot be removed: a custom-build image stays one "
		                  "(delete it and create a plain image instead)");
	if (!b->image_spec && t->image_spec)
		return ph_err_set(err, EINVAL, "imageSpec",
		                  "imageSpec cannot be added to an existing image; create a new "
		                  "image (mkdir) with imageSpec for a custom build");
	if (!t->image_spec)
		return 0;
	*content = !spec_build_content_equal(b->image_spec, t->image_spec);
	*cancel = b->image_spec->cancel != t->image_spec->cancel;
	if (*cancel && t->image_spec->cancel && *content)
		return ph_err_set(err, EINVAL, "imageSpec.cancel",
		                  "cancel the build or change the imageSpec, not both in one save: "
		                  "save \"cancel\": true alone first");
	if (*cancel && !t->image_spec->cancel && !*content)
		return ph_err_set(err, EINVAL, "imageSpec.cancel",
		                  "a cancelled build cannot be resumed by setting cancel to false; "
		                  "change baseImage, pullSecret or packages to build again");
	if (*content)
		return spec_check_build_spec(t->image_spec, b->image_spec, false, NULL, ctx, err);
	return 0;
}

static int conflict(const char *field, const char *server_value, bool show, struct ph_err *err)
{
	char q[96] = "";

	if (show)
		jt_quote(q, sizeof(q), server_value, 60);
	return ph_err_set(err, EBUSY, field,
	                  "%s was changed on the server since you opened the file%s%s%s; open "
	                  "spec.json again and redo your change",
	                  field, show ? " (it is now " : "", q, show ? ")" : "");
}

static int check_conflicts(const struct spec_doc *b, const struct spec_doc *t,
                           const struct spec_doc *c, unsigned changed, bool content, bool cancel,
                           struct ph_err *err)
{
	for (size_t i = 0; i < NSTR_FIELDS; i++) {
		const struct str_field *f = &str_fields[i];
		const char *cv = doc_str(c, f);

		if ((changed & f->bit) && !field_eq(f, cv, doc_str(b, f)) &&
		    !field_eq(f, cv, doc_str(t, f)))
			return conflict(f->key, cv, true, err);
	}
	/* global is a boolean: if the server differs from base it equals text. */
	if (content && !spec_build_content_equal(c->image_spec, b->image_spec) &&
	    !spec_build_content_equal(c->image_spec, t->image_spec))
		return conflict("imageSpec", NULL, false, err);
	if (cancel && t->image_spec->cancel && !c->image_spec)
		return conflict("imageSpec", NULL, false, err);
	return 0;
}

static int dup_into(char **dst, const char *src, struct ph_err *err)
{
	if (!ph_strdup_opt(dst, src))
		return ph_err_set(err, ENOMEM, NULL, "out of memory planning the update");
	return 0;
}

/* A build spec as rebuildImage/createImage take it: every list sent (so a
 * list left out cannot keep stale server values), cancel false. */
struct ph_build_spec *spec_build_input(const struct ph_build_spec *bs)
{
	struct ph_build_spec *d = ph_build_spec_dup(bs);

	if (d) {
		d->has_packages = true;
		d->cancel = false;
		free(d->update_time);
		d->update_time = NULL;
	}
	return d;
}

static int fill_update(const struct spec_doc *t, const struct ph_image *cur, unsigned send,
                       struct ph_image_input *in, struct ph_err *err)
{
	const char *new_type = (send & PH_IN_TYPE) ? t->type : cur->type;
	int r = 0;

	in->set = send;
	for (size_t i = 0; !r && i < NSTR_FIELDS; i++)
		if (send & str_fields[i].bit)
			r = dup_into(input_str(in, &str_fields[i]), doc_str(t, &str_fields[i]),
			             err);
	in->global = t->global;
	/* Going to "both", PrimeHub keeps the urlForGpu it holds (the url, if
	 * the image was cpu or gpu): send the file's, so the image is exactly
	 * what was saved. */
	if (!r && (send & PH_IN_TYPE) && !(send & PH_IN_URL_FOR_GPU) && is_both(new_type) &&
	    !t->image_spec && !empty(t->url_for_gpu)) {
		in->set |= PH_IN_URL_FOR_GPU;
		r = dup_into(&in->url_for_gpu, t->url_for_gpu, err);
	}
	/* A new url on a "both" image overwrites urlForGpu unless it is sent:
	 * keep the one the user left alone (the server's, which normally is
	 * what they saw; if someone changed it meanwhile, theirs survives). */
	if (!r && (send & PH_IN_URL) && !(in->set & PH_IN_URL_FOR_GPU) && is_both(new_type) &&
	    !empty(cur->url_for_gpu)) {
		in->set |= PH_IN_URL_FOR_GPU;
		r = dup_into(&in->url_for_gpu, cur->url_for_gpu, err);
	}
	/* updateImage clears these two unless they are sent again.  "" and
	 * NULL differ on the server, so "" is re-sent as ""; NULL is what
	 * leaving it out gives anyway. */
	if (!r && !(send & PH_IN_USE_IMAGE_PULL_SECRET) && cur->use_image_pull_secret) {
		in->set |= PH_IN_USE_IMAGE_PULL_SECRET;
		r = dup_into(&in->use_image_pull_secret, cur->use_image_pull_secret, err);
	}
	if (!r && cur->group_name) {
		in->set |= PH_IN_GROUP_NAME;
		r = dup_into(&in->group_name, cur->group_name, err);
	}
	return r;
}

static unsigned diff_fields(const struct spec_doc *b, const struct spec_doc *t)
{
	unsigned bits = 0;

	for (size_t i = 0; i < NSTR_FIELDS; i++)
		if (!spec_streq(doc_str(b, &str_fields[i]), doc_str(t, &str_fields[i])) &&
		    !(str_fields[i].bit == PH_IN_USE_IMAGE_PULL_SECRET &&
		      field_eq(&str_fields[i], doc_str(b, &str_fields[i]),
		               doc_str(t, &str_fields[i]))))
			bits |= str_fields[i].bit;
	if (b->global != t->global)
		bits |= PH_IN_GLOBAL;
	return bits;
}

/*
 * When a custom build succeeds, PrimeHub's builder sets the image's
 * useImagePullSecret to its own push secret, usually not one of the pull
 * secrets offered: spec.json changes under an open editor.  A refusal about
 * useImagePullSecret on such an image says why it holds that value.
 */
static void explain_builder_secret(const struct ph_image *cur, const struct spec_context *ctx,
                                   struct ph_err *err)
{
	struct ph_err probe = {0};
	char q[96];
	size_t used;

	if (!err || (ctx && ctx->secrets_unknown) ||
	    strcmp(err->field, "useImagePullSecret") != 0 || !cur->image_spec ||
	    empty(cur->use_image_pull_secret) ||
	    spec_check_pull_secret("useImagePullSecret", cur->use_image_pull_secret, ctx, &probe) ==
	        0)
		return;
	jt_quote(q, sizeof(q), cur->use_image_pull_secret, 60);
	used = strlen(err->msg);
	snprintf(
	    err->msg + used, sizeof(err->msg) - used,
	    " (on a custom-build image PrimeHub's image builder sets useImagePullSecret to its "
	    "push secret, now %s, each time a build succeeds, so the built image can be "
	    "pulled; leave it as it is)",
	    q);
}

int spec_plan_update(const char *base, size_t base_len, const char *text, size_t len,
                     const struct ph_image *current, const struct spec_context *ctx,
                     struct spec_update *out, struct ph_err *err)
{
	struct spec_doc b, t, c;
	unsigned changed;
	bool content = false, cancel = false;
	int r;

	memset(&b, 0, sizeof(b));
	memset(&t, 0, sizeof(t));
	memset(&c, 0, sizeof(c));
	if (!out)
		return ph_err_set(err, EINVAL, NULL, "internal error: no update to fill");
	memset(out, 0, sizeof(*out));
	if (!current)
		return ph_err_set(err, EINVAL, NULL, "internal error: no current image");
	/* Byte-identical to what was opened: nothing to do, whatever it holds. */
	if (base && len == base_len && (len == 0 || (text && memcmp(base, text, len) == 0)))
		return 0;
	r = spec_doc_parse(&t, text, len, err);
	if (r)
		goto done;
	r = spec_doc_parse_trusted(&b, base, base ? base_len : 0, err);
	if (r) {
		ph_err_prefix(err, "internal error: the spec.json you opened does not read back: ");
		if (err)
			err->errnum = EIO;
		r = -EIO;
		goto done;
	}
	r = spec_doc_from_image(&c, current, err);
	if (r)
		goto done;
	r = check_name(t.name, ctx && ctx->dir_name ? ctx->dir_name : current->name, false, err);
	if (r)
		goto done;
	/* The CLI's order (name, type, imageSpec), then ours. */
	changed = diff_fields(&b, &t);
	r = check_type_change(&t, changed, err);
	if (!r)
		r = check_build_change(&b, &t, ctx, &content, &cancel, err);
	if (!r)
		r = check_update(&b, &t, current, ctx, &changed, err);
	if (!r)
		r = check_conflicts(&b, &t, &c, changed, content, cancel, err);
	if (r) {
		explain_builder_secret(current, ctx, err);
		goto done;
	}
	out->changed = changed | ((content || cancel) ? PH_IN_IMAGE_SPEC : 0);
	if (changed) {
		r = fill_update(&t, current, changed, &out->input, err);
		if (r)
			goto done;
	}
	/* Already so on the server (an earlier save, another editor): a second
	 * rebuild would only start the same build again. */
	if (content && !spec_build_content_equal(c.image_spec, t.image_spec)) {
		out->rebuild = spec_build_input(t.image_spec);
		if (!out->rebuild) {
			r = ph_err_set(err, ENOMEM, NULL, "out of memory planning the rebuild");
			goto done;
		}
	}
	out->cancel_build = cancel && t.image_spec->cancel && !c.image_spec->cancel;
done:
	if (r)
		spec_update_clear(out);
	spec_doc_free(&b);
	spec_doc_free(&t);
	spec_doc_free(&c);
	return r;
}

int spec_plan_create(const char *text, size_t len, const struct spec_context *ctx,
                     struct ph_image_input *out, struct ph_err *err)
{
	const char *dir = ctx ? ctx->dir_name : NULL, *type;
	struct spec_doc t;
	int r;

	memset(&t, 0, sizeof(t));
	if (!out)
		return ph_err_set(err, EINVAL, NULL, "internal error: no input to fill");
	memset(out, 0, sizeof(*out));
	if (!dir)
		return ph_err_set(err, EINVAL, NULL, "internal error: no directory name");
	r = spec_doc_parse(&t, text, len, err);
	if (r)
		return r;
	/* The CLI's order: name, type, imageSpec; then references and secret. */
	r = check_name(t.name, dir, true, err);
	if (!r)
		r = spec_check_image_name(dir, err);
	type = t.type ? t.type : "both";
	if (!r && t.type)
		r = spec_check_type(t.type, err);
	if (!r && t.image_spec)
		r = spec_check_build_spec(t.image_spec, NULL, t.url || t.url_for_gpu,
		                          t.url ? "url" : "urlForGpu", ctx, err);
	if (!r && !empty(t.url))
		r = spec_check_image_ref("url", t.url, err);
	if (!r && !empty(t.url_for_gpu)) {
		r = spec_check_image_ref("urlForGpu", t.url_for_gpu, err);
		if (!r)
			r = check_gpu_follows_url(type, t.url, t.url_for_gpu, true, err);
	}
	if (!r)
		r = spec_check_pull_secret("useImagePullSecret", t.pull_secret, ctx, err);
	if (r)
		goto done;

	out->set = PH_IN_NAME | PH_IN_TYPE | PH_IN_GLOBAL;
	out->global = t.global;
	r = dup_into(&out->name, dir, err);
	if (!r)
		r = dup_into(&out->type, type, err);
	for (size_t i = 0; !r && i < NSTR_FIELDS; i++) {
		const struct str_field *f = &str_fields[i];

		if (f->bit == PH_IN_TYPE || !doc_str(&t, f))
			continue;
		out->set |= f->bit;
		r = dup_into(input_str(out, f), doc_str(&t, f), err);
	}
	if (!r && t.image_spec) {
		out->set |= PH_IN_IMAGE_SPEC;
		out->image_spec = spec_build_input(t.image_spec);
		if (!out->image_spec)
			r = ph_err_set(err, ENOMEM, NULL, "out of memory planning the create");
	}
done:
	if (r)
		ph_image_input_clear(out);
	spec_doc_free(&t);
	return r;
}

/* The value of one of the string fields in an image, for a description. */
static const char *image_str(const struct ph_image *img, unsigned bit)
{
	switch (bit) {
	case PH_IN_DISPLAY_NAME:
		return img->display_name;
	case PH_IN_DESCRIPTION:
		return img->description;
	case PH_IN_TYPE:
		return img->type;
	case PH_IN_URL:
		return img->url;
	case PH_IN_URL_FOR_GPU:
		return img->url_for_gpu;
	case PH_IN_USE_IMAGE_PULL_SECRET:
		return img->use_image_pull_secret;
	default:
		return NULL;
	}
}

size_t spec_describe_update(const struct ph_image *cur, const struct spec_update *u, char *out,
                            size_t size)
{
	size_t n = 0;

#define PUT(...)                                                                                   \
	do {                                                                                       \
		int w_ = snprintf(out + n, n < size ? size - n : 0, __VA_ARGS__);                  \
		if (w_ > 0)                                                                        \
			n += (size_t)w_;                                                           \
	} while (0)
	if (size)
		out[0] = '\0';
	for (size_t i = 0; i < NSTR_FIELDS; i++) {
		const struct str_field *f = &str_fields[i];
		char was[96], now[96];

		if (!(u->changed & f->bit))
			continue;
		jt_quote(was, sizeof(was), cur ? image_str(cur, f->bit) : NULL, 40);
		jt_quote(now, sizeof(now),
		         (u->input.set & f->bit) ? input_cstr(&u->input, f) : NULL, 40);
		PUT("%s%s: %s -> %s", n ? "; " : "", f->key, was, now);
	}
	if (u->changed & PH_IN_GLOBAL)
		PUT("%sglobal: %s -> %s", n ? "; " : "", u->input.global ? "false" : "true",
		    u->input.global ? "true" : "false");
	if (u->rebuild)
		PUT("%simageSpec changed: rebuild", n ? "; " : "");
	if (u->cancel_build)
		PUT("%simageSpec.cancel: false -> true", n ? "; " : "");
#undef PUT
	return n < size ? n : (size ? size - 1 : 0);
}

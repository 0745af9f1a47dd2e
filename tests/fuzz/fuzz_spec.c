/*
 * fuzz_spec.c - libFuzzer target for the spec layer (see README.md here).
 *
 * Every input is tried as:
 *   - a save of spec.json over three fixed opened versions (a plain "both"
 *     image with a pull secret and a groupName, an image holding odd values,
 *     a custom build), the last one against a server that changed meanwhile;
 *   - a pending directory's spec.json (spec_plan_create);
 *   - an image name and an image reference;
 *   - a value the server holds (in description, url, a package): rendering
 *     it must give text that reads back as "nothing changed".
 * Invariants: no crash or sanitizer report; each call returns 0 or a
 * negative errno from the documented set with a non-empty reason; plans are
 * well formed.  tests/unit/test_json_fuzz_corpus.c includes this file and
 * runs it over a fixed corpus, so CI exercises it under ASan/UBSan too.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "primehubfs/spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_FAIL(...)                                                                             \
	do {                                                                                       \
		fprintf(stderr, "fuzz_spec: " __VA_ARGS__);                                        \
		fprintf(stderr, "\n");                                                             \
		return -1;                                                                         \
	} while (0)

static const struct ph_secret fuzz_secrets[] = {
    {(char *)"image-my-image-registry", (char *)"my-image-registry", (char *)"kubernetes"},
    {(char *)"gitsync-secret-dataset-secret", (char *)"dataset-secret", (char *)"opaque"},
};

static char *fuzz_strdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* One of the fixed images; NULL only when out of memory. */
static struct ph_image *fuzz_image(unsigned which)
{
	struct ph_image *img = calloc(1, sizeof(*img));

	if (!img)
		return NULL;
	switch (which) {
	case 0:
		img->name = fuzz_strdup("base-notebook");
		img->display_name = fuzz_strdup("base-notebook");
		img->description = fuzz_strdup("base notebook");
		img->type = fuzz_strdup("both");
		img->url = fuzz_strdup("infuseai/docker-stacks:base-notebook-63fdf50a");
		img->url_for_gpu = fuzz_strdup("infuseai/docker-stacks:base-notebook-63fdf50a-gpu");
		img->use_image_pull_secret = fuzz_strdup("image-my-image-registry");
		img->group_name = fuzz_strdup("team-a");
		break;
	case 1:
		img->name = fuzz_strdup("odd");
		img->display_name = fuzz_strdup("");
		img->type = fuzz_strdup("");
		img->url = fuzz_strdup("Not A Ref");
		img->url_for_gpu = fuzz_strdup("x y");
		img->use_image_pull_secret = fuzz_strdup("ghost");
		img->global = true;
		break;
	default:
		img->name = fuzz_strdup("my-custom-image");
		img->display_name = fuzz_strdup("my-custom-image");
		img->type = fuzz_strdup("both");
		img->use_image_pull_secret = fuzz_strdup("");
		img->global = true;
		img->image_spec = calloc(1, sizeof(*img->image_spec));
		if (img->image_spec) {
			img->image_spec->base_image = fuzz_strdup("jupyter/base-notebook");
			img->image_spec->has_packages = true;
			ph_strlist_append(&img->image_spec->pip, "pytest");
		}
		break;
	}
	img->id = fuzz_strdup(img->name);
	return img;
}

static int fuzz_check_err(const char *what, int rc, const struct ph_err *err)
{
	if (rc == 0)
		return 0;
	if (rc != -EINVAL && rc != -EFBIG && rc != -EBUSY && rc != -ENOMEM)
		FUZZ_FAIL("%s returned %d (%s)", what, rc, err->msg);
	if (err->errnum != -rc)
		FUZZ_FAIL("%s returned %d but err.errnum is %d", what, rc, err->errnum);
	if (!err->msg[0])
		FUZZ_FAIL("%s returned %d without a reason", what, rc);
	if (strchr(err->msg, '\n'))
		FUZZ_FAIL("%s: reason has a newline", what);
	return 0;
}

static int fuzz_check_update(const struct spec_update *u, int rc)
{
	const unsigned allowed = PH_IN_DISPLAY_NAME | PH_IN_DESCRIPTION | PH_IN_TYPE | PH_IN_URL |
	                         PH_IN_URL_FOR_GPU | PH_IN_GLOBAL | PH_IN_USE_IMAGE_PULL_SECRET |
	                         PH_IN_GROUP_NAME;

	if (rc != 0) {
		if (!spec_update_empty(u) || u->changed)
			FUZZ_FAIL("a refused plan left something to send");
		return 0;
	}
	if (u->input.set & ~allowed)
		FUZZ_FAIL("update sends keys ImageUpdateInput lacks: %#x", u->input.set);
	if (u->rebuild &&
	    (!u->rebuild->base_image || !*u->rebuild->base_image || !u->rebuild->has_packages))
		FUZZ_FAIL("rebuild without baseImage or packages");
	if (u->rebuild && u->cancel_build)
		FUZZ_FAIL("rebuild and cancel at once");
	if ((u->input.set & PH_IN_TYPE) && u->input.type && strcmp(u->input.type, "cpu") &&
	    strcmp(u->input.type, "gpu") && strcmp(u->input.type, "both"))
		FUZZ_FAIL("type %s sent", u->input.type);
	if ((u->input.set & PH_IN_URL) && u->input.url &&
	    spec_check_image_ref("url", u->input.url, NULL) && *u->input.url)
		FUZZ_FAIL("invalid url sent");
	return 0;
}

static int fuzz_plan_update(const uint8_t *data, size_t size, unsigned which, bool server_moved)
{
	struct ph_image *opened = fuzz_image(which), *current = fuzz_image(which);
	struct spec_context ctx = {.secrets = fuzz_secrets, .nsecrets = 2};
	struct spec_update u;
	struct ph_err err = {0};
	size_t blen = 0;
	char *base = opened ? spec_render(opened, &blen) : NULL;
	int rc, bad = 0;

	if (!base || !current) {
		free(base);
		ph_image_free(opened);
		ph_image_free(current);
		return 0; /* out of memory in the harness: nothing to learn */
	}
	if (server_moved) {
		free(current->description);
		current->description = fuzz_strdup("changed on the server");
		if (current->image_spec)
			ph_strlist_append(&current->image_spec->apt, "curl");
	}
	ctx.dir_name = opened->name;
	rc = spec_plan_update(base, blen, (const char *)data, size, current, &ctx, &u, &err);
	bad = fuzz_check_err("spec_plan_update", rc, &err) || fuzz_check_update(&u, rc);
	spec_update_clear(&u);
	free(base);
	ph_image_free(opened);
	ph_image_free(current);
	return bad ? -1 : 0;
}

static int fuzz_plan_create(const uint8_t *data, size_t size)
{
	struct spec_context ctx = {
	    .dir_name = "my-new-image", .secrets = fuzz_secrets, .nsecrets = 2};
	struct ph_image_input in;
	struct ph_err err = {0};
	int rc = spec_plan_create((const char *)data, size, &ctx, &in, &err);
	int bad = fuzz_check_err("spec_plan_create", rc, &err);

	if (!bad && rc == 0) {
		if ((in.set & (PH_IN_NAME | PH_IN_TYPE | PH_IN_GLOBAL)) !=
		        (PH_IN_NAME | PH_IN_TYPE | PH_IN_GLOBAL) ||
		    !in.name || strcmp(in.name, "my-new-image") || !in.type)
			bad = -1, fprintf(stderr, "fuzz_spec: create input incomplete\n");
		else if (in.url && *in.url && spec_check_image_ref("url", in.url, NULL))
			bad = -1, fprintf(stderr, "fuzz_spec: create accepted a bad url\n");
		else if ((in.set & PH_IN_IMAGE_SPEC) &&
		         (!in.image_spec || !in.image_spec->base_image))
			bad = -1,
			fprintf(stderr, "fuzz_spec: create imageSpec without baseImage\n");
	} else if (rc != 0 && in.set) {
		bad = -1, fprintf(stderr, "fuzz_spec: refused create left an input\n");
	}
	ph_image_input_clear(&in);
	return bad;
}

/* The input as a value the server holds: the rendering must read back as
 * unchanged (a trailing space makes the bytes differ, so it is parsed). */
static int fuzz_render_roundtrip(const char *s)
{
	struct ph_image *img = fuzz_image(2);
	struct spec_context ctx = {
	    .dir_name = "my-custom-image", .secrets = fuzz_secrets, .nsecrets = 2};
	struct spec_update u;
	struct ph_err err = {0};
	size_t len = 0;
	char *text, *status, *tpl, *copy;
	int rc, bad = 0;

	if (!img || !img->image_spec)
		goto out_img;
	free(img->description);
	img->description = fuzz_strdup(s);
	free(img->url);
	img->url = fuzz_strdup(s);
	ph_strlist_append(&img->image_spec->conda, s);
	text = spec_render(img, &len);
	status = spec_render_status(img, NULL);
	tpl = spec_render_template(s, NULL);
	copy = text ? malloc(len + 2) : NULL;
	if (copy) {
		memcpy(copy, text, len);
		copy[len] = ' ';
		copy[len + 1] = '\0';
		rc = spec_plan_update(text, len, copy, len + 1, img, &ctx, &u, &err);
		if (rc || !spec_update_empty(&u)) {
			fprintf(stderr, "fuzz_spec: rendering does not read back (%d: %s)\n", rc,
			        err.msg);
			bad = -1;
		}
		spec_update_clear(&u);
	}
	if (tpl) {
		struct ph_image_input in;

		ctx.dir_name = s;
		rc = spec_plan_create(tpl, strlen(tpl), &ctx, &in, &err);
		/* the template is refused only for the directory's name */
		if (rc && rc != -ENOMEM && strcmp(err.field, "name") != 0) {
			fprintf(stderr, "fuzz_spec: template refused: %s\n", err.msg);
			bad = -1;
		}
		ph_image_input_clear(&in);
	}
	free(copy);
	free(text);
	free(status);
	free(tpl);
out_img:
	ph_image_free(img);
	return bad;
}

/* 0 if every invariant held; -1 (after saying why on stderr) if not. */
static int fuzz_spec_check(const uint8_t *data, size_t size)
{
	char *s;
	int bad = 0;

	bad |= fuzz_plan_update(data, size, 0, false);
	bad |= fuzz_plan_update(data, size, 1, false);
	bad |= fuzz_plan_update(data, size, 2, true);
	bad |= fuzz_plan_create(data, size);
	if (size > 4096)
		return bad;
	/* As a C string (up to the first NUL). */
	s = malloc(size + 1);
	if (!s)
		return bad;
	memcpy(s, data, size);
	s[size] = '\0';
	{
		struct ph_err err = {0};
		int rc = spec_check_image_ref("url", s, &err);

		bad |= fuzz_check_err("spec_check_image_ref", rc, &err);
		rc = spec_check_image_name(s, &err);
		bad |= fuzz_check_err("spec_check_image_name", rc, &err);
	}
	bad |= fuzz_render_roundtrip(s);
	free(s);
	return bad ? -1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (fuzz_spec_check(data, size))
		abort();
	return 0;
}

/*
 * spec.h - spec.json and status.json text <-> image fields: render, parse,
 * validate, diff.  Pure: no I/O, no globals, no FUSE, no HTTP; every function
 * is safe to fuzz with arbitrary bytes.
 *
 * spec.json is the official CLI's create/update configuration format, pretty
 * printed with two-space indentation and a final newline, keys in this order:
 *   name, displayName, description, type, url, urlForGpu, global,
 *   useImagePullSecret, imageSpec
 * url/urlForGpu are left out for custom-build images (images with imageSpec):
 * there they are build outputs and show in status.json instead.  imageSpec is
 * present only for custom-build images, as
 *   {"baseImage", "pullSecret", "packages": {"apt", "pip", "conda"}, "cancel"}.
 * A copy of spec.json can be fed to `primehub admin images create --file`.
 *
 * Ownership: rendered texts are malloc'd, NUL-terminated, freed by the caller.
 * spec_update/ph_image_input members are owned by the struct and freed with
 * spec_update_clear / ph_image_input_clear.
 */
#ifndef PRIMEHUBFS_SPEC_H
#define PRIMEHUBFS_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include "primehubfs/error.h"
#include "primehubfs/image.h"

#define SPEC_MAX_SIZE (1024 * 1024) /* larger saves are refused with EFBIG */

char *spec_render(const struct ph_image *img, size_t *len);

/* status.json: read-only server state, never sent back:
 * id, isReady, url, urlForGpu, customBuild, buildPhase, buildImage,
 * updateTime, cancelRequested, groups [{id,name,displayName}], logEndpoint. */
char *spec_render_status(const struct ph_image *img, size_t *len);

/* The spec.json a freshly made (pending) directory shows: the name, the
 * defaults the server would apply, and null for what the user should fill in. */
char *spec_render_template(const char *name, size_t *len);

/* The name rule of the CLI and Kubernetes (RFC 1123 subdomain, <= 253
 * chars).  -EINVAL with the official CLI's wording. */
int spec_check_image_name(const char *name, struct ph_err *err);

/* A container image reference ([host[:port]/]path[:tag][@algo:hex]).
 * -EINVAL naming `field` and saying what is wrong. */
int spec_check_image_ref(const char *field, const char *ref, struct ph_err *err);

/* What validation may look up: the directory's name and the secrets that are
 * valid pull secrets (type kubernetes).  All borrowed.  With secrets_unknown
 * (the caller has not listed them: that costs a request), a plan that has
 * to check a pull secret fails with -EAGAIN and err untouched, and the
 * caller plans again with the secrets; most saves never need them. */
struct spec_context {
	const char *dir_name;
	const struct ph_secret *secrets;
	size_t nsecrets;
	bool secrets_unknown;
};

/* What a save of an existing image's spec.json turns into.  Nothing to send
 * when spec_update_empty() is true. */
struct spec_update {
	struct ph_image_input input;   /* for updateImage; input.set == 0: no updateImage */
	struct ph_build_spec *rebuild; /* non-NULL: rebuildImage with this imageSpec */
	bool cancel_build;             /* cancelImageBuild */
	unsigned changed;              /* PH_IN_* bits the user changed (for logging) */
};
bool spec_update_empty(const struct spec_update *u);
void spec_update_clear(struct spec_update *u);

/* A build spec as rebuildImage/createImage take it: every package list sent
 * (a list left out would keep stale server values), cancel false, no
 * updateTime.  NULL on ENOMEM; free with ph_build_spec_free. */
struct ph_build_spec *spec_build_input(const struct ph_build_spec *bs);

/* One line for a person: what u changes of cur, `field: "old" -> "new"`
 * joined by "; " (values cut at 40 characters, escaped), then rebuild or
 * cancel.  Returns the length written (cut to fit size). */
size_t spec_describe_update(const struct ph_image *cur, const struct spec_update *u, char *out,
                            size_t size);

/*
 * Plan the save of an existing image.
 *   base:    the spec.json text the writer opened (what they edited from)
 *   text:    what they saved
 *   current: the image as the server holds it now
 * Only fields whose value differs between base and text are sent.  A field
 * that was removed from the JSON counts as set to null.  Rules (each refusal
 * names the field and what is allowed):
 *   - text over SPEC_MAX_SIZE: -EFBIG
 *   - not JSON: -EINVAL "not valid JSON at line L, column C: ..."
 *   - top level not an object, unknown key, wrong type: -EINVAL
 *   - name differing from ctx->dir_name: -EINVAL (names cannot change)
 *   - changed type outside cpu/gpu/both; changed url/urlForGpu not a valid
 *     image reference; urlForGpu that differs from url on a cpu/gpu image;
 *     clearing url; changed useImagePullSecret that is neither ""/null nor the
 *     id of a kubernetes secret: -EINVAL
 *   - imageSpec rules of the CLI (no url/urlForGpu beside it, baseImage
 *     required, packages {apt,pip,conda} lists of strings); adding imageSpec
 *     to a plain image or removing it from a custom one: -EINVAL
 *   - a field the user changed that the server also changed since base (and
 *     not to the same value): -EBUSY "... was changed on the server since you
 *     opened the file"
 * The update always re-sends the current useImagePullSecret and groupName
 * (PrimeHub clears them when left out) and, when url changes on a "both"
 * image, the urlForGpu the user sees (PrimeHub would overwrite it).
 * Changed imageSpec contents -> rebuild; "cancel": true -> cancel_build.
 */
int spec_plan_update(const char *base, size_t base_len, const char *text, size_t len,
                     const struct ph_image *current, const struct spec_context *ctx,
                     struct spec_update *out, struct ph_err *err);

/*
 * Plan the createImage of a pending directory from its saved spec.json.
 * Everything is validated (as the CLI's create does, plus the checks above).
 * out->name is ctx->dir_name.  Group connections are added by the caller.
 */
int spec_plan_create(const char *text, size_t len, const struct spec_context *ctx,
                     struct ph_image_input *out, struct ph_err *err);

#endif

"""Getting an image by reference: the local store, then registries, then (for
Debian references no registry serves) a local bootstrap. The one place that
order is decided; builds (FROM) and composer (image:) both use it."""

from __future__ import annotations

from collections.abc import Callable

PULL_POLICIES = ("missing", "always", "never", "build", "if_not_present", "daily", "weekly")


class ImageUnavailable(Exception):
    pass


def obtain(
    reference: str,
    store,
    *,
    policy: str = "missing",
    on_output: Callable[[str], None] | None = None,
    on_progress=None,
):
    """The Image for reference, fetching or bootstrapping it if the policy allows."""
    from runtime.images.store import ImageStore

    store = store if store is not None else ImageStore()
    local = store.resolve(reference)
    if local is not None and policy != "always":
        return local
    if policy == "never":
        raise ImageUnavailable(f"image {reference} is not in the local store (pull_policy: never)")
    failures: list[str] = []
    from runtime.images.reference import configured_registries, parse_reference

    if parse_reference(reference).registry or configured_registries():
        from runtime.images.pull import pull

        try:
            return pull(reference, store, on_progress)
        except Exception as e:  # every registry failed: say why, then try the bootstrap
            failures.append(str(e))
    from runtime.images import bootstrap

    if bootstrap.should_bootstrap(reference, registries=[]):
        return bootstrap.bootstrap(reference, store, on_output=on_output)
    if local is not None:
        return local  # policy always, but nothing could refresh it
    why = "; ".join(failures) or "no registry is configured for short names (COMPOSER_REGISTRIES)"
    raise ImageUnavailable(f"image {reference} is not in the local store and cannot be had: {why}")

"""Getting an image by reference: the local store, then registries, then (for
Debian references no registry serves) a local bootstrap. The one place that
order is decided; builds (FROM) and composer (image:) both use it."""

from __future__ import annotations

import os
from collections.abc import Callable

PULL_POLICIES = ("missing", "always", "never", "build", "if_not_present", "daily", "weekly")


class ImageUnavailable(Exception):
    pass


def sources(
    *,
    policy: str,
    have_local: bool,
    registry_named: bool,
    registries: list[str],
    debian: bool,
    prefer_bootstrap: bool,
) -> list[str]:
    """Where to look, in order: "local", "registry", "bootstrap"."""
    if have_local and policy != "always":
        return ["local"]
    if policy == "never":
        return []
    order = []
    if prefer_bootstrap and debian:
        # COMPOSER_BOOTSTRAP=prefer: Debian images are built from the machine's own
        # mirror even where a registry could serve them (reproducible, no registry traffic).
        order.append("bootstrap")
    if registry_named or registries:
        order.append("registry")
    if debian and "bootstrap" not in order:
        order.append("bootstrap")
    if have_local:
        order.append("local")  # policy always, but nothing could refresh it
    return order


def obtain(
    reference: str,
    store,
    *,
    policy: str = "missing",
    on_output: Callable[[str], None] | None = None,
    on_progress=None,
):
    """The Image for reference, fetching or bootstrapping it if the policy allows."""
    from runtime.images import bootstrap
    from runtime.images.reference import configured_registries, parse_reference
    from runtime.images.store import ImageStore

    store = store if store is not None else ImageStore()
    local = store.resolve(reference)
    order = sources(
        policy=policy,
        have_local=local is not None,
        registry_named=bool(parse_reference(reference).registry),
        registries=configured_registries(),
        debian=bootstrap.should_bootstrap(reference, registries=[]),
        prefer_bootstrap=os.environ.get("COMPOSER_BOOTSTRAP") == "prefer",
    )
    if not order:
        raise ImageUnavailable(f"image {reference} is not in the local store (pull_policy: never)")
    failures: list[str] = []
    for source in order:
        if source == "local":
            return local
        if source == "bootstrap":
            return bootstrap.bootstrap(reference, store, on_output=on_output)
        from runtime.images.pull import pull

        try:
            return pull(reference, store, on_progress)
        except Exception as e:  # every registry failed: say why, then the next source
            failures.append(str(e))
    why = "; ".join(failures) or "no registry is configured for short names (COMPOSER_REGISTRIES)"
    raise ImageUnavailable(f"image {reference} is not in the local store and cannot be had: {why}")

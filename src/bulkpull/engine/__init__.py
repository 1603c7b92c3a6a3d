"""The runs: a pull resolves every image, fetches each blob once and hands images to the
outputs; a push reads images out of archives and layouts and places them in one registry, each
blob once per repository; a copy does both, from registries through the store into one
registry; ``verify_lock_in_registry`` checks a registry against a lock. Imports
the three stages (``registry``, ``store``, ``output``) and the value modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bulkpull.engine.options import PullOptions
from bulkpull.engine.pushoptions import PushOptions
from bulkpull.engine.pushplan import PushPlan, plan_push
from bulkpull.lazy import on_first_use

if TYPE_CHECKING:
    from bulkpull.engine.copy import copy_images, copy_plan, default_store
    from bulkpull.engine.have import HaveFile, read_have
    from bulkpull.engine.pull import pull_image, pull_images, resolve_images
    from bulkpull.engine.push import push_images
    from bulkpull.engine.verify_registry import verify_lock_in_registry

# The runs bring the HTTP stack, which ``bulkpull --help`` and ``--version`` never need:
# imported when first asked for.
__getattr__ = on_first_use(
    __name__,
    {
        "HaveFile": ".have",
        "copy_images": ".copy",
        "copy_plan": ".copy",
        "default_store": ".copy",
        "pull_image": ".pull",
        "pull_images": ".pull",
        "push_images": ".push",
        "read_have": ".have",
        "resolve_images": ".pull",
        "verify_lock_in_registry": ".verify_registry",
    },
)

__all__ = [
    "HaveFile",
    "PullOptions",
    "PushOptions",
    "PushPlan",
    "copy_images",
    "copy_plan",
    "default_store",
    "plan_push",
    "pull_image",
    "pull_images",
    "push_images",
    "read_have",
    "resolve_images",
    "verify_lock_in_registry",
]

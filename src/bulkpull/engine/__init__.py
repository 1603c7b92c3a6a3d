"""The run: resolve every image, fetch each blob once, hand images to the outputs. Imports the
three stages (``registry``, ``store``, ``output``) and the value modules.
"""

from __future__ import annotations

from bulkpull.engine.options import PullOptions
from bulkpull.engine.pull import pull_image, pull_images, resolve_images

__all__ = ["PullOptions", "pull_image", "pull_images", "resolve_images"]

"""bulkpull: pull many container images at once into verified archives.

The public API is exactly ``__all__``; everything else is an implementation detail. Pulling is
async::

    report = await bulkpull.pull_images(["alpine:3.19", "busybox"], "bundles/")
    bundle = bulkpull.Destination.bundle("offline.tar")
    report = await bulkpull.pull_images(["alpine:3.19", "busybox"], bundle)

and so is pushing what was pulled into a registry, digests intact::

    report = await bulkpull.push_images(["bundles/offline.tar"], "registry.internal:5000/mirror")

or copying a list from its registries straight into one, through the blob store::

    report = await bulkpull.copy_images(["alpine:3.19", "busybox"], "registry.internal:5000/mirror")

and every error bulkpull raises on purpose is a :class:`BulkpullError`.

General layout: the code follows the data path, and imports only ever point down this drawing
(``tests/test_architecture.py`` holds the rule)::

    cli/                         the command line, one module per command; it uses nothing
                                   but this public API
    bulkpull                     this module: the public API, exactly ``__all__``
    engine/                      orchestration: a pull resolves every image, fetches each blob
                                   once and hands images to the outputs; a push reads images
                                   out of archives and layouts and places each blob once per
                                   repository of one registry; a copy does both halves,
                                   through the store
    registry/   store/  output/  three stages side by side that never import one another:
                                   requests to registries; verified blobs on disk, the
                                   partial files that resume and unfinished uploads; archives,
                                   layouts, ``verify`` and reading them back for a push
    files                        the file work the store and the outputs share
    errors, digest, reference,   values: validated frozen data, the exception tree and the
    platform, manifest, ...        retry loop; they import nothing but each other

A stage knows only the values, so the archive writer cannot reach the network and the registry
client cannot write an archive; whatever two stages must share is a value (``resolved``,
``usage``). Within a package the modules stack the same way, bottom up (see the ``registry``
package's docstring).
"""

from __future__ import annotations

from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from bulkpull import lazy as _lazy
from bulkpull.destination import Destination, DestinationKind, parse_size
from bulkpull.digest import Digest
from bulkpull.engine import PullOptions, PushOptions, PushPlan, plan_push
from bulkpull.errors import (
    AuthenticationError,
    BulkpullError,
    ContentError,
    CredentialsError,
    DestinationError,
    DigestMismatchError,
    ImageListError,
    InvalidOptionError,
    InvalidPlatformError,
    InvalidReferenceError,
    NotFoundError,
    OutputError,
    PlatformNotFoundError,
    RateLimitError,
    RegistryDiagnostic,
    RegistryError,
    SignatureError,
    SourceError,
    TransportError,
    UnknownHostError,
    UnsupportedMediaTypeError,
    VerifyKeyError,
    is_temporary,
    printable,
)
from bulkpull.files import write_atomically
from bulkpull.imagelist import (
    ImageSpec,
    check_archive_names,
    distinct_targets,
    image_spec,
    parse_image_list,
    read_image_list,
)
from bulkpull.manifest import Descriptor
from bulkpull.output import (
    ArchiveCheck,
    ArchiveEntry,
    ExpectedBlob,
    HeldImage,
    LockCheck,
    verify_archive,
    verify_lock,
    verify_signatures,
)
from bulkpull.platform import (
    DEFAULT_PLATFORM,
    Platform,
    parse_platform_choice,
    parse_platforms,
    wants_all_platforms,
)
from bulkpull.pushreport import (
    BlobCounts,
    BytesSent,
    PushDone,
    PushedReferrer,
    PushEvent,
    PushEventCallback,
    PushReport,
    PushResult,
    PushStatus,
    ReferrerListing,
)
from bulkpull.reference import Reference, parse_reference
from bulkpull.registry import Credentials, CredentialSource, Keychain, Mirror, Proxies
from bulkpull.report import (
    BlobDone,
    BlobNeeded,
    BytesReceived,
    CarriedReferrer,
    DeltaTotals,
    Event,
    EventCallback,
    ImageDone,
    ImageResult,
    ImageStage,
    PullReport,
    ReplacedImage,
    Retrying,
    SkippedReferrer,
    Stage,
    Status,
)
from bulkpull.retry import RetryPolicy
from bulkpull.shard import Shard
from bulkpull.signatures import KeyVerifier, Outcome, PublicKey, SignatureCheck
from bulkpull.targets import PushTarget
from bulkpull.usage import PullLimit, RegistryUsage

__version__ = version("bulkpull")

if TYPE_CHECKING:
    from bulkpull.engine import (
        HaveFile,
        copy_images,
        copy_plan,
        default_store,
        pull_image,
        pull_images,
        push_images,
        read_have,
        resolve_images,
        verify_lock_in_registry,
    )
    from bulkpull.keys import load_public_key

# The runs bring the HTTP stack and keys the cryptography library; imported when first used,
# so ``bulkpull --help``, ``--version`` and runs without ``--verify-key`` start without them.
_runs = _lazy.on_first_use(
    __name__,
    {
        "load_public_key": ".keys",
        **dict.fromkeys(
            [
                "HaveFile",
                "copy_images",
                "copy_plan",
                "default_store",
                "pull_image",
                "pull_images",
                "push_images",
                "read_have",
                "resolve_images",
                "verify_lock_in_registry",
            ],
            ".engine",
        ),
    },
)


def __getattr__(name: str) -> Any:
    return _runs(name)


__all__ = [
    "DEFAULT_PLATFORM",
    "ArchiveCheck",
    "ArchiveEntry",
    "AuthenticationError",
    "BlobCounts",
    "BlobDone",
    "BlobNeeded",
    "BulkpullError",
    "BytesReceived",
    "BytesSent",
    "CarriedReferrer",
    "ContentError",
    "CredentialSource",
    "Credentials",
    "CredentialsError",
    "DeltaTotals",
    "Descriptor",
    "Destination",
    "DestinationError",
    "DestinationKind",
    "Digest",
    "DigestMismatchError",
    "Event",
    "EventCallback",
    "ExpectedBlob",
    "HaveFile",
    "HeldImage",
    "ImageDone",
    "ImageListError",
    "ImageResult",
    "ImageSpec",
    "ImageStage",
    "InvalidOptionError",
    "InvalidPlatformError",
    "InvalidReferenceError",
    "KeyVerifier",
    "Keychain",
    "LockCheck",
    "Mirror",
    "NotFoundError",
    "Outcome",
    "OutputError",
    "Platform",
    "PlatformNotFoundError",
    "Proxies",
    "PublicKey",
    "PullLimit",
    "PullOptions",
    "PullReport",
    "PushDone",
    "PushEvent",
    "PushEventCallback",
    "PushOptions",
    "PushPlan",
    "PushReport",
    "PushResult",
    "PushStatus",
    "PushTarget",
    "PushedReferrer",
    "RateLimitError",
    "Reference",
    "ReferrerListing",
    "RegistryDiagnostic",
    "RegistryError",
    "RegistryUsage",
    "ReplacedImage",
    "RetryPolicy",
    "Retrying",
    "Shard",
    "SignatureCheck",
    "SignatureError",
    "SkippedReferrer",
    "SourceError",
    "Stage",
    "Status",
    "TransportError",
    "UnknownHostError",
    "UnsupportedMediaTypeError",
    "VerifyKeyError",
    "__version__",
    "check_archive_names",
    "copy_images",
    "copy_plan",
    "default_store",
    "distinct_targets",
    "image_spec",
    "is_temporary",
    "load_public_key",
    "parse_image_list",
    "parse_platform_choice",
    "parse_platforms",
    "parse_reference",
    "parse_size",
    "plan_push",
    "printable",
    "pull_image",
    "pull_images",
    "push_images",
    "read_have",
    "read_image_list",
    "resolve_images",
    "verify_archive",
    "verify_lock",
    "verify_lock_in_registry",
    "verify_signatures",
    "wants_all_platforms",
    "write_atomically",
]

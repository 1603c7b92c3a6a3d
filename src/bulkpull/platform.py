"""Platforms (``os/arch[/variant]``): parsing, normalization and containerd's matching order.

An index lists one manifest per platform, and the names vary: ``aarch64`` and ``arm64/v8`` are
the same machine as ``arm64``, ``armhf`` is ``arm/v7``. Matching follows containerd's
``platforms.Normalize`` and ``platforms.Only`` so that bulkpull picks the manifest that
``docker pull --platform`` and ``ctr pull`` would pick. Imports only ``errors``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from bulkpull.errors import InvalidPlatformError

# containerd's platform specifier component; lowercase because parsing lowercases first.
_COMPONENT = re.compile(r"[a-z0-9_.-]+")
# BuildKit marks attestation manifests with this os and architecture; they are not runnable.
UNKNOWN: Final = "unknown"
# Keeps every manifest an index lists (skopeo's --all, hauler's default), attestations included.
ALL_PLATFORMS: Final = "all"


@dataclass(frozen=True, slots=True, order=True)
class Platform:
    """An OS, architecture and optional variant, as written in an index or a config.

    Values are stored as given so that descriptors round-trip byte-for-byte into archives;
    comparisons that mean "same machine" go through :meth:`normalized` or :meth:`match_rank`.
    """

    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``OS/ARCH[/VARIANT]`` (``linux/arm64``, ``linux/arm/v7``), normalized.

        Unlike containerd, a bare OS is refused: the daemon's default architecture is not known
        here, and guessing the machine bulkpull happens to run on would pull the wrong image.
        """
        parts = text.strip().lower().split("/")
        if len(parts) not in (2, 3):
            raise InvalidPlatformError(f"platform must be OS/ARCH[/VARIANT], got {text!r}")
        for part in parts:
            if not _COMPONENT.fullmatch(part):
                raise InvalidPlatformError(
                    f"platform must be OS/ARCH[/VARIANT], got {text!r}: "
                    f"{part!r} is not letters, digits, '_', '.' or '-'"
                )
        os_name, architecture, *variant = parts
        return cls(os_name, architecture, *variant).normalized()

    def normalized(self) -> Platform:
        """The canonical spelling, by containerd's ``Normalize`` rules.

        An empty OS stays empty: containerd substitutes the host's OS, but the host that runs
        bulkpull is not the one that will run the image.
        """
        os_name = self.os.lower()
        if os_name == "macos":
            os_name = "darwin"
        architecture, variant = _normalize_arch(self.architecture.lower(), self.variant.lower())
        return Platform(os_name, architecture, variant)

    @property
    def is_unknown(self) -> bool:
        """Whether this is BuildKit's ``unknown/unknown`` placeholder rather than a machine."""
        return self.os.lower() == UNKNOWN or self.architecture.lower() == UNKNOWN

    def __str__(self) -> str:
        if self.variant:
            return f"{self.os}/{self.architecture}/{self.variant}"
        return f"{self.os}/{self.architecture}"

    def match_rank(self, candidate: Platform) -> int | None:
        """How well ``candidate`` serves this wanted platform: 0 is exact, None is unusable.

        Larger ranks are the fallbacks containerd's ``platforms.Only`` accepts, in its order of
        preference (``linux/amd64`` takes ``linux/386``; ``linux/arm64`` takes ``arm/v8`` down
        to ``arm/v5``), so the lowest rank in an index is the manifest containerd would pick.
        """
        if self.is_unknown or candidate.is_unknown:
            return None
        wanted, got = self.normalized(), candidate.normalized()
        for rank, acceptable in enumerate(_fallbacks(wanted)):
            if acceptable.normalized() == got:
                return rank
        return None


DEFAULT_PLATFORM: Final = Platform("linux", "amd64")


def _normalize_arch(architecture: str, variant: str) -> tuple[str, str]:
    """containerd's ``normalizeArch``, plus its newer folding of arm64 ``v8.0`` and ``v9.0``."""
    match architecture:
        case "i386":
            return "386", ""
        case "x86_64" | "x86-64" | "amd64":
            return "amd64", "" if variant == "v1" else variant
        case "aarch64" | "arm64":
            if variant in ("8", "v8", "v8.0"):
                variant = ""
            elif variant in ("9", "9.0", "v9.0"):
                variant = "v9"
            return "arm64", variant
        case "armhf":
            return "arm", "v7"
        case "armel":
            return "arm", "v6"
        case "arm":
            if variant in ("", "7"):
                variant = "v7"
            elif variant in ("5", "6", "8"):
                variant = "v" + variant
            return "arm", variant
    return architecture, variant


def _fallbacks(wanted: Platform) -> list[Platform]:
    """containerd's ``platformVector``: the platforms ``Only(wanted)`` accepts, best first."""
    match wanted.architecture:
        case "amd64":
            return [wanted, *_amd64_fallbacks(wanted)]
        case "arm":
            return [wanted, *_arm_fallbacks(wanted.os, wanted.variant)]
        case "arm64":
            return [wanted, *_arm64_fallbacks(wanted)]
    return [wanted]


def _amd64_fallbacks(wanted: Platform) -> list[Platform]:
    """amd64/vN runs every lower microarchitecture level, and any amd64 runs 386."""
    level = _version(wanted.variant)
    lower = range(level - 1, 0, -1) if level is not None and level > 1 else range(0)
    return [
        *(Platform(wanted.os, "amd64", f"v{n}") for n in lower),
        Platform(wanted.os, "386"),
    ]


def _arm_fallbacks(os_name: str, variant: str) -> list[Platform]:
    """arm/vN runs arm/v(N-1) down to arm/v5 (v4 and older are not offered)."""
    level = _version(variant)
    if level is None or level <= 5:
        return []
    return [Platform(os_name, "arm", f"v{n}") for n in range(level - 1, 4, -1)]


def _arm64_fallbacks(wanted: Platform) -> list[Platform]:
    """Older arm64 revisions, then 32-bit arm from v8 down (AArch32 compatibility).

    arm64 v9.x is a superset of v8.(x+5), which is where containerd's lookup continues.
    """
    variant = wanted.variant or "v8"
    major_text, dot, minor_text = variant.partition(".")
    major = _version(major_text)
    found: list[Platform] = []
    if major is not None and major >= 8:
        minor = int(minor_text) if dot and len(variant) == 4 and minor_text.isdigit() else 0
        if major == 9:
            found += _arm64_revisions(wanted.os, 9, minor)
            found.append(Platform(wanted.os, "arm64", f"v8.{minor + 5}"))
            major, minor = 8, minor + 5
        found += _arm64_revisions(wanted.os, major, minor)
    if variant.startswith(("v8.", "v9.")):
        variant = "v8"
    arm = Platform(wanted.os, "arm", variant)
    return [*found, arm, *_arm_fallbacks(wanted.os, variant)]


def _arm64_revisions(os_name: str, major: int, minor: int) -> list[Platform]:
    """arm64 ``v<major>.<minor-1>`` down to ``v<major>`` (the ``.0`` revision)."""
    return [
        Platform(os_name, "arm64", f"v{major}.{n}" if n else f"v{major}")
        for n in range(minor - 1, -1, -1)
    ]


def _version(variant: str) -> int | None:
    """The number in ``vN`` or ``N``, as Go's ``strconv.Atoi(TrimPrefix(v, "v"))`` reads it."""
    digits = variant.removeprefix("v")
    return int(digits) if digits.isascii() and digits.isdigit() else None


def parse_platforms(text: str) -> tuple[Platform, ...]:
    """``linux/amd64,linux/arm64`` (commas or spaces between) as platforms, in order and
    without repeats."""
    platforms = tuple(Platform.parse(item) for item in re.split(r"[\s,]+", text) if item)
    if not platforms:
        raise InvalidPlatformError("no platform given")
    return tuple(dict.fromkeys(platforms))


def wants_all_platforms(text: str) -> bool:
    """Whether a platform setting (``--platform``, ``platform=``) is ``all``.

    ``all`` next to other platforms is refused rather than guessed at.
    """
    items = [item.strip().lower() for item in text.replace(" ", ",").split(",") if item.strip()]
    if ALL_PLATFORMS not in items:
        return False
    if len(items) > 1:
        raise InvalidPlatformError(
            f"platform {ALL_PLATFORMS!r} keeps every platform; it cannot be combined with "
            f"others, got {text!r}"
        )
    return True


def parse_platform_choice(text: str) -> tuple[tuple[Platform, ...], bool]:
    """A run's platform setting (``--platform``, ``BULKPULL_PLATFORM``) as the platforms to
    pick and whether to keep every one: ``all`` keeps them all, and ``docker load`` then gets
    the default platform's entry; nothing at all means the default platform."""
    if wants_all_platforms(text):
        return (DEFAULT_PLATFORM,), True
    return parse_platforms(text or str(DEFAULT_PLATFORM)), False

"""Reference parsing against distribution/reference's own test vectors.

Row numbers (N1, D17, P36, ...) follow the vector table in the registry-and-archive notes; each row
is mapped to what ``parse_reference`` returns: ParseNormalizedNamed semantics, ``latest`` added
when neither tag nor digest is given, and both kept when a reference has tag and digest.
"""

from __future__ import annotations

import pytest

from bulkpull.digest import Digest
from bulkpull.errors import InvalidReferenceError
from bulkpull.reference import DEFAULT_DOMAIN, DEFAULT_TAG, Reference, parse_reference

SHA_86E0 = "sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"
SHA_E669 = "sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582"
SHA_DBCC = "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"
SHA_FFFF = "sha256:" + "f" * 64
HEX_DBCC = SHA_DBCC.removeprefix("sha256:")
HEX_1A3F = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"
LONG_NAMESPACE = "_".join(
    ["this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255"] * 4
)


NORMALIZED = [
    pytest.param("ubuntu", "docker.io/library/ubuntu:latest", id="N1-official-image"),
    pytest.param("library/ubuntu", "docker.io/library/ubuntu:latest", id="N2-library-namespace"),
    pytest.param("docker.io/foo", "docker.io/library/foo:latest", id="N3-hub-one-component"),
    pytest.param(
        "index.docker.io/library/ubuntu-12.04-base",
        "docker.io/library/ubuntu-12.04-base:latest",
        id="N4-legacy-index-domain",
    ),
    pytest.param("fooo/bar", "docker.io/fooo/bar:latest", id="N5-user-namespace"),
    pytest.param(
        "index.docker.io/fooo/bar", "docker.io/fooo/bar:latest", id="N5-legacy-user-namespace"
    ),
    pytest.param("library/foo/bar", "docker.io/library/foo/bar:latest", id="N6-nested-library"),
    pytest.param("other/library", "docker.io/other/library:latest", id="N7-library-as-leaf"),
    pytest.param("localhost/fooo/bar", "localhost/fooo/bar:latest", id="N8-localhost"),
    pytest.param("LOCALDOMAIN/fooo", "LOCALDOMAIN/fooo:latest", id="N9-uppercase-domain"),
    pytest.param("Foo/bar", "Foo/bar:latest", id="N10-uppercase-first-component"),
    pytest.param(
        "127.0.0.1:8000/privatebase", "127.0.0.1:8000/privatebase:latest", id="N11-ip-port"
    ),
    pytest.param(
        "example.com:8000/private/moonbase",
        "example.com:8000/private/moonbase:latest",
        id="N12-host-port-two-components",
    ),
    pytest.param("test_com/foo", "docker.io/test_com/foo:latest", id="N13-underscore-namespace"),
    pytest.param("test-com:8080/foo", "test-com:8080/foo:latest", id="N14-dashed-host-port"),
    pytest.param(
        "xn--n3h.com:18080/foo", "xn--n3h.com:18080/foo:latest", id="N15-punycode-host-port"
    ),
    pytest.param(
        f"busybox:latest@{SHA_86E0}",
        f"docker.io/library/busybox:latest@{SHA_86E0}",
        id="N16-tag-and-digest-kept",
    ),
    pytest.param("busybox", "docker.io/library/busybox:latest", id="D17-nothing"),
    pytest.param("busybox:latest", "docker.io/library/busybox:latest", id="D-tag-only"),
    pytest.param(
        f"busybox@{SHA_E669}", f"docker.io/library/busybox@{SHA_E669}", id="D18-digest-no-latest"
    ),
    pytest.param("library/busybox", "docker.io/library/busybox:latest", id="D-path-only"),
    pytest.param("docker.io/busybox", "docker.io/library/busybox:latest", id="D-hostname-only"),
    pytest.param(
        "docker.io/library/busybox", "docker.io/library/busybox:latest", id="D-full-name-no-tag"
    ),
    pytest.param(
        "docker.io/busybox:latest", "docker.io/library/busybox:latest", id="D19-hub-no-path"
    ),
    pytest.param("library/busybox:latest", "docker.io/library/busybox:latest", id="D-no-hostname"),
    pytest.param(
        "docker.io/library/busybox:latest",
        "docker.io/library/busybox:latest",
        id="D-already-canonical",
    ),
    pytest.param("gcr.io/library/busybox", "gcr.io/library/busybox:latest", id="D20-other-host"),
    pytest.param(
        f"gcr.io/library/busybox:latest@{SHA_E669}",
        f"gcr.io/library/busybox:latest@{SHA_E669}",
        id="D21-tag-and-digest-both-kept",
    ),
    pytest.param(
        HEX_DBCC[:63], f"docker.io/library/{HEX_DBCC[:63]}:latest", id="A23-63-hex-is-a-name"
    ),
    pytest.param("dbcc1", "docker.io/library/dbcc1:latest", id="A24-short-hex-is-a-name"),
    pytest.param(
        f"redis@{SHA_DBCC}", f"docker.io/library/redis@{SHA_DBCC}", id="A-digested-official"
    ),
    pytest.param(
        f"dmcgowan/myapp@{SHA_DBCC}", f"docker.io/dmcgowan/myapp@{SHA_DBCC}", id="A-digested-user"
    ),
    pytest.param(
        f"docker.io/{HEX_1A3F}",
        f"docker.io/library/{HEX_1A3F}:latest",
        id="N25-64-hex-with-domain-is-a-name",
    ),
    pytest.param(
        "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
        "[fc00:1:2:3:4:5:6:7]:5000/library/debian:latest",
        id="N26-ipv6-full-form",
    ),
    pytest.param(
        "192.168.0.1:80", "docker.io/library/192.168.0.1:80", id="N27-bare-ip-port-is-name-tag"
    ),
    pytest.param("192.168.0.1", "docker.io/library/192.168.0.1:latest", id="N-bare-ip-is-name"),
    pytest.param(
        "test.com:5000", "docker.io/library/test.com:5000", id="P36-bare-host-port-is-name-tag"
    ),
    pytest.param(
        f"test:5000/repo:tag@{SHA_FFFF}",
        f"test:5000/repo:tag@{SHA_FFFF}",
        id="P37-port-domain-tag-digest",
    ),
    pytest.param(
        "lowercase:Uppercase", "docker.io/library/lowercase:Uppercase", id="P39-uppercase-tag"
    ),
    pytest.param(
        f"[2001:db8::1]:5000/repo:tag@{SHA_FFFF}",
        f"[2001:db8::1]:5000/repo:tag@{SHA_FFFF}",
        id="P44-ipv6-port-tag-digest",
    ),
    pytest.param(
        "b.gcr.io/test.example.com/my-app:test.example.com",
        "b.gcr.io/test.example.com/my-app:test.example.com",
        id="P45-dotted-path-and-tag",
    ),
    pytest.param("foo", "docker.io/library/foo:latest", id="PN46-familiar-normalized"),
    pytest.param(
        "docker.io/library/foo", "docker.io/library/foo:latest", id="PN46-canonical-unchanged"
    ),
    pytest.param("localhost:5000/foo", "localhost:5000/foo:latest", id="localhost-with-port"),
    pytest.param("[::1]:5000/x", "[::1]:5000/x:latest", id="ipv6-loopback"),
    pytest.param("dock__er/docker", "docker.io/dock__er/docker:latest", id="double-underscore"),
    pytest.param(
        "docker---rules/docker", "docker.io/docker---rules/docker:latest", id="repeated-dashes"
    ),
    pytest.param("d/docker", "docker.io/d/docker:latest", id="single-char-namespace"),
]


@pytest.mark.parametrize(("text", "expected"), NORMALIZED)
def test_parse_normalizes_like_distribution_reference(text: str, expected: str) -> None:
    assert str(parse_reference(text)) == expected


COMPONENTS = [
    pytest.param("ubuntu", "docker.io", "library/ubuntu", "latest", None, id="N1"),
    pytest.param("library/foo/bar", "docker.io", "library/foo/bar", "latest", None, id="N6"),
    pytest.param("localhost/fooo/bar", "localhost", "fooo/bar", "latest", None, id="N8"),
    pytest.param("LOCALDOMAIN/fooo", "LOCALDOMAIN", "fooo", "latest", None, id="N9"),
    pytest.param("Foo/bar", "Foo", "bar", "latest", None, id="N10"),
    pytest.param(
        "127.0.0.1:8000/privatebase", "127.0.0.1:8000", "privatebase", "latest", None, id="N11"
    ),
    pytest.param(
        "example.com:8000/private/moonbase",
        "example.com:8000",
        "private/moonbase",
        "latest",
        None,
        id="N12",
    ),
    pytest.param("test_com/foo", "docker.io", "test_com/foo", "latest", None, id="N13"),
    pytest.param("test-com:8080/foo", "test-com:8080", "foo", "latest", None, id="N14"),
    pytest.param("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo", "latest", None, id="N15"),
    pytest.param("test.com/foo", "test.com", "foo", "latest", None, id="dotted-host"),
    pytest.param("docker/migrator", "docker.io", "docker/migrator", "latest", None, id="hub-user"),
    pytest.param(
        f"busybox:latest@{SHA_86E0}", "docker.io", "library/busybox", "latest", SHA_86E0, id="N16"
    ),
    pytest.param(f"busybox@{SHA_E669}", "docker.io", "library/busybox", None, SHA_E669, id="D18"),
    pytest.param(
        f"gcr.io/library/busybox:latest@{SHA_E669}",
        "gcr.io",
        "library/busybox",
        "latest",
        SHA_E669,
        id="D21",
    ),
    pytest.param("192.168.0.1:80", "docker.io", "library/192.168.0.1", "80", None, id="N27"),
    pytest.param("test.com:5000", "docker.io", "library/test.com", "5000", None, id="P36"),
    pytest.param(f"test:5000/repo:tag@{SHA_FFFF}", "test:5000", "repo", "tag", SHA_FFFF, id="P37"),
    pytest.param(
        "lowercase:Uppercase", "docker.io", "library/lowercase", "Uppercase", None, id="P39"
    ),
    pytest.param(
        f"[2001:db8::1]:5000/repo:tag@{SHA_FFFF}",
        "[2001:db8::1]:5000",
        "repo",
        "tag",
        SHA_FFFF,
        id="P44",
    ),
    pytest.param(
        "b.gcr.io/test.example.com/my-app:test.example.com",
        "b.gcr.io",
        "test.example.com/my-app",
        "test.example.com",
        None,
        id="P45",
    ),
    pytest.param("[::1]:5000/x", "[::1]:5000", "x", "latest", None, id="ipv6-loopback"),
    pytest.param("[2001:db8::]:5000/repo", "[2001:db8::]:5000", "repo", "latest", None, id="ipv6"),
    pytest.param("[2001:db8::1]/repo", "[2001:db8::1]", "repo", "latest", None, id="ipv6-no-port"),
    pytest.param("localhost:5000/foo", "localhost:5000", "foo", "latest", None, id="localhost"),
]


@pytest.mark.parametrize(("text", "domain", "path", "tag", "digest"), COMPONENTS)
def test_parse_splits_domain_path_tag_and_digest(
    text: str, domain: str, path: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_reference(text)
    assert (ref.domain, ref.path, ref.tag) == (domain, path, tag)
    assert ref.digest == (Digest.parse(digest) if digest else None)


REFUSED = [
    pytest.param(HEX_DBCC, "64-character hexadecimal", id="A22-bare-64-hex"),
    pytest.param(HEX_1A3F, "64-character hexadecimal", id="N33-bare-64-hex"),
    pytest.param("https://github.com/docker/docker", "invalid reference format", id="N28-url"),
    pytest.param("docker/Docker", "must be lowercase", id="N29-uppercase-path"),
    pytest.param("docker.io/docker/Docker", "must be lowercase", id="N29-uppercase-path-hub"),
    pytest.param("-docker", "invalid reference format", id="N30-leading-dash"),
    pytest.param("-docker/docker", "invalid reference format", id="N30-leading-dash-namespace"),
    pytest.param("docker-/docker", "invalid reference format", id="N30-trailing-dash-namespace"),
    pytest.param("-docker-/docker", "invalid reference format", id="dashes-around-namespace"),
    pytest.param("-docker.io/docker/docker", "invalid reference format", id="leading-dash-host"),
    pytest.param("docker///docker", "invalid reference format", id="N31-empty-components"),
    pytest.param("docker.io/docker///docker", "invalid reference format", id="N31-empty-hub"),
    pytest.param("docker/", "invalid reference format", id="N31-no-repository"),
    pytest.param("[fc00::1]", "invalid reference format", id="ipv6-alone"),
    pytest.param("[fc00::1]:5000", "invalid reference format", id="N32-ipv6-no-path"),
    pytest.param("fc00::1:5000/debian", "invalid reference format", id="N32-unbracketed-ipv6"),
    pytest.param("[fe80::1%eth0]:5000/debian", "invalid reference format", id="N32-ipv6-zone"),
    pytest.param(
        "[2001:db8:3:4::192.0.2.33]:5000/debian", "invalid reference format", id="ipv4-mapped"
    ),
    pytest.param("dock..er/docker", "invalid reference format", id="N34-double-period"),
    pytest.param("dock_.er/docker", "invalid reference format", id="N34-underscore-period"),
    pytest.param("dock-.er/docker", "invalid reference format", id="dash-period"),
    pytest.param("____/____", "invalid reference format", id="N34-only-underscores"),
    pytest.param("_docker/_docker", "invalid reference format", id="leading-underscores"),
    pytest.param(f"{LONG_NAMESPACE}/docker", "longer than 255", id="N35-namespace-too-long"),
    pytest.param("Uppercase:tag", "must be lowercase", id="P38-uppercase-name"),
    pytest.param(
        "test:5000/Uppercase/lowercase:tag", "must be lowercase", id="P38-uppercase-after-domain"
    ),
    pytest.param("repo@sha256:" + "f" * 34, "64 lowercase hex", id="P40-short-digest"),
    pytest.param("validname@sha512:" + "f" * 128, "unsupported digest algorithm", id="P41-sha512"),
    pytest.param(
        "validname@invaliddigest:" + "f" * 64,
        "unsupported digest algorithm",
        id="P-unknown-algorithm",
    ),
    pytest.param("domain/" + "a" * 256 + ":tag", "longer than 255", id="P42-path-too-long"),
    pytest.param("", "empty", id="P43-empty"),
    pytest.param(":justtag", "invalid reference format", id="P43-tag-without-name"),
    pytest.param(f"@{SHA_FFFF}", "invalid reference format", id="P43-digest-without-name"),
    pytest.param("[2001:db8::1]", "invalid reference format", id="P44-ipv6-alone"),
    pytest.param("[2001:db8::1]:tag", "invalid reference format", id="P44-ipv6-tag"),
    pytest.param("aa/asdf$$^/aa", "invalid reference format", id="P-punctuation"),
    pytest.param("alpine:.x", "invalid tag", id="tag-starting-with-period"),
    pytest.param("alpine:-x", "invalid tag", id="tag-starting-with-dash"),
    pytest.param("alpine:", "invalid tag", id="empty-tag"),
    pytest.param("alpine@sha256:" + "A" * 64, "64 lowercase hex", id="uppercase-hex-digest"),
    pytest.param("alpine@sha256:abc", "invalid digest", id="digest-too-short-for-grammar"),
    pytest.param("alpine\n", "invalid reference format", id="trailing-newline"),
    pytest.param("foo_bar.com/x", "not a valid registry host", id="domain-outside-grammar"),
]


@pytest.mark.parametrize(("text", "reason"), REFUSED)
def test_parse_refuses_what_distribution_reference_refuses(text: str, reason: str) -> None:
    with pytest.raises(InvalidReferenceError) as caught:
        parse_reference(text)
    assert reason in caught.value.reason
    assert caught.value.text == text


FAMILIAR = [
    pytest.param("ubuntu", "ubuntu", "ubuntu:latest", id="N1-official"),
    pytest.param("library/foo/bar", "library/foo/bar", "library/foo/bar:latest", id="N6-nested"),
    pytest.param("fooo/bar", "fooo/bar", "fooo/bar:latest", id="N5-user"),
    pytest.param("localhost/fooo", "localhost/fooo", "localhost/fooo:latest", id="N8-localhost"),
    pytest.param("127.0.0.1:5000/x", "127.0.0.1:5000/x", "127.0.0.1:5000/x:latest", id="ip"),
    pytest.param(
        f"busybox:latest@{SHA_86E0}",
        "busybox",
        f"busybox:latest@{SHA_86E0}",
        id="N16-tag-and-digest",
    ),
    pytest.param(f"redis@{SHA_DBCC}", "redis", f"redis@{SHA_DBCC}", id="digest-only"),
    pytest.param("gcr.io/library/x:1", "gcr.io/library/x", "gcr.io/library/x:1", id="other-host"),
]


@pytest.mark.parametrize(("text", "familiar_name", "familiar"), FAMILIAR)
def test_familiar_form_drops_docker_hub_domain_and_library(
    text: str, familiar_name: str, familiar: str
) -> None:
    ref = parse_reference(text)
    assert ref.familiar_name == familiar_name
    assert ref.familiar() == familiar


IDENTIFIERS = [
    pytest.param("alpine", "latest", id="default-tag"),
    pytest.param("alpine:3.19", "3.19", id="tag"),
    pytest.param(f"alpine@{SHA_DBCC}", SHA_DBCC, id="digest"),
    pytest.param(f"alpine:3.19@{SHA_DBCC}", SHA_DBCC, id="digest-wins-over-tag"),
]


@pytest.mark.parametrize(("text", "identifier"), IDENTIFIERS)
def test_identifier_prefers_digest_over_tag(text: str, identifier: str) -> None:
    assert parse_reference(text).identifier == identifier


def test_bare_name_pulls_latest_from_docker_hub_registry_host() -> None:
    ref = parse_reference("alpine")
    assert ref == Reference("docker.io", "library/alpine", "latest")
    assert ref.name == "docker.io/library/alpine"
    assert str(ref) == "docker.io/library/alpine:latest"
    assert ref.registry_host == "registry-1.docker.io"


@pytest.mark.parametrize(
    ("text", "host"),
    [
        pytest.param("localhost:5000/foo", "localhost:5000", id="localhost"),
        pytest.param("[::1]:5000/x", "[::1]:5000", id="ipv6"),
        pytest.param("Foo/bar", "Foo", id="uppercase-domain"),
        pytest.param("index.docker.io/x/y", "registry-1.docker.io", id="legacy-hub"),
    ],
)
def test_registry_host_is_the_domain_except_for_docker_hub(text: str, host: str) -> None:
    assert parse_reference(text).registry_host == host


def test_str_keeps_tag_before_digest() -> None:
    ref = parse_reference(f"x:1@{SHA_DBCC}")
    assert str(ref) == f"docker.io/library/x:1@{SHA_DBCC}"


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        pytest.param("example.com/" + "a" * 255 + ":tag", True, id="P42-path-255-accepted"),
        pytest.param("example.com/" + "a" * 256 + ":tag", False, id="path-256-refused"),
        pytest.param("a" * 247, True, id="library-prefix-counts-255"),
        pytest.param("a" * 248, False, id="library-prefix-counts-256"),
        pytest.param(
            ".".join(["h" * 60] * 8) + ":5000/" + "a" * 255, True, id="domain-not-counted"
        ),
    ],
)
def test_path_length_limit_is_255_excluding_domain(text: str, ok: bool) -> None:
    if ok:
        assert len(parse_reference(text).path) <= 255
    else:
        with pytest.raises(InvalidReferenceError, match="longer than 255"):
            parse_reference(text)


def test_tag_of_128_characters_is_accepted() -> None:
    tag = "T" + "a" * 127
    assert parse_reference(f"alpine:{tag}").tag == tag


def test_tag_of_129_characters_is_refused() -> None:
    with pytest.raises(InvalidReferenceError, match="invalid tag"):
        parse_reference("alpine:" + "a" * 129)


def test_64_hex_name_with_tag_is_a_repository_not_an_identifier() -> None:
    assert parse_reference(f"{HEX_1A3F}:v1").path == f"library/{HEX_1A3F}"


def test_with_tag_replaces_tag_and_keeps_digest() -> None:
    ref = parse_reference(f"gcr.io/x/y:1@{SHA_DBCC}").with_tag("2")
    assert str(ref) == f"gcr.io/x/y:2@{SHA_DBCC}"


def test_with_tag_adds_tag_to_digest_only_reference() -> None:
    ref = parse_reference(f"alpine@{SHA_DBCC}").with_tag("3.19")
    assert (ref.tag, ref.identifier) == ("3.19", SHA_DBCC)


@pytest.mark.parametrize("tag", [".x", "-x", "", "a" * 129, "a/b", "a:b", "ä"])
def test_with_tag_refuses_invalid_tag(tag: str) -> None:
    with pytest.raises(InvalidReferenceError, match="invalid tag"):
        parse_reference("alpine").with_tag(tag)


@pytest.mark.parametrize(
    ("domain", "path", "tag"),
    [
        pytest.param("", "x", None, id="empty-domain"),
        pytest.param("docker.io", "Library/x", None, id="uppercase-path"),
        pytest.param("docker.io", "../x", None, id="path-traversal"),
        pytest.param("docker.io", "x", "-bad", id="bad-tag"),
        pytest.param("docker.io", "a" * 256, None, id="long-path"),
    ],
)
def test_constructor_refuses_parts_outside_the_grammar(
    domain: str, path: str, tag: str | None
) -> None:
    with pytest.raises(InvalidReferenceError):
        Reference(domain, path, tag)


def test_reference_without_tag_or_digest_asks_for_latest() -> None:
    ref = Reference(DEFAULT_DOMAIN, "library/alpine")
    assert (str(ref), ref.identifier) == ("docker.io/library/alpine", DEFAULT_TAG)


def test_references_are_hashable_values() -> None:
    assert len({parse_reference("alpine"), parse_reference("docker.io/library/alpine:latest")}) == 1


def test_a_reference_prints_and_reprs_as_the_reference_string() -> None:
    reference = parse_reference("alpine:3.20")

    assert str(reference) == "docker.io/library/alpine:3.20"
    assert repr(reference) == "Reference('docker.io/library/alpine:3.20')"
    assert f"{reference}" == str(reference)
    assert "Reference('docker.io/library/alpine:3.20')" in repr([reference])

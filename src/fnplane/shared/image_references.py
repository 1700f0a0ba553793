"""Container image references: `image_reference_error(text)` says why `text` is not one.

A function's `containerImage` is pulled by Docker, Podman or containerd, which all read it with the
grammar of the `distribution/reference` Go package (`reference.go`, `regexp.go`):

    reference          := name [ ":" tag ] [ "@" digest ]
    name               := [ domain "/" ] path
    domain             := host [ ":" port-number ]
    host               := domain-name | "[" IPv6address "]"
    domain-name        := domain-component [ "." domain-component ]*
    domain-component   := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
    port-number        := /[0-9]+/
    path               := path-component [ "/" path-component ]*
    path-component     := alpha-numeric [ separator alpha-numeric ]*
    alpha-numeric      := /[a-z0-9]+/
    separator          := /[_.]|__|[-]+/
    tag                := /[\\w][\\w.-]{0,127}/
    digest             := digest-algorithm ":" digest-hex
    digest-algorithm   := component [ /[+.-_]/ component ]*, component := /[A-Za-z][A-Za-z0-9]*/
    digest-hex         := /[0-9a-fA-F]{32,}/

plus the checks `reference.Parse` makes after the match: the path is at most 255 characters, and the
digest is one `go-digest` validates (`sha256`, `sha384` or `sha512`, with that many lowercase hex
digits); and the one `ParseNormalizedNamed` (what `docker pull` calls) adds: a bare 64-digit hex
string is an image id, not a name. A name without a domain is Docker Hub's (`python:3`), and
`localhost/...`, `host:port/...` and digests (`name@sha256:...`) are all references.

It is checked at registration so that a function that can never be pulled is a 400 naming
`containerImage`, not a deployment that fails later. The grammar is small and stable, so it lives
here as a regular expression rather than as a dependency (its Python port, docker-image-py, is
untyped and needs the compiled `regex` module).
"""

from __future__ import annotations

import re

# regexp.go, with Go's ASCII `\w` and `[[:xdigit:]]` spelled out
_ALPHA_NUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALPHA_NUMERIC}(?:{_SEPARATOR}{_ALPHA_NUMERIC})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6_ADDRESS = r"\[[a-fA-F0-9:]+\]"
_DOMAIN = rf"(?:{_DOMAIN_NAME}|{_IPV6_ADDRESS})(?::[0-9]+)?"
_PATH = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
# groups: 1 domain, 2 path, 3 tag, 4 digest (unnamed, so that the OpenAPI document can carry it too)
_REFERENCE = rf"(?:({_DOMAIN})/)?({_PATH})(?::({_TAG}))?(?:@({_DIGEST}))?"
REFERENCE_PATTERN = re.compile(_REFERENCE)
# the same as a JSON Schema `pattern` (ECMA-262, which matches anywhere unless anchored)
REFERENCE_SCHEMA_PATTERN = f"^{_REFERENCE}$"
_IMAGE_ID = re.compile(r"[a-f0-9]{64}")

MAX_PATH_LENGTH = 255
# fnplane's: past any real reference (a 253-character host, a 255-character path, a tag and a sha512
# digest are ~780), and it bounds the regular expression's work
MAX_REFERENCE_LENGTH = 1024
# go-digest's algorithms and the length of their hex
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_DIGEST_HEX = re.compile(r"[a-f0-9]+")

REFERENCE_RULE = "must be an image reference [host[:port]/]name[:tag][@digest], as Docker and Podman read it"


def image_reference_error(text: str) -> str | None:
    """What makes `text` no image reference (a phrase for a 400's rule), None when it is one."""
    match = REFERENCE_PATTERN.fullmatch(text)
    if match is None:
        if REFERENCE_PATTERN.fullmatch(text.lower()) is not None:
            return "the repository name must be lowercase"
        return (
            "invalid reference format (the name's components are lowercase letters and digits joined "
            "by '.', '_', '__', '-' or '/'; a tag is at most 128 letters, digits, '_', '.' and '-'; a "
            "digest is an algorithm, ':' and hex digits)"
        )
    if len(match[2]) > MAX_PATH_LENGTH:
        return f"the repository name must be at most {MAX_PATH_LENGTH} characters"
    if _IMAGE_ID.fullmatch(text):
        return "a 64-digit hex string is an image id, not a reference"
    digest = match[4]
    if digest is not None:
        algorithm, _, hex_digits = digest.partition(":")
        length = _DIGEST_HEX_LENGTHS.get(algorithm)
        if length is None:
            return f"unsupported digest algorithm {algorithm} (sha256, sha384 or sha512)"
        if len(hex_digits) != length or not _DIGEST_HEX.fullmatch(hex_digits):
            return f"a {algorithm} digest is {length} lowercase hex digits"
    return None

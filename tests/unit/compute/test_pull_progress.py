"""The one-line summary of an image pull, from the progress lines Docker and Podman stream."""

from __future__ import annotations

from fnplane.compute.backends.pull_progress import PullProgress

IMAGE = "nvcr.io/acme/model:1"


def _summary(*lines: dict) -> str:
    progress = PullProgress(IMAGE)
    for line in lines:
        progress.add(line)
    return progress.summary()


def test_before_any_layer_it_names_the_image() -> None:
    assert _summary() == f"pulling image {IMAGE}"
    assert _summary({"status": "Pulling from acme/model", "id": "1"}, {"status": "Trying to pull"}) == (
        f"pulling image {IMAGE}"
    )


def test_docker_layers_count_when_downloaded_and_bytes_add_up() -> None:
    lines = [
        {"status": "Pulling from acme/model", "id": "1"},
        {"status": "Already exists", "progressDetail": {}, "id": "aaa"},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "bbb"},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "ccc"},
        {"status": "Waiting", "progressDetail": {}, "id": "ccc"},
        {"status": "Downloading", "progressDetail": {"current": 500_000, "total": 2_000_000}, "id": "bbb"},
    ]
    assert _summary(*lines) == f"pulling image {IMAGE}: 1 of 3 layers, 0.5 of 2.0 MB"
    lines += [
        {"status": "Downloading", "progressDetail": {"current": 1_500_000, "total": 2_000_000}, "id": "bbb"},
        {"status": "Downloading", "progressDetail": {"current": 1_000_000, "total": 30_000_000}, "id": "ccc"},
    ]
    assert _summary(*lines) == f"pulling image {IMAGE}: 1 of 3 layers, 2.5 of 32.0 MB"
    # a downloaded layer counts in full, and is here while it is extracted
    lines += [
        {"status": "Verifying Checksum", "progressDetail": {}, "id": "bbb"},
        {"status": "Download complete", "progressDetail": {}, "id": "bbb"},
        {"status": "Extracting", "progressDetail": {"current": 32768, "total": 2_000_000}, "id": "bbb"},
    ]
    assert _summary(*lines) == f"pulling image {IMAGE}: 2 of 3 layers, 3.0 of 32.0 MB"
    lines += [
        {"status": "Pull complete", "progressDetail": {}, "id": "bbb"},
        {"status": "Pull complete", "progressDetail": {}, "id": "ccc"},
        {"status": "Digest: sha256:0123"},
        {"status": f"Status: Downloaded newer image for {IMAGE}"},
    ]
    assert _summary(*lines) == f"pulling image {IMAGE}: 3 of 3 layers, 32.0 of 32.0 MB"


def test_podman_layers_without_bytes() -> None:
    # what Podman 4.3's compatible API streamed for the tests' registry image
    lines = [
        {"status": "Already exists", "progressDetail": {}, "id": "53c685ff09ad"},
        {"status": "Already exists", "progressDetail": {}, "id": "abb4b63df3a8"},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "ae618d1ae093"},
    ]
    assert _summary(*lines) == f"pulling image {IMAGE}: 2 of 3 layers"
    lines.append({"status": "Download complete", "progressDetail": {}, "id": "ae618d1ae093"})
    assert _summary(*lines) == f"pulling image {IMAGE}: 3 of 3 layers"


def test_odd_lines_count_for_nothing() -> None:
    assert (
        _summary(
            {"status": "Downloading", "progressDetail": {"current": "a lot", "total": None}, "id": "x"},
            {"status": "Downloading", "progressDetail": {"current": 5, "total": 0}, "id": "y"},
            {"status": "Downloading", "progressDetail": "nothing", "id": "z"},
            {"status": "Already exists"},
            {"progressDetail": {}, "id": "w"},
            {"error": "boom"},
        )
        == f"pulling image {IMAGE}: 0 of 3 layers"
    )
    # a count beyond the total is the total
    assert (
        _summary(
            {"status": "Downloading", "progressDetail": {"current": 9_000_000, "total": 1_000_000}, "id": "x"}
        )
        == f"pulling image {IMAGE}: 0 of 1 layers, 1.0 of 1.0 MB"
    )

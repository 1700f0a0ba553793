from fnplane.control.uuid_paths import lower_uuid_segments, normalize_path

FID = "CF29D4CD-C1C3-4FB7-BBC9-A60C0D8B9626"


def test_only_whole_uuid_segments_are_lowered() -> None:
    assert lower_uuid_segments(f"/v2/nvcf/functions/{FID}/versions/{FID}") == (
        f"/v2/nvcf/functions/{FID.lower()}/versions/{FID.lower()}"
    )
    assert lower_uuid_segments(f"/v2/nvcf/functions/{FID}") == f"/v2/nvcf/functions/{FID.lower()}"
    # not a whole segment, or not a UUID: untouched
    assert lower_uuid_segments(f"/x/{FID}X/Y") == f"/x/{FID}X/Y"
    assert lower_uuid_segments("/v2/nvcf/clusterGroups") == "/v2/nvcf/clusterGroups"


def test_a_trailing_slash_is_dropped_but_not_the_root() -> None:
    path = f"/v2/nvcf/functions/{FID}/versions/"
    assert normalize_path(path) == f"/v2/nvcf/functions/{FID.lower()}/versions"
    assert normalize_path("/v2/nvcf/functions//") == "/v2/nvcf/functions"
    assert normalize_path("/") == "/"

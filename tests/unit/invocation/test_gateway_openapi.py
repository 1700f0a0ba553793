"""The gateway's paths in `GET /v3/openapi`: every error they document is a problem document."""

from __future__ import annotations

from fnplane.invocation.openapi import GATEWAY_OPENAPI_PATHS, merge_into
from fnplane.shared.problems import PROBLEM_CONTENT_TYPE, PROBLEM_SCHEMA


def test_merged_paths_bring_the_problem_schema_and_keep_existing_paths() -> None:
    existing = {"get": {"responses": {"200": {"description": "mine"}}}}
    document = merge_into({"paths": {"/v2/nvcf/assets": existing}})
    assert document["components"]["schemas"]["Problem"] == PROBLEM_SCHEMA
    assert document["paths"]["/v2/nvcf/assets"] is existing
    assert set(GATEWAY_OPENAPI_PATHS) <= set(document["paths"])


def test_every_gateway_operation_documents_its_errors_as_problems() -> None:
    for path, item in GATEWAY_OPENAPI_PATHS.items():
        for method, operation in item.items():
            errors = {s: r for s, r in operation["responses"].items() if s >= "400"}
            assert {"401", "403", "404", "429", "503"} <= set(errors), (method, path)
            for status, response in errors.items():
                if status == "504":  # NVCF's timeout: an empty body
                    assert "content" not in response
                    continue
                schema = response["content"][PROBLEM_CONTENT_TYPE]["schema"]
                assert schema == {"$ref": "#/components/schemas/Problem"}, (method, path, status)

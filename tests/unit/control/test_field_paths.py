"""The field a validation error names: dotted from the body root, union tags dropped, rules' fields."""

from __future__ import annotations

from fnplane.control.field_paths import field_and_rule, field_path

BODY = {"deploymentSpecifications": [{"gpu": "L40S"}, {"gpu": 5}], "secrets": [{"name": "A", "value": 5}]}


def test_indexes_are_dotted_and_union_tags_dropped() -> None:
    assert field_path({"loc": ("body", "deploymentSpecifications", 1, "gpu")}, BODY) == (
        "deploymentSpecifications.1.gpu"
    )
    assert field_path({"loc": ("body", "secrets", 0, "value", "str")}, BODY) == "secrets.0.value"
    assert field_path({"loc": ("body", "secrets", 0, "value", "dict[str,any]")}, BODY) == "secrets.0.value"


def test_a_missing_field_is_named_and_query_parameters_by_their_name() -> None:
    assert field_path({"loc": ("body", "deploymentSpecifications", 0, "minInstances")}, BODY) == (
        "deploymentSpecifications.0.minInstances"
    )
    assert field_path({"loc": ("query", "tail")}, None) == "tail"
    assert field_path({"loc": ("body",)}, []) == "body"


def test_a_model_rule_names_its_field() -> None:
    error = {"loc": ("body", "deploymentSpecifications", 0), "ctx": {"field": "minInstances"}}
    assert field_path(error, BODY) == "deploymentSpecifications.0.minInstances"
    assert field_path({"loc": ("body",), "ctx": {"field": "models.0.uri"}}, {}) == "models.0.uri"


def test_the_rules_of_one_field_are_joined() -> None:
    errors = [
        {"loc": ("body", "secrets", 0, "value", "str"), "msg": "Input should be a valid string"},
        {
            "loc": ("body", "secrets", 0, "value", "dict[str,any]"),
            "msg": "Input should be a valid dictionary",
        },
        {"loc": ("body", "name"), "msg": "Field required"},
    ]
    assert field_and_rule(errors, BODY) == (
        "secrets.0.value",
        "Input should be a valid string or Input should be a valid dictionary",
    )
    invalid_json = [{"type": "json_invalid", "loc": ("body", 7), "ctx": {"error": "Expecting value"}}]
    assert field_and_rule(invalid_json, None) == ("body", "must be valid JSON (Expecting value)")

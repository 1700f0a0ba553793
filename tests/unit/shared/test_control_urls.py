import pytest

from fnplane.shared.control_urls import ControlUrls


def test_one_url_is_the_list_and_a_trailing_slash_goes() -> None:
    urls = ControlUrls("http://control:8080/")
    assert urls.in_order() == ["http://control:8080"]
    urls.unreachable("http://control:8080")
    assert urls.first == "http://control:8080"


def test_an_unreachable_replica_goes_to_the_back() -> None:
    urls = ControlUrls(" http://a:8080, http://b:8080 ,http://c:8080")
    assert urls.in_order() == ["http://a:8080", "http://b:8080", "http://c:8080"]
    urls.unreachable("http://a:8080")
    assert urls.in_order() == ["http://b:8080", "http://c:8080", "http://a:8080"]
    urls.unreachable("http://unknown:1")
    assert str(urls) == "http://b:8080,http://c:8080,http://a:8080"


def test_an_empty_list_is_refused() -> None:
    with pytest.raises(ValueError, match="no control API URL"):
        ControlUrls(" , ")

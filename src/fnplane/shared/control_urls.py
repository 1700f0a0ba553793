"""The control API's addresses: one URL, or the replicas' URLs ("http://a:8080,http://b:8080").

    urls = ControlUrls("http://control-1:8080,http://control-2:8080")
    for base in urls.in_order():      # the replica that answered last comes first
        ...                           # on a connection error: urls.unreachable(base), then the next

The agent, the gateway and the gRPC proxy send each call to the replica that answered last; one they
cannot reach goes to the back of the list and the call is tried on the next, so no load balancer is
needed in front of the control replicas (with one, give its one URL). Any replica answers any call
(docs/deploy.md).
"""

from __future__ import annotations


class ControlUrls:
    def __init__(self, value: str) -> None:
        self._urls = [url.strip().rstrip("/") for url in value.split(",") if url.strip()]
        if not self._urls:
            raise ValueError("no control API URL given")

    def in_order(self) -> list[str]:
        return list(self._urls)

    @property
    def first(self) -> str:
        return self._urls[0]

    def unreachable(self, url: str) -> None:
        """`url` did not answer: the others are tried first from now on."""
        if url in self._urls and len(self._urls) > 1:
            self._urls.remove(url)
            self._urls.append(url)

    def __str__(self) -> str:
        return ",".join(self._urls)

"""The request metrics keep a bounded set of series whatever method tokens clients invent."""

from __future__ import annotations

from ..utils import Server
from .test_operations import get_metrics, sample

INVENTED = [f"XMETHOD{i}" for i in range(20)]


def test_invented_methods_share_one_label_value(server: Server) -> None:
    before = get_metrics(server)
    with server.client() as client:
        for method in INVENTED:
            assert client.request(method, "/health").status_code == 405
        assert client.request("DELETE", "/health").status_code == 405
    after = get_metrics(server)
    assert not [m for m in INVENTED if m in after]
    grown = (sample(after, "sandbox_request_duration_seconds_count", method="other",
                    route="/health", status="405")
             - sample(before, "sandbox_request_duration_seconds_count", method="other",
                      route="/health", status="405"))
    assert grown == len(INVENTED)
    # Standard methods keep their own value.
    assert sample(after, "sandbox_request_duration_seconds_count", method="DELETE",
                  route="/health", status="405") >= 1


def test_unknown_paths_share_one_route_value(server: Server) -> None:
    paths = [f"/invented/{i}/path" for i in range(20)] + ["/%FF%FE", "/api/v2/nope"]
    before = get_metrics(server)
    with server.client() as client:
        for path in paths:
            assert client.get(path).status_code == 404
    after = get_metrics(server)
    assert "invented" not in after and "nope" not in after
    grown = (sample(after, "sandbox_request_duration_seconds_count", method="GET",
                    route="unmatched", status="404")
             - sample(before, "sandbox_request_duration_seconds_count", method="GET",
                      route="unmatched", status="404"))
    assert grown == len(paths)

"""Issue 16 item 11: schemathesis against the in-process ASGI app, on a short budget, as four identities.

Every operation of the OpenAPI schema (but the event stream, which stays open by design and has its own tests
in test_endpoints.py) is driven with generated requests - valid and invalid - under a key of each role
(viewer, trader, risk_officer, admin). schemathesis checks every answer: no 5xx, the status is one the schema
documents, the body matches the documented model (the error envelope included), the content type and headers
conform. ``MARGINCAL_SCHEMATHESIS_EXAMPLES`` raises the budget (default 6 examples per operation and role).
"""

from __future__ import annotations

import os
import warnings

import pytest
from hypothesis import HealthCheck, given, settings

from margincal.service.app import ServiceSettings, create_app

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

EXAMPLES = int(os.environ.get("MARGINCAL_SCHEMATHESIS_EXAMPLES", "6"))
CONTENT_CHECKED = ("/api/margin", "/api/policy")  # bodies whose content (not shape) the service checks
SKIP = {"/api/signals/stream"}  # a server-sent event stream: open until max_seconds (tested in test_endpoints.py)


@pytest.fixture(scope="module")
def api(seeded_template, tmp_path_factory):  # type: ignore[no-untyped-def]
    from importlib import resources

    from .conftest import copy_store

    src, keys = seeded_template
    d = tmp_path_factory.mktemp("schemathesis")
    path = copy_store(src, d)
    policy = d / "policy.toml"
    policy.write_text(resources.files("margincal.adjust").joinpath("default_policy.toml").read_text(encoding="utf-8"))
    app = create_app(ServiceSettings(store=path, policy_path=policy, sse_poll_interval=0.05))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    yield schema, keys
    app.state.store.close()


@pytest.mark.parametrize("role", ["viewer", "trader", "risk_officer", "admin"])
def test_schemathesis_clean_for_every_role(api, role):  # type: ignore[no-untyped-def]
    schema, keys = api
    headers = {"X-API-Key": keys[role]}
    failures: list[str] = []
    ops = [r.ok() for r in schema.get_all_operations()]
    ops = [op for op in ops if op.path not in SKIP]
    assert len(ops) >= 20, [op.label for op in ops]
    calls = 0
    for op in ops:
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def run(case):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            resp = case.call(headers=headers)
            if case.operation.path.startswith(CONTENT_CHECKED):
                # A schema-valid body may name an instrument the store has no parameters for (or a spot name the
                # risk matrix does not price), or hold a policy file whose TOML or rules are wrong: the store and
                # the policy rules decide that, not the schema, and answer 422 with a one-line message
                # (tests/service/test_errors.py, test_endpoints.py). A 422 listing field errors here would be a
                # body the schema allows but the model refuses: a schema that misdescribes the model.
                case.validate_response(resp, headers=headers, excluded_checks=[positive_data_acceptance])
                if resp.status_code == 422:
                    body = resp.json()
                    assert isinstance(body["detail"], str), body
            else:
                case.validate_response(resp, headers=headers)

        try:
            run()
        except Exception as exc:  # collect every operation's failure, report them together
            failures.append(f"{op.label}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
    assert calls >= len(ops)

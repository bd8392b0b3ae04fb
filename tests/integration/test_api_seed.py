"""The seed page: start `customer-onboarding` and carry it to completion over HTTP."""

from __future__ import annotations

from typing import Any

import httpx
from tests.support.api import ULID, UTC_TIMESTAMP, instance, step_states, submitted

SEED_BODY = {"inputs": {"company_name": "Acme Corp", "country": "US"}}
BUSINESS_INFO = {
    "legal_name": "Acme Corporation LLC",
    "tax_id": "12-3456789",
    "fiscal_address": "1 Main St, Springfield",
    "monthly_volume_usd": 250000,
}


def start_seed(client: httpx.Client, country: str = "US") -> dict[str, Any]:
    body = {"inputs": {**SEED_BODY["inputs"], "country": country}}
    response = client.post("/sop/customer-onboarding/start", json=body)
    assert response.status_code == 201, response.text
    started: dict[str, Any] = response.json()
    return started


def pending_for(client: httpx.Client, instance_id: str) -> list[dict[str, Any]]:
    response = client.get("/sop/steps/pending")
    assert response.status_code == 200, response.text
    return [item for item in response.json() if item["instance_id"] == instance_id]


def test_seed_request_answers_201_with_the_seed_fields(client: httpx.Client) -> None:
    response = client.post("/sop/customer-onboarding/start", json=SEED_BODY)

    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert ULID.match(body["id"]), body["id"]
    assert body["process"] == "customer-onboarding"
    assert body["version"] == "1.0"
    assert body["state"] == "running"
    assert isinstance(body["started_at"], str) and UTC_TIMESTAMP.match(body["started_at"])
    # The seed's five fields come first and in the seed's order; the rest are additive.
    assert list(body)[:5] == ["id", "process", "version", "state", "started_at"]


def test_seed_instance_waits_for_business_info_first(client: httpx.Client) -> None:
    body = start_seed(client)

    assert step_states(body) == {
        "collect-business-info": ("active", "waiting_for_input"),
        "mx-compliance": ("pending", None),
        "score-risk": ("pending", None),
        "manager-approval": ("pending", None),
    }
    first = body["steps"][0]
    assert first["inputs"] == {"company_name": "Acme Corp", "country": "US"}


def test_us_customer_skips_compliance_and_completes(client: httpx.Client) -> None:
    started = start_seed(client, "US")
    instance_id = started["id"]
    assert pending_for(client, instance_id) == []

    info = submitted(
        client,
        "customer-onboarding",
        instance_id,
        "collect-business-info",
        BUSINESS_INFO,
        decided_by="human:ana",
    )
    assert info["state"] == "completed"
    assert info["instance"]["state"] == "running"
    body = instance(client, "customer-onboarding", instance_id)
    assert step_states(body)["mx-compliance"] == ("skipped", None)
    assert step_states(body)["score-risk"] == ("active", "waiting_for_worker")

    work = pending_for(client, instance_id)
    assert work == [
        {
            "step_id": "score-risk",
            "instance_id": instance_id,
            "process": "customer-onboarding",
            # A reference to a skipped step's output resolves to null.
            "inputs": {"country": "US", "monthly_volume_usd": 250000, "rfc_verified": None},
        }
    ]
    submitted(
        client,
        "customer-onboarding",
        instance_id,
        "score-risk",
        {"risk_score": 12.5, "risk_level": "low"},
        decided_by="worker:risk",
    )
    assert pending_for(client, instance_id) == []
    body = instance(client, "customer-onboarding", instance_id)
    approval = body["steps"][3]
    assert (approval["state"], approval["sub_state"]) == ("active", "waiting_for_approval")
    assert approval["inputs"] == {
        "legal_name": "Acme Corporation LLC",
        "risk_level": "low",
        "risk_score": 12.5,
    }

    decided = submitted(
        client,
        "customer-onboarding",
        instance_id,
        "manager-approval",
        {"approved": True, "notes": "Low risk"},
        decided_by="human:maria",
    )

    assert decided["instance"]["state"] == "completed"
    assert UTC_TIMESTAMP.match(decided["instance"]["completed_at"])
    expected_outputs = {"approved": True, "risk_level": "low", "legal_name": "Acme Corporation LLC"}
    assert decided["instance"]["outputs"] == expected_outputs
    final = instance(client, "customer-onboarding", instance_id)
    assert final["state"] == "completed"
    assert final["outputs"] == expected_outputs
    assert final["completed_at"] == decided["instance"]["completed_at"]
    assert [s["state"] for s in final["steps"]] == [
        "completed",
        "skipped",
        "completed",
        "completed",
    ]
    assert [s["decided_by"] for s in final["steps"]] == [
        "human:ana",
        None,
        "worker:risk",
        "human:maria",
    ]


def test_mexican_customer_goes_through_compliance(client: httpx.Client) -> None:
    instance_id = start_seed(client, "MX")["id"]

    submitted(client, "customer-onboarding", instance_id, "collect-business-info", BUSINESS_INFO)
    body = instance(client, "customer-onboarding", instance_id)
    compliance = body["steps"][1]
    assert (compliance["state"], compliance["sub_state"]) == ("active", "waiting_for_input")
    assert compliance["inputs"] == {"tax_id": "12-3456789"}
    assert pending_for(client, instance_id) == []

    submitted(
        client,
        "customer-onboarding",
        instance_id,
        "mx-compliance",
        {"rfc_verified": True, "beneficial_owners": ["Ana Pérez", "Luis Gómez"]},
    )
    [work] = pending_for(client, instance_id)
    assert work["inputs"] == {"country": "MX", "monthly_volume_usd": 250000, "rfc_verified": True}
    submitted(
        client,
        "customer-onboarding",
        instance_id,
        "score-risk",
        {"risk_score": 80, "risk_level": "high"},
    )
    decided = submitted(
        client, "customer-onboarding", instance_id, "manager-approval", {"approved": False}
    )

    assert decided["instance"]["state"] == "completed"
    assert decided["instance"]["outputs"] == {
        "approved": False,
        "risk_level": "high",
        "legal_name": "Acme Corporation LLC",
    }
    assert [s["state"] for s in instance(client, "customer-onboarding", instance_id)["steps"]] == [
        "completed"
    ] * 4

"""The JSON API, through real gunicorn, with real workers behind it."""

import time

import pytest
import requests

from testsupport import wait_for

# Every call here is authenticated; tests/test_security.py covers the unauthenticated ones.
client = requests.Session()
# A new connection per request: gunicorn closes idle keep-alive connections after 5 s, and a
# request sent on one just as it closes fails with RemoteDisconnected (seen on a busy machine).
client.headers["Connection"] = "close"


@pytest.fixture(autouse=True)
def _authenticated(api_token):
    client.headers["Authorization"] = f"Bearer {api_token}"


def enqueue(web, name, body=None, **kwargs):
    return client.post(f"{web.url}/api/tasks/{name}", json=body or {}, timeout=10, **kwargs)


def final_state(web, status_url, timeout=30):
    def done():
        data = client.get(web.url + status_url, timeout=5).json()
        return data if data["state"] in {"SUCCESS", "FAILURE", "REVOKED"} else None

    return wait_for(done, timeout, interval=0.2, what=f"{status_url} to finish")


def test_enqueue_returns_202_and_status_reports_result(web):
    response = enqueue(web, "add", {"args": [2, 3]})
    assert response.status_code == 202
    body = response.json()
    assert body["status_url"] == f"/api/tasks/{body['id']}"
    data = final_state(web, body["status_url"])
    assert data == {**data, "state": "SUCCESS", "result": 5, "name": "jobs.tasks.add"}


def test_kwargs_and_countdown(web):
    started = time.time()
    response = enqueue(web, "xsum", {"kwargs": {"numbers": [1, 2.5, 3]}, "countdown": 1})
    assert response.status_code == 202
    data = final_state(web, response.json()["status_url"])
    assert data["result"] == 6.5
    assert time.time() - started >= 1


def test_long_job_reports_progress_then_succeeds(web):
    response = enqueue(web, "long_job", {"kwargs": {"seconds": 4, "steps": 8}})
    status_url = response.json()["status_url"]

    def progress():
        data = client.get(web.url + status_url, timeout=5).json()
        return data if data["state"] == "PROGRESS" else None

    data = wait_for(progress, 10, interval=0.1, what="PROGRESS state")
    assert 0 < data["progress"]["percent"] <= 100
    assert data["progress"]["steps"] == 8
    assert final_state(web, status_url)["result"]["steps"] == 8


def test_report_workflow_runs_chain_of_chord(web):
    response = client.post(
        f"{web.url}/api/workflows/report",
        json={"title": "Q4", "chunks": [[1, 2], [3, 4], [5]]},
        timeout=10,
    )
    assert response.status_code == 202
    result = final_state(web, response.json()["status_url"])["result"]
    assert result["title"] == "Q4"
    assert result["totals"] == [3, 7, 5]
    assert result["grand_total"] == 15
    assert isinstance(result["widget_count"], int)
    assert result["published_at"] > 0


@pytest.mark.parametrize(
    ("name", "body", "status", "code", "mentions"),
    [
        ("nope", {}, 404, "unknown_task", "nope"),
        ("send_email", {"args": ["a@b.c", "s", "b"]}, 404, "unknown_task", "send_email"),
        ("add", {"args": [1]}, 400, "invalid_arguments", "'y'"),
        ("add", {"args": [1, 2, 3]}, 400, "invalid_arguments", "too many"),
        ("add", {"args": [1, "two"]}, 400, "invalid_arguments", "'y'"),
        ("add", {"args": [True, 1]}, 400, "invalid_arguments", "'x'"),
        ("xsum", {"args": [[1, "x"]]}, 400, "invalid_arguments", "numbers"),
        ("add", {"kwargs": {"x": 1, "y": 2, "z": 3}}, 400, "invalid_arguments", "'z'"),
        ("add", {"args": {"x": 1}}, 400, "invalid_arguments", "args must be"),
        ("add", {"kwargs": [1]}, 400, "invalid_arguments", "kwargs must be"),
        ("add", {"args": [1, 2], "countdown": -1}, 400, "invalid_countdown", "negative"),
        ("add", {"args": [1, 2], "countdown": 10**6}, 400, "invalid_countdown", "at most"),
        ("add", {"args": [1, 2], "countdown": "soon"}, 400, "invalid_countdown", "number"),
        ("add", {"args": [1, 2], "expires": -5}, 400, "invalid_expires", "negative"),
        ("add", {"args": [1, 2], "priority": 9}, 400, "invalid_field", "priority"),
    ],
)
def test_bad_enqueue_requests_get_clear_4xx(web, name, body, status, code, mentions):
    response = enqueue(web, name, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert mentions in error["message"]


def test_invalid_json_body(web):
    response = client.post(
        f"{web.url}/api/tasks/add",
        data=b"{not json",
        timeout=5,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_json_that_is_not_an_object(web):
    response = client.post(f"{web.url}/api/tasks/add", json=[1, 2], timeout=5)
    assert response.status_code == 400
    assert "JSON object" in response.json()["error"]["message"]


def test_wrong_content_type(web):
    response = client.post(
        f"{web.url}/api/tasks/add",
        data="x=1",
        timeout=5,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_oversized_body(web):
    response = client.post(f"{web.url}/api/tasks/xsum", json={"args": [[1] * 100_000]}, timeout=10)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


def test_bad_task_id_and_method(web):
    response = client.get(f"{web.url}/api/tasks/not-a-uuid", timeout=5)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_task_id"
    response = client.delete(f"{web.url}/api/tasks/add", timeout=5)
    assert response.status_code == 405


def test_bad_report_request(web):
    response = client.post(f"{web.url}/api/workflows/report", json={"chunks": "x"}, timeout=5)
    assert response.status_code == 400
    assert "chunks" in response.json()["error"]["message"]


def test_unknown_task_id_is_pending(web):
    data = client.get(f"{web.url}/api/tasks/00000000-0000-0000-0000-000000000000", timeout=5).json()
    assert data["state"] == "PENDING"


def test_health_endpoints(web):
    assert requests.get(f"{web.url}/healthz", timeout=5).json() == {"status": "ok"}
    ready = requests.get(f"{web.url}/readyz", timeout=5)
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_home_page_links_admin_and_flower(web):
    page = requests.get(web.url + "/", timeout=5).text
    assert 'href="/admin/"' in page
    assert "localhost:5555" in page
    assert "/api/workflows/report" in page


def test_metrics_are_on_their_own_port_only(web):
    requests.get(f"{web.url}/healthz", timeout=5)
    text = requests.get(web.metrics_url, timeout=5).text
    assert "django_http_requests_latency_seconds_by_view_method_bucket" in text
    assert "gunicorn_workers 2.0" in text
    # The public port does not serve them.
    assert requests.get(f"{web.url}/metrics", timeout=5).status_code == 404


def test_signup_sends_welcome_mail_after_commit(web, smtp):
    response = requests.post(
        f"{web.url}/api/signup",
        json={"username": "ada", "email": "ada@example.com", "password": "s3cret-pass"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    wait_for(lambda: smtp.delivered["ada@example.com"], 20, what="welcome mail")
    assert "welcome aboard" in smtp.delivered["ada@example.com"][0]
    # A taken username gets the same answer; the mailbox owner learns why, the caller does not.
    again = requests.post(
        f"{web.url}/api/signup",
        json={"username": "ada", "email": "ada2@example.com", "password": "an0ther-pass"},
        timeout=10,
    )
    assert (again.status_code, again.json()) == (response.status_code, response.json())
    wait_for(lambda: smtp.delivered["ada2@example.com"], 20, what="username-taken mail")
    assert "is taken" in smtp.delivered["ada2@example.com"][0]
    missing = requests.post(f"{web.url}/api/signup", json={"username": "bob"}, timeout=10)
    assert missing.status_code == 400
    assert "email" in missing.json()["error"]["message"]

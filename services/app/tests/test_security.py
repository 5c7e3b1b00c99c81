"""The front door, through real gunicorn: authentication, scopes, CSRF, bounded input, rate
limits and answers that do not tell whether an account exists."""

import re
import time

import pytest
import requests

from testsupport import free_port, wait_for

from .support import start_web
from .test_dead_broker import broker_url_at

UUID0 = "00000000-0000-0000-0000-000000000000"


def issue(name, tasks=(), report=False):
    from jobs.models import ApiToken

    _, token = ApiToken.issue(name, list(tasks), may_start_report=report)
    return {"Authorization": f"Bearer {token}"}


def assert_error(response, status, code):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == code, response.text
    assert response.json()["error"]["message"]


# ---- authentication and scopes -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/tasks/add"),
        ("post", "/api/tasks/long_job"),
        ("post", "/api/workflows/report"),
        ("get", f"/api/tasks/{UUID0}"),
    ],
)
def test_anonymous_gets_401_with_a_challenge(web, method, path):
    response = getattr(requests, method)(web.url + path, json={}, timeout=10)
    assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    ["Bearer cst_not-a-real-token", "Bearer ", "Basic dXNlcjpwYXNz", "cst_no-scheme"],
)
def test_wrong_token_gets_401(web, header):
    response = requests.post(
        f"{web.url}/api/tasks/add", json={"args": [1, 2]}, headers={"Authorization": header}
    )
    assert_error(response, 401, "unauthorized")
    assert "WWW-Authenticate" in response.headers


def test_revoked_token_gets_401(web, live_db):
    from django.utils import timezone

    from jobs.models import ApiToken

    headers = issue("soon-revoked", ["add"])
    url = f"{web.url}/api/tasks/add"
    assert requests.post(url, json={"args": [1, 2]}, headers=headers, timeout=10).status_code == 202
    ApiToken.objects.filter(name="soon-revoked").update(revoked_at=timezone.now())
    assert_error(
        requests.post(url, json={"args": [1, 2]}, headers=headers, timeout=10), 401, "unauthorized"
    )


def test_token_scoped_to_other_tasks_gets_403(web, live_db):
    headers = issue("only-add", ["add"])
    ok = requests.post(f"{web.url}/api/tasks/add", json={"args": [1, 2]}, headers=headers)
    assert ok.status_code == 202
    for path, body in [
        ("/api/tasks/long_job", {"kwargs": {"seconds": 1}}),
        ("/api/tasks/count_widgets", {}),
        ("/api/workflows/report", {}),
    ]:
        assert_error(requests.post(web.url + path, json=body, headers=headers), 403, "forbidden")
    # Reading a task's state needs any valid token.
    status = requests.get(web.url + ok.json()["status_url"], headers=headers, timeout=10)
    assert status.status_code == 200


def test_only_the_stored_hash_is_kept(live_db):
    from jobs.models import ApiToken

    token = issue("hash-check", ["add"])["Authorization"].split()[1]
    row = ApiToken.objects.get(name="hash-check")
    assert token not in (row.key_hash, row.hint) and len(row.key_hash) == 64
    assert ApiToken.authenticate(token) == row


def test_management_command_creates_lists_and_revokes(process_env):
    import subprocess
    import sys

    from .support import APP_DIR

    def manage(*args):
        return subprocess.run(
            [sys.executable, "manage.py", "api_token", *args],
            cwd=APP_DIR,
            env={**__import__("os").environ, **process_env},
            capture_output=True,
            text=True,
            timeout=120,
        )

    created = manage("create", "--name", "cli", "--tasks", "add,long_job", "--report")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("cst_") and len(token) > 40
    listed = manage("list")
    assert "cli" in listed.stdout and token not in listed.stdout
    assert manage("create", "--name", "bad", "--tasks", "send_email").returncode != 0
    assert manage("revoke", "--name", "cli").returncode == 0
    assert "revoked" in manage("list").stdout


# ---- cross-site "simple" requests and content types -------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("text/plain", b""),
        ("text/plain", b'{"args": [1, 2]}'),
        ("application/x-www-form-urlencoded", b"args=1"),
        ("multipart/form-data; boundary=x", b"--x--"),
        (None, b""),
    ],
)
def test_non_json_post_gets_415_even_when_empty(web, api, content_type, data):
    headers = {"Content-Type": content_type} if content_type else {}
    response = api.post(f"{web.url}/api/tasks/count_widgets", data=data, headers=headers)
    assert_error(response, 415, "unsupported_media_type")


def test_cross_site_simple_request_without_credentials_gets_401(web):
    # What any web page can make a visitor's browser send: no preflight, no token.
    response = requests.post(
        f"{web.url}/api/tasks/count_widgets",
        data=b"",
        headers={"Content-Type": "text/plain", "Origin": "https://evil.example"},
    )
    assert_error(response, 401, "unauthorized")


# ---- bounded input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "raw", "code"),
    [
        ("/api/tasks/add", b'{"args": [1, 2], "countdown": NaN}', "invalid_json"),
        ("/api/tasks/add", b'{"args": [1, Infinity]}', "invalid_json"),
        ("/api/tasks/add", b'{"args": [1, -Infinity]}', "invalid_json"),
        ("/api/tasks/add", b'{"args": [1e999, 1]}', "invalid_json"),
        ("/api/tasks/add", b'{"args": [1, 2], "countdown": 1e400}', "invalid_json"),
        ("/api/tasks/add", b'{"args": [' + b"9" * 5000 + b", 1]}", "invalid_json"),
        ("/api/tasks/xsum", b'{"args": ' + b"[" * 5000 + b"]" * 5000 + b"}", "invalid_json"),
        ("/api/tasks/xsum", b'{"args": ' + b"[" * 60_000, "invalid_json"),
        ("/api/workflows/report", b'{"chunks": ' + b"{" * 40 + b"}" * 40 + b"}", "invalid_json"),
        ("/api/tasks/add", b"\xff\xfe", "invalid_json"),
    ],
)
def test_non_finite_and_deep_json_get_400(web, api, path, raw, code):
    response = api.post(
        web.url + path, data=raw, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert_error(response, 400, code)


def test_depth_check_is_linear_on_escaped_quotes(web, api):
    """`"\\"\\"\\"…`: a string-stripping regex backtracks quadratically on it (13 s of CPU per
    64 KiB request); the scanner takes milliseconds."""
    raw = b'{"args": [1, 2], "x": "' + b'\\"' * 30_000
    started = time.monotonic()
    headers = {"Content-Type": "application/json"}
    response = api.post(f"{web.url}/api/tasks/add", data=raw, headers=headers, timeout=30)
    assert_error(response, 400, "invalid_json")
    assert time.monotonic() - started < 8


def test_brackets_inside_strings_do_not_count_as_nesting(web, api):
    response = api.post(
        f"{web.url}/api/tasks/rename_widget",
        json={"args": [10**9, "[[[[" * 40 + '\\"{'], "countdown": 0},
        timeout=10,
    )
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    ("path", "body", "mentions"),
    [
        ("/api/tasks/long_job", {"kwargs": {"seconds": 1_000_000_000}}, "'seconds'"),
        ("/api/tasks/long_job", {"kwargs": {"seconds": 16}}, "between 0 and 15"),
        ("/api/tasks/long_job", {"kwargs": {"seconds": -1}}, "'seconds'"),
        ("/api/tasks/long_job", {"kwargs": {"seconds": 1, "steps": 0}}, "'steps'"),
        ("/api/tasks/long_job", {"kwargs": {"seconds": 1, "steps": 10**6}}, "'steps'"),
        ("/api/tasks/add", {"args": [2**60, 1]}, "'x'"),
        ("/api/tasks/rename_widget", {"args": [1, "n" * 1001]}, "'name'"),
        ("/api/tasks/rename_widget", {"args": [0, "n"]}, "'widget_id'"),
        ("/api/tasks/notify_partner", {"args": [-5]}, "'widget_id'"),
        ("/api/workflows/report", {"chunks": [[1]] * 101}, "chunks"),
        ("/api/workflows/report", {"chunks": [[1] * 101]}, "chunks"),
        ("/api/workflows/report", {"title": "t" * 201}, "title"),
        ("/api/workflows/report", {"chunks": [[1]], "extra": 1}, "extra"),
    ],
)
def test_every_argument_has_a_range(web, api, path, body, mentions):
    response = api.post(web.url + path, json=body, timeout=10)
    assert response.status_code == 400, response.text
    assert mentions in response.json()["error"]["message"]


def test_oversized_body_gets_413_before_parsing(web, api):
    raw = b'{"args": [[' + b"1," * 40_000 + b"1]]}"
    response = api.post(
        f"{web.url}/api/tasks/xsum", data=raw, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 413, "body_too_large")


def test_unknown_api_path_gets_json_404(web):
    assert_error(requests.get(f"{web.url}/api/nothing/here", timeout=10), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        ({"username": "u" * 151, "email": "a@example.com", "password": "long-enough-pw"}, "150"),
        (
            {"username": "bad name!", "email": "a@example.com", "password": "long-enough-pw"},
            "username",
        ),
        ({"username": "someone", "email": "not-an-address", "password": "long-enough-pw"}, "email"),
        (
            {"username": "someone", "email": "a@" + "x" * 300 + ".com", "password": "long-pw-1"},
            "email",
        ),
        ({"username": "someone", "email": "a@example.com", "password": "short"}, "password"),
        ({"username": "someone", "email": "a@example.com", "password": "12345678901"}, "password"),
    ],
)
def test_signup_input_is_validated_before_the_database(web, body, mentions):
    response = requests.post(f"{web.url}/api/signup", json=body, timeout=30)
    assert_error(response, 400, "invalid_arguments")
    assert mentions in response.json()["error"]["message"]


# ---- the session: login, CSRF, permission -----------------------------------------------------


def login(web, username, password):
    session = requests.Session()
    page = session.get(f"{web.url}/accounts/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    response = session.post(
        f"{web.url}/accounts/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{web.url}/accounts/login/"},
        timeout=30,
        allow_redirects=False,
    )
    assert response.status_code == 302, response.text[-500:]
    return session


@pytest.fixture(scope="module")
def superuser(django_db_setup, django_db_blocker):
    from django.contrib.auth.models import User

    with django_db_blocker.unblock():
        User.objects.create_superuser("boss", "boss@example.com", "boss-pass-123")
        User.objects.create_user("plain", "plain@example.com", "plain-pass-123")
    return "boss", "boss-pass-123"


def test_session_needs_csrf_and_the_permission(web, superuser):
    session = login(web, *superuser)
    url = f"{web.url}/api/tasks/long_job"
    body = {"kwargs": {"seconds": 1, "steps": 2}}
    # No CSRF token: a cross-site form or fetch riding on the cookie.
    assert_error(session.post(url, json=body, timeout=10), 403, "csrf_failed")
    home = session.get(web.url + "/", timeout=10).text
    csrf = re.search(r'const csrfToken = "([^"]+)"', home).group(1)
    headers = {"X-CSRFToken": csrf, "Referer": web.url + "/"}
    response = session.post(url, json=body, headers=headers, timeout=10)
    assert response.status_code == 202, response.text
    assert session.get(web.url + response.json()["status_url"], timeout=10).status_code == 200
    report = session.post(f"{web.url}/api/workflows/report", json={}, headers=headers)
    assert report.status_code == 202
    # The page's scope: long_job and the report, not every task.
    other = session.post(f"{web.url}/api/tasks/add", json={"args": [1, 2]}, headers=headers)
    assert_error(other, 403, "forbidden")
    # A logged-in user without the permission (anyone can sign up) gets nothing.
    plain = login(web, "plain", "plain-pass-123")
    home = plain.get(web.url + "/", timeout=10).text
    csrf = re.search(r'const csrfToken = "([^"]+)"', home).group(1)
    denied = plain.post(url, json=body, headers={"X-CSRFToken": csrf, "Referer": web.url + "/"})
    assert_error(denied, 403, "forbidden")


def test_health_stays_open_and_metrics_stay_off_the_public_port(web):
    assert requests.get(f"{web.url}/healthz", timeout=10).status_code == 200
    assert requests.get(f"{web.url}/readyz", timeout=10).status_code == 200
    assert requests.get(f"{web.url}/metrics", timeout=10).status_code == 404


# ---- no enumeration, no relay -------------------------------------------------------------------


def test_signup_and_reset_answer_alike_for_known_and_unknown(web, smtp, live_db):
    from django.contrib.auth.models import User

    User.objects.create_user("known", "known@example.com", "known-pass-123")
    signup = f"{web.url}/api/signup"
    taken = requests.post(
        signup, json={"username": "known", "email": "x1@example.com", "password": "pw-x1-long"}
    )
    fresh = requests.post(
        signup, json={"username": "fresh1", "email": "x2@example.com", "password": "pw-x2-long"}
    )
    assert (taken.status_code, taken.json()) == (fresh.status_code, fresh.json())
    assert taken.status_code == 201
    reset = f"{web.url}/api/password-reset"
    known = requests.post(reset, json={"email": "known@example.com"}, timeout=10)
    unknown = requests.post(reset, json={"email": "nobody@example.com"}, timeout=10)
    assert (known.status_code, known.json()) == (unknown.status_code, unknown.json())
    assert known.status_code == 202
    wait_for(lambda: smtp.delivered["known@example.com"], 20, what="reset mail")
    time.sleep(1)
    assert not smtp.delivered["nobody@example.com"]


@pytest.fixture(scope="module")
def web_without_broker(process_env, log_dir):
    web = start_web(
        {**process_env, "CELERY_BROKER_URL": broker_url_at(free_port())},
        log_dir,
        name="web-sec-no-broker",
    )
    yield web
    web.stop()


def test_answers_do_not_change_when_the_broker_is_down(web, web_without_broker, smtp, live_db):
    """Same status and body with the broker up and down, for known and unknown accounts; the
    mail written while it was down is sent later, not lost."""
    from django.contrib.auth.models import User

    from jobs.models import Outbox
    from jobs.outbox import drain_outbox

    User.objects.create_user("known2", "known2@example.com", "known-pass-123")
    answers = []
    for base in (web.url, web_without_broker.url):
        for email in ("known2@example.com", "nobody2@example.com"):
            response = requests.post(
                f"{base}/api/password-reset", json={"email": email}, timeout=30
            )
            answers.append((response.status_code, response.json()))
        for username in ("known2", f"new-{len(answers)}"):
            response = requests.post(
                f"{base}/api/signup",
                json={
                    "username": username,
                    "email": f"{username}@example.org",
                    "password": "pw-long-123",
                },
                timeout=30,
            )
            answers.append((response.status_code, response.json()))
    resets = answers[0:2] + answers[4:6]
    signups = answers[2:4] + answers[6:8]
    assert len(set(map(str, resets))) == 1 and resets[0][0] == 202, answers
    assert len(set(map(str, signups))) == 1 and signups[0][0] == 201, answers
    # The mail written while the broker was down waits in the outbox; the drain sends it.
    pending = Outbox.objects.filter(published_at__isnull=True)
    assert pending.filter(args__0="known2@example.com").exists()
    assert drain_outbox() >= 2
    wait_for(lambda: len(smtp.delivered["known2@example.com"]) >= 2, 30, what="drained reset mail")
    wait_for(lambda: smtp.delivered["new-6@example.org"], 30, what="drained welcome mail")


# ---- rate limits --------------------------------------------------------------------------------

LIMITED = {
    "RATELIMIT_ENQUEUE": "3/10s",
    "RATELIMIT_ENQUEUE_PER_IP": "1000/m",
    "RATELIMIT_SIGNUP_PER_IP": "2/10s",
    "RATELIMIT_RESET_PER_IP": "100/m",
    "RATELIMIT_MAIL_PER_ADDRESS": "2/h",
    "RATELIMIT_LOGIN_PER_IP": "3/10s",
}


@pytest.fixture(scope="module")
def limited_web(process_env, log_dir, workers):
    web = start_web({**process_env, **LIMITED}, log_dir, name="web-sec-limited")
    yield web
    web.stop()


def until_limited(send, attempts=10):
    """Send until 429; the window may roll over once mid-burst, hence more than limit + 1."""
    for _ in range(attempts):
        response = send()
        if response.status_code == 429:
            return response
        assert response.status_code < 400, response.text
    raise AssertionError("never rate-limited")


def wait_retry_after(response):
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 11
    time.sleep(retry_after)  # exactly what the client was told, no margin


def test_enqueue_limit_per_token_then_success_after_retry_after(limited_web, live_db):
    first, second = issue("limited-1", ["add"]), issue("limited-2", ["add"])
    url = f"{limited_web.url}/api/tasks/add"

    def send(headers=first):
        return requests.post(url, json={"args": [1, 2]}, headers=headers, timeout=10)

    limited = until_limited(send)
    assert_error(limited, 429, "rate_limited")
    # Per token: another token from the same address still gets through.
    assert send(second).status_code == 202
    wait_retry_after(limited)
    assert send().status_code == 202


def test_signup_limit_per_address(limited_web):
    count = iter(range(100))

    def send():
        n = next(count)
        return requests.post(
            f"{limited_web.url}/api/signup",
            json={"username": f"rl-{n}", "email": f"rl-{n}@example.com", "password": "pw-long-123"},
            timeout=30,
        )

    limited = until_limited(send)
    assert_error(limited, 429, "rate_limited")
    wait_retry_after(limited)
    assert send().status_code == 201


def test_limit_store_is_shared_by_replicas(limited_web, process_env, log_dir, live_db):
    """Two gunicorns (two replicas) count against the same Redis."""
    other = start_web({**process_env, **LIMITED}, log_dir, name="web-sec-limited-2")
    try:
        headers = issue("shared", ["add"])
        statuses = [
            requests.post(
                f"{web.url}/api/tasks/add", json={"args": [1, 2]}, headers=headers
            ).status_code
            for web in (limited_web, other) * 4
        ]
        # 3 per 10 s in total; a window boundary may allow 3 more.
        assert statuses.count(202) <= 6 and 429 in statuses, statuses
    finally:
        other.stop()


def test_mail_per_address_is_limited_silently(limited_web, smtp, live_db):
    from django.contrib.auth.models import User

    User.objects.create_user("mailcap", "mailcap@example.com", "mailcap-pass-1")
    answers = {
        str(
            requests.post(
                f"{limited_web.url}/api/password-reset", json={"email": "mailcap@example.com"}
            ).json()
        )
        for _ in range(4)
    }
    assert len(answers) == 1  # same answer over the limit: it must not reveal anything
    wait_for(lambda: len(smtp.delivered["mailcap@example.com"]) >= 2, 20, what="two mails")
    time.sleep(2)
    assert len(smtp.delivered["mailcap@example.com"]) == 2


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_login_is_rate_limited(limited_web, path):
    session = requests.Session()
    page = session.get(limited_web.url + path, timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)

    def send():
        return session.post(
            limited_web.url + path,
            data={"username": "boss", "password": "wrong", "csrfmiddlewaretoken": token},
            headers={"Referer": limited_web.url + path},
            timeout=30,
        )

    limited = until_limited(send)
    assert "Retry-After" in limited.headers


def test_admin_login_works(web, superuser):
    session = requests.Session()
    page = session.get(f"{web.url}/admin/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    response = session.post(
        f"{web.url}/admin/login/?next=/admin/",
        data={"username": superuser[0], "password": superuser[1], "csrfmiddlewaretoken": token},
        headers={"Referer": f"{web.url}/admin/login/"},
        timeout=30,
    )
    assert response.status_code == 200 and "Site administration" in response.text


def test_admin_creates_a_token_shown_once_and_revokes_it(web, superuser, live_db):
    session = requests.Session()
    page = session.get(f"{web.url}/admin/login/", timeout=10)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    session.post(
        f"{web.url}/admin/login/?next=/admin/",
        data={"username": superuser[0], "password": superuser[1], "csrfmiddlewaretoken": csrf},
        headers={"Referer": f"{web.url}/admin/login/"},
        timeout=30,
    )
    add = session.get(f"{web.url}/admin/jobs/apitoken/add/", timeout=10)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', add.text).group(1)
    saved = session.post(
        f"{web.url}/admin/jobs/apitoken/add/",
        data={"name": "from-admin", "tasks": ["add"], "csrfmiddlewaretoken": csrf},
        headers={"Referer": f"{web.url}/admin/jobs/apitoken/add/"},
        timeout=30,
    )
    token = re.search(r"(cst_[A-Za-z0-9_-]{40,})", saved.text).group(1)
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{web.url}/api/tasks/add"
    assert requests.post(url, json={"args": [1, 2]}, headers=headers, timeout=10).status_code == 202
    listing = session.get(f"{web.url}/admin/jobs/apitoken/", timeout=10).text
    assert "from-admin" in listing and token not in listing  # shown once, never again
    from jobs.models import ApiToken

    pk = ApiToken.objects.get(name="from-admin").pk
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', listing).group(1)
    session.post(
        f"{web.url}/admin/jobs/apitoken/",
        data={"action": "revoke", "_selected_action": [pk], "csrfmiddlewaretoken": csrf},
        headers={"Referer": f"{web.url}/admin/jobs/apitoken/"},
        timeout=30,
    )
    assert_error(
        requests.post(url, json={"args": [1, 2]}, headers=headers, timeout=10), 401, "unauthorized"
    )

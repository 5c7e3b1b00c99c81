"""The progress page in a real browser: headless Chromium from Debian's packages, driven by
Selenium through Debian's chromedriver (nothing is downloaded). Logs in, starts the long job
and the report from the page, and waits for both progress bars to reach 100 %; then logs in
to the admin.

When Chromium is missing it is installed with apt (CI runs as root on Debian); elsewhere the
test is skipped, saying why.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from testsupport import wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def ensure_chromium():
    if Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists():
        return
    if os.geteuid() != 0 or not Path("/etc/debian_version").exists() or not shutil.which("apt-get"):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get as root installs them)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [
        "apt-get",
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        "chromium",
        "chromium-driver",
    ]
    if subprocess.run(install, env=env, capture_output=True, timeout=900).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True, timeout=600)
        subprocess.run(install, env=env, check=True, capture_output=True, timeout=900)


@pytest.fixture(scope="module")
def browser():
    ensure_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # never let Selenium Manager download anything
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def operator(django_db_setup, django_db_blocker):
    from django.contrib.auth.models import User

    with django_db_blocker.unblock():
        User.objects.create_superuser("browser-op", "op@example.com", "browser-op-pass-1")
    return "browser-op", "browser-op-pass-1"


def log_in(driver, url, username, password):
    from selenium.webdriver.common.by import By

    driver.get(url)
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "[type=submit]").click()


def test_page_runs_long_job_and_report_to_100_percent(web, browser, operator):
    from selenium.webdriver.common.by import By

    log_in(browser, f"{web.url}/accounts/login/?next=/", *operator)
    wait_for(lambda: browser.find_elements(By.ID, "logout"), 30, what="logged in home page")
    assert not browser.find_elements(By.ID, "login-hint")
    browser.find_element(By.ID, "start-long").click()
    browser.find_element(By.ID, "start-report").click()

    def bar(name):
        return browser.execute_script(f"return document.getElementById('{name}').value")

    def state(name):
        return browser.find_element(By.ID, name).text

    def done():
        for element in ("long-state", "report-state"):
            assert state(element) not in ("FAILURE", "REVOKED"), state(element)
        return bar("long-progress") == 100 and bar("report-progress") == 100

    # The long job seen mid-way: its bar moves before it is full.
    wait_for(lambda: 0 < bar("long-progress") < 100, 30, interval=0.2, what="long job progress")
    wait_for(done, 120, interval=0.5, what="both progress bars at 100 %")
    assert state("long-state") == "SUCCESS" and state("report-state") == "SUCCESS"
    assert '"grand_total": 45' in browser.find_element(By.ID, "report-result").text
    browser.find_element(By.ID, "logout").click()
    wait_for(lambda: browser.find_elements(By.ID, "login"), 30, what="logged out home page")


def test_admin_login_in_the_browser(web, browser, operator):

    browser.delete_all_cookies()
    log_in(browser, f"{web.url}/admin/login/?next=/admin/", *operator)
    wait_for(lambda: "Site administration" in browser.page_source, 30, what="admin index")
    browser.get(f"{web.url}/admin/jobs/apitoken/")
    assert "API tokens" in browser.page_source or "Api tokens" in browser.page_source


def test_anonymous_page_cannot_start_jobs(web, browser):
    from selenium.webdriver.common.by import By

    browser.delete_all_cookies()
    browser.get(web.url + "/")
    assert browser.find_element(By.ID, "login-hint")
    assert not browser.find_element(By.ID, "start-long").is_enabled()

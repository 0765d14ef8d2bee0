"""Drives the Glint console in headless Chromium (selenium + Debian's chromium-driver).

Run by tests/integration/console.rs against a real `glint serve` in Keystone mode. Settings
come from the environment: CONSOLE_URL, SHOTS (directory for screenshots), UPLOAD_FILE,
IMPORT_URL, ALICE and BOB (`user:password:project`), BOB_PROJECT (bob's project id).
Exits non-zero, saying which step failed, when the console does not behave.
"""

import os
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

URL = os.environ["CONSOLE_URL"]
SHOTS = os.environ["SHOTS"]
HOSTILE = "<img src=x onerror=alert(1)>"
step_name = "start"


def step(name):
    global step_name
    step_name = name
    print(f"== {name}", flush=True)


def shot(driver, name):
    driver.save_screenshot(os.path.join(SHOTS, f"{name}.png"))


def css(driver, selector):
    return driver.find_element(By.CSS_SELECTOR, selector)


def wait_for(driver, condition, timeout=30, what=""):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)
    except TimeoutException:
        shot(driver, f"timeout-{step_name.replace(' ', '-')}")
        raise AssertionError(f"timed out waiting for {what or condition}")


def visible(driver, selector, timeout=30):
    return wait_for(driver, ec.visibility_of_element_located((By.CSS_SELECTOR, selector)), timeout, selector)


def text_in(driver, selector, text, timeout=30):
    wait_for(driver, ec.text_to_be_present_in_element((By.CSS_SELECTOR, selector), text), timeout, f"{text!r} in {selector}")


def fill(driver, selector, value):
    field = css(driver, selector)
    field.clear()
    field.send_keys(value)


def sign_in(driver, who):
    user, password, project = who.split(":")
    driver.get(URL)
    visible(driver, "#login-form")
    fill(driver, "#login-form [name=user]", user)
    fill(driver, "#login-form [name=password]", password)
    fill(driver, "#login-form [name=project]", project)
    css(driver, "#login-form button[type=submit]").click()
    visible(driver, "#view-images")
    text_in(driver, "#who-user", f"Signed in as {user}")


def sign_out(driver):
    css(driver, "#logout").click()
    visible(driver, "#login-form")


def create(driver, name, source, value):
    driver.get(URL + "#new")
    visible(driver, "#new-form")
    fill(driver, "#new-form [name=name]", name)
    Select(css(driver, "#new-form [name=disk_format]")).select_by_visible_text("raw")
    if source == "url":
        css(driver, "#new-form input[name=source][value=url]").click()
        fill(driver, "#new-form [name=url]", value)
    else:
        css(driver, "#new-form input[name=source][value=file]").click()
        css(driver, "#new-form [name=file]").send_keys(value)
    css(driver, "#new-submit").click()


def image_id(driver, name):
    """The id of the image called `name`, from its link in the images table."""
    driver.get(URL + "#images")
    links = wait_for(
        driver,
        lambda d: [a for a in d.find_elements(By.CSS_SELECTOR, "#images-table tbody a") if a.text == name],
        what=f"a row for {name!r}",
    )
    return links[0].get_attribute("href").rsplit("/", 1)[1]


def open_image(driver, image):
    driver.get(f"{URL}#image/{image}")
    driver.refresh()
    text_in(driver, "#image-fields", image)


def main():
    step("the CSP header is on the page")
    with urllib.request.urlopen(URL) as response:
        csp = response.headers["Content-Security-Policy"]
        assert csp and "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, csp
        assert response.headers["X-Frame-Options"] == "DENY"

    options = webdriver.ChromeOptions()
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"]:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        run(driver)
    except Exception:
        shot(driver, f"failed-{step_name.replace(' ', '-')}")
        print(f"FAILED at step: {step_name}", file=sys.stderr)
        for entry in driver.get_log("browser"):
            print(f"browser log: {entry}", file=sys.stderr)
        raise
    finally:
        driver.quit()


def run(driver):
    step("sign in as alice")
    driver.get(URL)
    visible(driver, "#login-form")
    shot(driver, "01-login")
    sign_in(driver, os.environ["ALICE"])
    shot(driver, "02-empty-list")

    step("upload a file and see the progress reach 100%")
    create(driver, "uploaded disk", "file", os.environ["UPLOAD_FILE"])
    wait_for(driver, lambda d: css(d, "#upload-bar").get_attribute("value") == "100", what="the bar at 100")
    text_in(driver, "#upload-text", "100%")
    text_in(driver, "#upload-text", "8.00 MiB of 8.00 MiB")
    text_in(driver, "#new-result", "Image active.")
    shot(driver, "03-uploaded")

    step("import from a URL and see the task finish")
    create(driver, "imported disk", "url", os.environ["IMPORT_URL"])
    text_in(driver, "#new-result", "Image active.", timeout=60)
    text_in(driver, "#new-result", "success")
    shot(driver, "04-imported")

    step("a hostile image name renders as text")
    create(driver, HOSTILE, "file", os.environ["UPLOAD_FILE"])
    text_in(driver, "#new-result", "Image active.")
    hostile = image_id(driver, HOSTILE)
    assert not driver.find_elements(By.CSS_SELECTOR, "img[src=x]"), "the name became markup"
    try:
        alert = driver.switch_to.alert
        raise AssertionError(f"an alert ran: {alert.text}")
    except NoAlertPresentException:
        pass
    open_image(driver, hostile)
    assert css(driver, "#image-title").text == HOSTILE
    text_in(driver, "#image-fields", "8388608 bytes")
    assert not driver.find_elements(By.CSS_SELECTOR, "img[src=x]")
    shot(driver, "05-list")

    step("edit a property with the metadefs suggestions")
    uploaded = image_id(driver, "uploaded disk")
    open_image(driver, uploaded)
    fill(driver, "#prop-form [name=key]", "hw_disk_bus")
    fill(driver, "#prop-form [name=value]", "virtio")
    css(driver, "#prop-form button[type=submit]").click()
    text_in(driver, "#props-table", "hw_disk_bus")
    text_in(driver, "#image-fields", "virtio")

    step("make it shared and share it with bob's project")
    Select(css(driver, "#edit-form [name=visibility]")).select_by_visible_text("shared")
    css(driver, "#edit-form button[type=submit]").click()
    text_in(driver, "#edit-form .ok", "Saved.")
    fill(driver, "#member-form [name=member]", os.environ["BOB_PROJECT"])
    css(driver, "#member-form button[type=submit]").click()
    text_in(driver, "#members-table", os.environ["BOB_PROJECT"])
    text_in(driver, "#members-table", "pending")
    shot(driver, "06-detail")
    sign_out(driver)

    step("bob accepts the image")
    sign_in(driver, os.environ["BOB"])
    open_image(driver, uploaded)
    visible(driver, "#member-answer")
    text_in(driver, "#member-own-status", "pending")
    css(driver, "#member-accept").click()
    text_in(driver, "#member-own-status", "accepted")
    shot(driver, "07-accepted")
    driver.get(URL + "#images")
    image_id(driver, "uploaded disk")
    sign_out(driver)

    step("alice deletes the image after confirming")
    sign_in(driver, os.environ["ALICE"])
    open_image(driver, uploaded)
    css(driver, "#image-delete").click()
    visible(driver, "#confirm")
    shot(driver, "08-confirm")
    css(driver, "#confirm-ok").click()
    visible(driver, "#view-images")
    wait_for(
        driver,
        lambda d: "uploaded disk" not in css(d, "#images-table tbody").text and "imported disk" in css(d, "#images-table tbody").text,
        what="the deleted image gone from the list",
    )

    step("a narrow screen gets the stacked layout")
    driver.set_window_size(390, 844)
    time.sleep(0.3)
    shot(driver, "09-phone")
    driver.set_window_size(1400, 1000)

    step("the browser console has no errors")
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, f"browser console errors: {errors}"

    step("a session the server no longer has sends the page back to the sign-in")
    driver.delete_cookie("glint_console")
    css(driver, "#filters button[type=submit]").click()
    visible(driver, "#login-form")
    text_in(driver, "#login-reason", "Your session has ended")
    shot(driver, "10-session-ended")


if __name__ == "__main__":
    main()

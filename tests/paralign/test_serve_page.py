"""The page `paralign serve` serves at `/`, driven in headless Chromium against a real server of the tiny run's
model: a wav chosen in its file input goes through the page's JavaScript, the OpenAI-style API and the model, and
the reply the page shows is the model's own; a server that asks for an API key is answered once the page has it."""
from __future__ import annotations

from pathlib import Path

import pytest

from paralign.infer import Answerer, Question, checked_wave, load_for_inference
from paralign.serve import create_app, serving_in_thread
from tests.browser import chromium, screenshot  # noqa: F401  (chromium: a fixture)

MODEL_ID = "tiny-under-test"
# Generous: the machine may be training on both cores, and the page's requests wait for the model.
WAIT_S = 120

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def collapsed(text: str) -> str:
    """``text`` with each run of whitespace made one space, as the browser shows it: selenium's ``.text`` is the
    rendered text, in which HTML collapses whitespace, so a reply with a newline or double space in it reads
    differently there than in the model's string."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def answerer(tiny_run):
    _, run_dir, _ = tiny_run
    model, cfg = load_for_inference(run_dir / "checkpoints" / "last.ckpt")
    return Answerer(model, cfg, max_new_tokens=8, do_sample=False)  # greedy: the same reply every time


@pytest.fixture
def browser(chromium, tmp_path):  # noqa: F811
    """The browser, and a screenshot of what it shows when the test ends, passed or failed (a failure's is the
    one worth looking at), in the test's tmp_path: the run's own record, not the repository's."""
    yield chromium
    screenshot(chromium, tmp_path / "page.png")


def element(driver, element_id: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def wait_for(driver, condition, what: str, seconds: float = WAIT_S) -> None:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, seconds).until(lambda _: condition())
    except TimeoutException:  # say what the page said instead, which is most often why
        pytest.fail(f"{what} within {seconds:g} s: the status says {element(driver, 'status').text!r}")


def open_page(driver, url: str) -> None:
    """Load the page and wait until it named the model from /v1/models: only then does it know the model's
    tasks, and a file chosen earlier would be asked the response task alone."""
    driver.get(url + "/")
    wait_for(driver, lambda: element(driver, "model").text == MODEL_ID, "the page names the model")


def upload(driver, path: Path) -> None:
    """Choose ``path`` in the page's file input (send_keys does what the file dialog does), and wait until the
    page took it: each file it answers gets a fresh blob URL in its player, set before any request goes out (with
    the status "listening ..."), so a status read after this is never one left from the file before."""
    player = element(driver, "player")
    before = player.get_attribute("src")
    element(driver, "file").send_keys(str(path))
    # the browser alone, no model: seconds even on a busy machine
    wait_for(driver, lambda: player.get_attribute("src") != before,
             f"the page takes {path.name} (its file input's change event)", seconds=30)


def settled_status(driver, name: str):
    """The status line once the page is done with the file ``name``: answered, or an error."""
    status = element(driver, "status")
    wait_for(driver, lambda: status.text == f"answered {name}" or status.get_attribute("class") == "error",
             f"the page answers {name}")
    return status


def test_page_shows_the_models_own_reply_to_an_uploaded_wav(browser, answerer, recording):
    model, cfg = answerer.model, answerer.cfg
    assert "emotion" in model.tasks  # the page asks it too, so its cell must fill
    # The reply expected: the model's greedy answer to the response task's question, asked directly, on the wave
    # read from the file's bytes as the server reads the page's upload. Asked before the server starts, so the
    # model is never used by two threads at once.
    wave = checked_wave(recording.read_bytes(), cfg.data.sample_rate, recording.name)
    question = Question(model.tasks["response"].instructions[0])
    expected = answerer.answer([wave], [[question]])[0].replies[0]

    with serving_in_thread(create_app(answerer, MODEL_ID)) as url:
        open_page(browser, url)
        upload(browser, recording)
        status = settled_status(browser, recording.name)

        assert status.text == f"answered {recording.name}", status.text
        assert collapsed(element(browser, "reply").text.strip()) == collapsed(expected.strip())
        assert element(browser, "emotion").text.strip(), "the emotion cell is empty"
        assert element(browser, "model").text == MODEL_ID


def test_page_answers_once_given_the_api_key_the_server_asks_for(browser, answerer, recording):
    from selenium.webdriver.common.keys import Keys

    with serving_in_thread(create_app(answerer, MODEL_ID, api_key="k")) as url:
        browser.get(url + "/")
        status = element(browser, "status")
        # Without a key even /v1/models is refused, which the page says at once ...
        wait_for(browser, lambda: status.get_attribute("class") == "error", "the page says it cannot reach the model")

        # ... and a file chosen now gets the server's 401 message, shown as an error (not "cannot reach": that was
        # the page's load, this is the upload's answer).
        upload(browser, recording)
        wait_for(browser, lambda: status.text.startswith("missing or wrong API key")
                 and status.get_attribute("class") == "error", "the page shows the 401 of the upload")
        assert element(browser, "reply").text == ""

        # Typing the key: the page re-reads /v1/models on the field's change event, which fires when the field
        # loses focus (TAB), as when a user moves on to choose the file.
        element(browser, "key").send_keys("k" + Keys.TAB)
        wait_for(browser, lambda: element(browser, "model").text == MODEL_ID, "the page names the model")

        # The same file again, as a user would after fixing the key. A browser fires the file input's change event
        # only when the chosen file differs from the one it holds, so this needs the page to empty its input once
        # it has taken a file.
        upload(browser, recording)
        status = settled_status(browser, recording.name)

        assert status.text == f"answered {recording.name}", status.text
        assert status.get_attribute("class") == ""
        assert element(browser, "emotion").text.strip(), "the emotion cell is empty"

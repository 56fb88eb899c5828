"""Fine-tuning in the browser: upload a file, see the estimate, train a tiny LoRA live (loss curve over
SSE, checkpoints), compare base and fine-tuned answers in the playground, cancel; hostile file names,
suffixes and prompts stay text."""

from __future__ import annotations

import re
import sqlite3
from typing import Any

import pytest

from bastion.errors import Invalid
from bastion.web.pages.models import PLAYGROUND_MAX_TOKENS, generate_params
from tests.llm.support import build_model, chat_records, jsonl
from tests.web.conftest import Dashboard, axe_violations, sign_in
from tests.web.test_pages import shoot

pytestmark = pytest.mark.e2e
HOSTILE = "<img src=x onerror=alert(1)>"
JOB_URL = re.compile(r"/fine-tuning/[0-9A-Za-z_-]{8,}$")


@pytest.fixture(scope="module")
def base_model(dash: Dashboard, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = build_model(tmp_path_factory.mktemp("llm"))
    # model names cannot carry markup: a fine-tuned model is named ft:<base>:<suffix>:<id>, and both
    # the base name (here) and the suffix (in the test below) refuse it
    r = dash.api("POST", "/llm/base_models", json={"path": str(path), "name": "<svg onload=alert(2)>"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_name", r.text
    r = dash.api("POST", "/llm/base_models", json={"path": str(path), "name": "tiny"})
    assert r.status_code == 201, r.text
    return "tiny"


def upload(page: Any, name: str, base: str = "tiny") -> None:
    page.goto("/fine-tuning/new")
    page.select_option("#up-model", base)
    page.set_input_files(
        "#ft-file-input",
        files=[{"name": name, "mimeType": "application/jsonl", "buffer": jsonl(chat_records(24))}],
    )
    page.click("#ft-upload button[type=submit]")
    page.wait_for_url("**/fine-tuning/new?*training_file=*")


def submit(page: Any, epochs: int, suffix: str) -> None:
    page.fill("#ft-epochs", str(epochs))
    page.fill("#ft-batch", "8")
    page.fill("#ft-lr", "0.01")
    page.fill("#ft-suffix", suffix)
    page.click("#ft-form button[type=submit]")


def test_fine_tune_live_then_compare_in_the_playground(
    dash: Dashboard, base_model: str, new_page: Any
) -> None:
    page = new_page()
    sign_in(page, "admin")
    upload(page, f"{HOSTILE}.jsonl", base_model)
    # the file name is shown as text, never as markup
    assert HOSTILE in page.inner_text("#ft-file")
    assert page.locator("#ft-file img").count() == 0
    # the estimate is there before submitting, and follows the form
    assert "Estimated cost" in page.inner_text("#estimate")
    page.fill("#ft-epochs", "7")
    page.wait_for_selector("#estimate:has-text(' 7 epochs')")
    assert axe_violations(page) == []
    shoot(page, "fine-tuning-new")
    # a suffix that could carry markup is refused with a clear message
    submit(page, 2, "<script>alert(1)</script>")
    assert "suffix may use only" in page.inner_text(".error")
    submit(page, 2, "web")
    page.wait_for_url(JOB_URL)
    page.wait_for_selector("#ft-live[data-finished='1']", timeout=180_000)
    assert page.inner_text("#ft-status") == "succeeded"
    # the loss curve was fed by the stream, one point per epoch; a checkpoint per epoch
    assert page.eval_on_selector("#ft-chart", "el => el._data ? el._data.x.length : 0") == 2
    assert "Epoch 2 done" in page.inner_text("#ft-events")
    assert page.locator("#ft-checkpoints tbody tr").count() == 2
    assert page.inner_text("#download-cmd").startswith("bastion ft download ")
    assert axe_violations(page) == []
    shoot(page, "fine-tuning-job")
    page.goto("/fine-tuning")
    assert "succeeded" in page.inner_text("#ft-rows")
    assert f"ft:{base_model}:web:" in page.inner_text("#ft-rows")
    page.goto("/models")
    assert f"ft:{base_model}:web:" in page.inner_text("main")
    page.goto("/fine-tuning")
    shoot(page, "fine-tuning")
    # the playground: the same prompt to the fine-tuned and the base model, side by side
    page.click("#ft-rows a[href^='/models/']")
    page.fill("#pg-prompt", f"Patient has fever. Treatment? {HOSTILE}")
    page.fill("#pg-tokens", "8")
    page.click("#playground button[type=submit]")
    page.wait_for_selector("#pg-answers")
    answers = page.inner_text("#pg-answers")
    assert "Fine-tuned" in answers and f"Base · {base_model}" in answers
    assert f"ft:{base_model}:web:" in page.inner_text("h1")
    assert page.locator("main img[src=x]").count() == 0
    # a tiny random model may answer with blanks; both sides report what they generated
    assert answers.count(" tokens · ") == 2
    assert HOSTILE in page.input_value("#pg-prompt")
    assert axe_violations(page) == []
    shoot(page, "model-playground")


def test_cancel_a_fine_tuning_job(dash: Dashboard, base_model: str, new_page: Any) -> None:
    page = new_page()
    sign_in(page, "admin")
    upload(page, "long.jsonl")
    submit(page, 50, "long")
    page.wait_for_url(JOB_URL)
    page.click("button:has-text('Cancel job')")
    page.wait_for_selector("#ft-status:has-text('cancelled')")
    assert page.locator("button:has-text('Cancel job')").count() == 0
    # a job's runtime error text (as a failing trainer writes it) is shown as text on both job pages
    job_id = page.url.rsplit("/", 1)[1]
    with sqlite3.connect(dash.tmp / ".bastion" / "bastion.db") as db:
        db.execute(
            "UPDATE training_jobs SET state = 'failed', error_message = ? WHERE id = ?",
            (f"trainer crashed: {HOSTILE}", job_id),
        )
    for url in (f"/fine-tuning/{job_id}", f"/jobs/{job_id}"):
        page.goto(url)
        assert HOSTILE in page.inner_text("p.error")
        assert page.locator("main img[src=x]").count() == 0


def test_playground_bounds_max_new_tokens() -> None:
    ok = generate_params({"prompt": "hi", "max_new_tokens": str(PLAYGROUND_MAX_TOKENS)})
    assert ok.max_new_tokens == PLAYGROUND_MAX_TOKENS
    for bad in (str(PLAYGROUND_MAX_TOKENS + 1), "0", "many"):
        with pytest.raises(Invalid):
            generate_params({"prompt": "hi", "max_new_tokens": bad})
    with pytest.raises(Invalid):
        generate_params({"prompt": "  "})

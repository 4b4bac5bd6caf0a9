"""The review wait's Resume form, as an expert sees and uses it in Prefect's own web UI in a real headless
Chromium, against the session's Prefect server (which serves its UI).

A tiny flow in a process of its own (helpers.prefect_ui.REVIEW_FORM_FLOW) calls the project's
`wait_for_review` as round 1 does, so the paused run shows the round's exact ReviewInput form. In each of
Prefect's two UIs: the form asks for a Reviewer (required: the UI refuses the form without one), one
plain text box for the answer, the decision and notes, and no type toggle ("Property is type None"); an
answer naming a missing file, typed in the browser, is refused by the flow with the reason at the top of
the next form; a `stop` given in the browser ends the run. The flow's log line at the wait says what
waits and how to answer.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from uuid import uuid4

import pytest
from helpers.browser import browse
from helpers.prefect import paused_run
from helpers.prefect_ui import UIS, start_review_form
from helpers.project import left
from pydantic import ValidationError

from visem_pl.flows.review_wait import ReviewInput, parse_answer, read_answer

FIELDS = ["Reviewer", "Answer (Optional)", "Decision (Optional)", "Notes (Optional)"]


def logs_with(server, run_id: str, text: str, timeout: float = 60) -> str:
    """The run's log once it holds `text` (the flow ships its logs in batches), or as it is after `timeout` s."""
    deadline = time.monotonic() + left(timeout)
    while True:
        rows = server.post(
            "/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_ASC", "limit": 200}
        ).json()
        found = "\n".join(r["message"] for r in rows)
        if text in found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def check_form(ui, dialog) -> None:
    """Reviewer required, one plain text box for the answer, a decision, notes; nothing else, no type toggle."""
    assert ui.labels(dialog) == FIELDS
    for label in ("Reviewer", "Answer (Optional)", "Notes (Optional)"):
        box = ui.control(dialog, label)
        assert box.count() == 1 and box.evaluate("e => e.tagName") == "TEXTAREA", label
    assert dialog.locator("textarea, input:not([type=hidden]), select").count() == 3
    assert ui.control(dialog, "Decision (Optional)").inner_text().strip() == "import"
    # An optional type (`str | None`) is drawn as a toggle between types: tabs (v2) or buttons (v1).
    assert dialog.get_by_role("tab").count() == 0
    assert dialog.get_by_role("button", name=re.compile(r"^(str|int|None)$")).count() == 0
    text = dialog.inner_text()
    assert "absolute path of the reviewed export" in text and "digits only is read as a project number" in text


@pytest.mark.timeout(420)
@pytest.mark.parametrize("ui_name", ["v1", "v2"])
def test_resume_form_in_the_prefect_ui(browser, prefect_server, tmp_path, ui_name):
    ui, origin = UIS[ui_name], prefect_server.ui
    name = f"review-form-{ui_name}-{uuid4().hex[:8]}"
    missing = tmp_path / "exports" / "expert.json"  # an export the expert forgot to copy to the round's machine
    flows = start_review_form(prefect_server, tmp_path, name)
    try:
        run_id = paused_run(prefect_server, name, flows, "review-round-1-1")["id"]
        line = (
            "Round 1 waits for 30 frames to be reviewed: answer in the Prefect UI's Resume form "
            f"({origin}/runs/flow-run/{run_id}) or run "
            f"`visem-pl review submit --flow-run {run_id} --export FILE --reviewer NAME`"
        )
        assert line in logs_with(prefect_server, run_id, line)
        with browse(origin, executable=browser) as (page, visit):
            dialog = ui.open_form(page, origin, run_id)
            dialog.get_by_text("Round 1: 30 of 30 frames wait for review.").wait_for()  # the UI loads it apart
            check_form(ui, dialog)
            assert "Property is type" not in page.locator("body").inner_text()

            # No reviewer: the form is not taken (the server checks it against the form's schema).
            ui.control(dialog, "Answer (Optional)").fill(str(missing))
            ui.submit(dialog)
            page.get_by_text("'reviewer' is a required property").first.wait_for()
            run = prefect_server.get(f"/flow_runs/{run_id}")
            assert run["state"]["state_details"]["pause_key"] == "review-round-1-1"

            # A reviewer and a path to a file that is not there: the flow refuses it and waits again.
            ui.control(dialog, "Reviewer").fill("Dr Ann Example")
            assert ui.resume(dialog)["status"] == "ACCEPT"
            paused_run(prefect_server, name, flows, "review-round-1-2")
            dialog = ui.open_form(page, origin, run_id)
            dialog.get_by_text("Round 1: 30 of 30 frames wait for review.").wait_for()
            text = dialog.inner_text()
            top, queue = text.index("The last answer was not taken"), text.index("Round 1: 30 of 30")
            assert top < queue < text.index("Reviewer")
            assert f"{missing}: no such file" in text
            check_form(ui, dialog)
            assert "Property is type" not in page.locator("body").inner_text()

            # The coordinator stops the round: no answer needed, the run ends.
            ui.control(dialog, "Reviewer").fill("coordinator")
            ui.choose(dialog, "Decision (Optional)", "stop")
            ui.control(dialog, "Notes (Optional)").fill("stopped from the browser")
            assert ui.resume(dialog)["status"] == "ACCEPT"
            result = flows.result(timeout=120)
            problems = visit.problems(ui.known(origin))
        assert problems == []
    finally:
        flows.stop()
    assert result["flow_run"] == run_id
    assert result["answers"] == [
        {"reviewer": "Dr Ann Example", "answer": str(missing), "decision": "import", "notes": ""},
        {"reviewer": "coordinator", "answer": "", "decision": "stop", "notes": "stopped from the browser"},
    ]
    assert prefect_server.get(f"/flow_runs/{run_id}")["state"]["type"] == "COMPLETED"
    assert logs_with(prefect_server, run_id, "").count("Round 1 waits for 30 frames to be reviewed") == 2


def test_the_answer_is_read_as_its_description_says(tmp_path):
    """Digits only: a Label Studio project's number; anything else: a path (quotes of a copied path dropped).
    The reasons an `import` is refused before any export is read are the ones shown at the top of the next form."""
    export = tmp_path / "expert.json"
    export.write_text("[]")
    assert parse_answer(" 12 ") == 12 and parse_answer("12a") == Path("12a")
    assert parse_answer(f' "{export}" ') == export and parse_answer(f"'{export}'") == export
    assert parse_answer("") is None and parse_answer("  ") is None and parse_answer(None) is None
    assert read_answer({"reviewer": " Ann ", "answer": str(export)}) == ("Ann", export, [])
    assert read_answer({"reviewer": "Ann", "answer": "7"}) == ("Ann", 7, [])
    _, _, problems = read_answer({"reviewer": " ", "answer": ""})
    assert [p.split(":")[0] for p in problems] == ["Reviewer is empty", "Answer is empty"]
    relative = read_answer({"reviewer": "Ann", "answer": "expert.json"}, "/lab/project")[2]
    assert relative == [
        "expert.json: give the export's absolute path on the machine running the round (the round runs in /lab/project)"
    ]
    assert read_answer({"reviewer": "Ann", "answer": str(tmp_path)})[2] == [f"{tmp_path}: a folder, not an export file"]
    missing = f"{tmp_path}/none.json"
    assert read_answer({"reviewer": "Ann", "answer": missing})[2] == [f"{missing}: no such file"]
    with pytest.raises(ValidationError, match="reviewer"):
        ReviewInput(answer=str(export))  # the form cannot be sent without a reviewer
    # An answer the earlier form stored (export_path / label_studio_project), read by a run resumed after
    # the change, becomes the one answer field.
    earlier = {"reviewer": "", "export_path": str(export), "label_studio_project": None, "decision": "import"}
    assert ReviewInput(**earlier).answer == str(export)
    assert ReviewInput(**{**earlier, "export_path": None, "label_studio_project": 12}).answer == "12"

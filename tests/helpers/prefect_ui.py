"""The review wait's Resume form as an expert meets it: Prefect's own web UI in a real headless Chromium.

A tiny flow (REVIEW_FORM_FLOW, in a process of its own) calls the project's `wait_for_review` as round 1
does (30 frames queued) and checks each answer as the round does before importing it, so a paused flow
run shows exactly the round's ReviewInput form. `PrefectUI` drives Prefect 3.9's two UIs: v1, at
`/runs/flow-run/<id>` (the link the flow's log gives), and v2, at `/v2/runs/flow-run/<id>` (where a new
user's browser lands from the server's front page).

    .venv/bin/python tests/helpers/prefect_ui.py docs/review_resume_form.png [--ui v1|v2] [--width 1280 --height 900]

starts a Prefect server (with its UI) and the tiny flow in a temporary folder, opens the Resume form and
saves a screenshot of it; exit 1 when the page has a problem, 2 when no browser is there.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

if __package__ in (None, ""):  # run as a script: import `helpers` as the tests do
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.browser import browse, chromium_path  # noqa: E402
from helpers.prefect import FlowProcess, PrefectServer, paused_run, start_prefect  # noqa: E402
from helpers.project import stop_group  # noqa: E402

# Round 1's review wait with 30 frames queued, in a flow of its own; each answer is checked as the round
# checks it before importing (read_answer), refused ones are shown at the top of the next form, and the
# flow ends on a stop or on an answer the round would import. It prints every answer it got.
REVIEW_FORM_FLOW = r"""
import json, sys
from prefect import flow
from prefect.runtime import flow_run
from visem_pl.flows.review_wait import read_answer, wait_for_review

ws, name = sys.argv[1], sys.argv[2]

@flow(name="review-form")
def review_form() -> dict:
    batch = f"{ws}/review/round-1/exports/20261205-101500"
    context = {"round": 1, "workspace": ws, "store": f"{ws}/review/round-1", "flow_run": str(flow_run.id),
               "tasks_json": f"{batch}/tasks.json", "images": f"{batch}/images",
               "labelling_config": f"{batch}/labelling_config.xml"}
    reason, answers = None, []
    for attempt in range(1, 10):
        answer = wait_for_review(1, attempt, {"queued": 30, "left": 30}, context, reason, 900)
        answers.append(answer.model_dump(mode="json"))
        if answer.decision == "stop":
            break
        reason = read_answer(answers[-1], ws)[2]
        if not reason:
            break
    return {"flow_run": str(flow_run.id), "answers": answers}

print(json.dumps(review_form.with_options(flow_run_name=name)()))
"""


def start_review_form(server: PrefectServer, folder: Path, name: str) -> FlowProcess:
    """REVIEW_FORM_FLOW as flow run `name`, its workspace and output under `folder`."""
    ws = folder / "project"
    ws.mkdir(parents=True, exist_ok=True)
    return FlowProcess(ws, server, REVIEW_FORM_FLOW, folder / "flow", args=(str(ws), name))


@dataclass(frozen=True)
class PrefectUI:
    """One of Prefect 3.9's web UIs, as a person uses it to answer a paused flow run."""

    name: str  # "v1" or "v2"
    prefix: str  # the UI's path under the server's origin
    submit_label: str  # the form's submit button
    # Prefect's own faults on these pages, not the form's (URL paths, or prefixes of remote URLs): no
    # favicon at the server's root, and the tab's icon, which follows the run's state, missing: v1 has no
    # Paused icon, v2 asks for every state's icon at the root instead of under /v2. v2 also fetches
    # Amplitude's configuration at start-up whatever the analytics setting says (aborted by the browser
    # here: nothing leaves loopback).
    known_faults: tuple[str, ...]

    def run_page(self, origin: str, run_id: str) -> str:
        return f"{origin}{self.prefix}/runs/flow-run/{run_id}"

    def known(self, origin: str) -> list[str]:
        return [k if k.startswith("https://") else origin + k for k in self.known_faults]

    def open_form(self, page, origin: str, run_id: str):
        """Open the flow run's page, press Resume, and return the form's dialog (Playwright Locator)."""
        page.goto(self.run_page(origin, run_id))
        if self.name == "v1":
            page.get_by_role("button", name="Resume", exact=True).click()
        else:  # v2 keeps Resume in the run's menu
            page.get_by_role("button", name="Open menu").first.click()
            page.get_by_role("menuitem", name="Resume", exact=True).click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_text("Notes (Optional)", exact=True).wait_for()
        return dialog

    def labels(self, dialog) -> list[str]:
        """The form's field labels, in order, as shown (an optional field's label ends in "(Optional)")."""
        return [t.strip() for t in dialog.locator("label").all_inner_texts()]

    def control(self, dialog, label: str):
        """The input under the field labelled `label`: a text box, or the button of a choice."""
        if self.name == "v2":  # the label's `for` names the input (a choice's button has an aria-label of its own)
            for_id = dialog.locator("label", has_text=re.compile(f"^{re.escape(label)}$")).get_attribute("for")
            return dialog.locator(f'[id="{for_id}"]')
        # v1's labels point at no element (their `for` names no id), so the field is found by its label's text.
        title = dialog.page.locator(".schema-form-property__label", has_text=re.compile(f"^{re.escape(label)}$"))
        field = dialog.locator(".schema-form-property").filter(has=title)
        return field.locator("textarea, .p-select-button__control")

    def choose(self, dialog, label: str, option: str) -> None:
        button = self.control(dialog, label)
        if self.name == "v1":  # its select opens from the keyboard (a click in the dialog did not open it)
            button.focus()
            button.press("ArrowDown")
        else:
            button.click()
        dialog.page.get_by_role("option", name=option, exact=True).click()

    def submit(self, dialog) -> None:
        dialog.get_by_role("button", name=self.submit_label, exact=True).click()

    def resume(self, dialog) -> dict:
        """Submit the form and return the server's answer to the resume request the page sends. (browse()
        routes every request through Python, which moves only while Playwright is called: waiting here,
        not in time.sleep, is what lets the request go.)"""
        with dialog.page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/resume")) as sent:
            self.submit(dialog)
        return sent.value.json()


STATES = ("scheduled", "pending", "running", "paused", "completed", "cancelled", "failed", "crashed")
UIS = {
    "v1": PrefectUI("v1", "", "Submit", ("/favicon.ico", "/ico/undefined.svg", "/ico/paused.svg")),
    "v2": PrefectUI(
        "v2", "/v2", "Resume", ("/favicon.ico", *(f"/{s}.svg" for s in STATES), "https://sr-client-cfg.amplitude.com/")
    ),
}


def screenshot_form(out: Path, ui: PrefectUI, width: int = 1280, height: int = 900) -> list[str]:
    """Start a Prefect server and the review-form flow in a temporary folder, open the Resume form in
    Chromium at `width` x `height`, save the form (its dialog, with a margin) as PNG `out`; the problems
    the page had."""
    with tempfile.TemporaryDirectory(prefix="visem-review-form-") as tmp:
        home = Path(tmp) / "prefect-home"
        home.mkdir()
        proc, server = start_prefect(home)
        flows = None
        try:
            name = f"review-form-{uuid4().hex[:8]}"
            flows = start_review_form(server, Path(tmp), name)
            run = paused_run(server, name, flows, "review-round-1-1")
            with browse(server.ui, width=width, height=height) as (page, visit):
                dialog = ui.open_form(page, server.ui, run["id"])
                dialog.get_by_text("Round 1: 30 of 30 frames wait for review.").wait_for()  # loaded apart
                page.wait_for_timeout(500)  # the dialog's opening animation
                box = dialog.locator(".p-modal__card") if ui.name == "v1" else dialog  # v1's dialog fills the page
                b = box.bounding_box() or {"x": 0, "y": 0, "width": width, "height": height}
                m = 16
                x, y = max(b["x"] - m, 0), max(b["y"] - m, 0)
                clip = {"x": x, "y": y, "width": min(b["width"] + 2 * m, width - x),
                        "height": min(b["height"] + 2 * m, height - y)}  # fmt: skip
                out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(out), clip=clip, animations="disabled")
                return visit.problems(ui.known(server.ui))
        finally:
            if flows is not None:
                flows.stop()
            server.close()
            stop_group(proc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="where the PNG screenshot goes")
    parser.add_argument("--ui", choices=sorted(UIS), default="v1", help="which Prefect UI (default v1)")
    parser.add_argument("--width", type=int, default=1280, help="viewport width in CSS pixels (default 1280)")
    parser.add_argument("--height", type=int, default=900, help="viewport height in CSS pixels (default 900)")
    args = parser.parse_args(argv)
    if chromium_path() is None:
        print("no chromium: install Debian's chromium with `make browser` (as root)", file=sys.stderr)
        return 2
    problems = screenshot_form(args.out, UIS[args.ui], args.width, args.height)
    print(f"screenshot: {args.out} (Prefect UI {args.ui}, {args.width}x{args.height} viewport)")
    for p in problems:
        print(f"FAIL: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

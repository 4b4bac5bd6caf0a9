"""Live Label Studio: push a round's queue into a new project, pull the finished annotations back.

How push and pull work, and how the API key is kept out of every message: docs/EXCHANGE.md.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from visem_pl.tasks.dataset.reader import Clip
from visem_pl.tasks.review.exchange import LABELSTUDIO, write_labelstudio_batch
from visem_pl.tasks.review.store import PULLED_PREFIX, QueueStore, utc_now
from visem_pl.tasks.workspace.io import write_json

ENV_URL = "LABEL_STUDIO_URL"
ENV_KEY = "LABEL_STUDIO_API_KEY"
ENV_DOCUMENT_ROOT = "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"
PROJECT_FILE = "labelstudio_project.json"
TIMEOUT_S = 120.0


class LiveError(RuntimeError):
    """Something the user can act on; the message never holds the API key."""


@dataclass(frozen=True)
class Server:
    url: str
    api_key: str

    def __repr__(self) -> str:  # never show the key, not even in a traceback's locals
        return f"Server(url={self.url!r}, api_key=***)"

    def redact(self, text: object) -> str:
        out = str(text)
        return out.replace(self.api_key, "***") if self.api_key else out


def server_from_env(env=None) -> Server:
    env = os.environ if env is None else env
    url, key = (env.get(ENV_URL) or "").strip(), (env.get(ENV_KEY) or "").strip()
    missing = [name for name, v in ((ENV_URL, url), (ENV_KEY, key)) if not v]
    if missing:
        raise LiveError(
            f"set {' and '.join(missing)} in the environment (the Label Studio server, e.g. "
            f"http://127.0.0.1:8080, and an access token from its Account & Settings page)"
        )
    if not url.startswith(("http://", "https://")):
        raise LiveError(f"{ENV_URL} must start with http:// or https://, got {url!r}")
    return Server(url.rstrip("/"), key)


def connect(server: Server, timeout: float = TIMEOUT_S):
    """A `label_studio_sdk.LabelStudio` client, checked with a `whoami` call."""
    from label_studio_sdk import LabelStudio

    try:
        client = LabelStudio(base_url=server.url, api_key=server.api_key, timeout=timeout)
        client.users.whoami()
    except Exception as exc:  # noqa: BLE001 - the SDK raises ApiError, httpx errors, jwt errors
        raise LiveError(
            f"{server.url}: cannot use Label Studio with the key in {ENV_KEY}: {describe(exc, server)}"
        ) from None
    return client


def describe(exc: BaseException, server: Server) -> str:
    status = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    if status is not None:
        text = body if isinstance(body, str) else json.dumps(body, default=str)
        hint = " (the key is wrong, or a legacy token on a server that disables them)" if status == 401 else ""
        return server.redact(f"HTTP {status}{hint}: {text}")
    return server.redact(f"{type(exc).__name__}: {exc}")


def image_url(rel_dir: str, item: str) -> str:
    return "/data/local-files/?d=" + quote(f"{rel_dir}/{item}.jpg", safe="/")


def push(
    store: QueueStore,
    round_n: int,
    boxes: pd.DataFrame | Path,
    clips: list[Clip],
    server: Server,
    document_root: Path | str | None = None,
    title: str | None = None,
    when: str | None = None,
    client=None,
) -> dict:
    """Export every item not reviewed yet as one batch and hand it to Label Studio as a new project.

    Returns {batch, dir, items, project, storage, url}; batch None when every item is reviewed."""
    from visem_pl.tasks.review.exchange import labelstudio

    todo = store.to_export()
    if not todo:
        return {"batch": None, "dir": None, "items": 0, "project": None, "storage": None, "url": server.url}
    when = when or utc_now()
    batch = store.new_batch(LABELSTUDIO, when)
    folder = store.exports / batch
    root = Path(document_root if document_root is not None else store.root).resolve()
    images = folder.resolve() / "images"
    try:
        rel = images.relative_to(root).as_posix()
    except ValueError:
        raise LiveError(
            f"{images}: not under the local-files document root {root} (start Label Studio with "
            f"{ENV_DOCUMENT_ROOT} set to a folder above the queue folder and pass the same "
            f"folder to --document-root)"
        ) from None
    client = client if client is not None else connect(server)
    project_id = None
    try:
        tasks = write_labelstudio_batch(folder, store, todo, boxes, clips, round_n, batch)
        project = client.projects.create(
            title=(title or f"visem-pl round {round_n} {batch}")[:50],
            description=f"visem-pl review queue, round {round_n}, batch {batch} ({len(todo)} frames)",
            label_config=labelstudio.labelling_config(),
        )
        project_id = project.id
        storage = client.import_storage.local.create(
            project=project_id, path=str(images), use_blob_urls=False, title=f"visem-pl {batch} images"[:50]
        )
        live = []
        for task in tasks:
            t = json.loads(json.dumps(task))
            t["data"]["image"] = image_url(rel, t["data"]["item"])
            live.append(t)
        done = client.projects.import_tasks(id=project_id, request=live)
        took = getattr(done, "task_count", None)
        if took != len(live):
            raise LiveError(f"Label Studio took {took} of {len(live)} tasks")
        info = {
            "url": server.url,
            "project": project_id,
            "storage": storage.id,
            "batch": batch,
            "round": int(round_n),
            "pushed_at": when,
            "items": list(todo),
            "images": rel,
            "document_root": str(root),
        }
        write_json(folder / PROJECT_FILE, info)
        store.record_export(batch, LABELSTUDIO, todo, when, folder)
    except BaseException as exc:
        if project_id is not None:
            try:
                client.projects.delete(id=project_id)
            except Exception:  # noqa: BLE001 - best effort; the original error matters
                pass
        shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, (LiveError, KeyboardInterrupt, SystemExit)):
            raise
        if isinstance(exc, ValueError) and getattr(exc, "status_code", None) is None:
            raise
        raise LiveError(f"{server.url}: push failed, nothing recorded: {describe(exc, server)}") from None
    return {
        "batch": batch,
        "dir": str(folder),
        "items": len(todo),
        "project": project_id,
        "storage": info["storage"],
        "url": server.url,
    }


def pushed_batch(store: QueueStore, batch: str | None = None) -> dict:
    """The project file of `batch`, or of the latest batch pushed to Label Studio."""
    if batch is not None:
        path = store.exports / batch / PROJECT_FILE
        if not path.exists():
            raise LiveError(f"{path}: batch '{batch}' was not pushed to Label Studio (no {PROJECT_FILE})")
        return json.loads(path.read_text(encoding="utf-8"))
    for e in reversed(store.state()["exports"]):
        path = store.exports / e["batch"] / PROJECT_FILE
        if path.exists():
            return json.loads(path.read_text(encoding="utf-8"))
    raise LiveError(
        f"{store.root}: no batch of this queue was pushed to Label Studio; run `visem-pl review push` first"
    )


def download(server: Server, project_id: int, client=None) -> bytes:
    """The project's full JSON export (every task, annotated or not), as Label Studio sends it."""
    client = client if client is not None else connect(server)
    try:
        return b"".join(client.projects.exports.download_sync(project_id, export_type="JSON", download_all_tasks=True))
    except Exception as exc:  # noqa: BLE001
        raise LiveError(f"{server.url}: cannot export project {project_id}: {describe(exc, server)}") from None


def user_emails(server: Server, client) -> dict[int, str]:
    """Every Label Studio user the key may see: id -> e-mail (else username, else first and last name), as
    the project's export names its annotators by id only (`completed_by`)."""
    try:
        users = client.users.list()
    except Exception as exc:  # noqa: BLE001
        raise LiveError(f"{server.url}: cannot list the Label Studio users: {describe(exc, server)}") from None
    out = {}
    for u in users:
        full = " ".join(p for p in (getattr(u, "first_name", None), getattr(u, "last_name", None)) if p).strip()
        name = getattr(u, "email", None) or getattr(u, "username", None) or full
        if getattr(u, "id", None) is not None and name:
            out[int(u.id)] = name
    return out


def who_pulls(server: Server, client) -> str:
    """The Label Studio user whose key pulls (recorded as who imported, where no --reviewer is given)."""
    try:
        me = client.users.whoami()
    except Exception as exc:  # noqa: BLE001
        raise LiveError(f"{server.url}: cannot ask Label Studio who the key is: {describe(exc, server)}") from None
    return getattr(me, "email", None) or getattr(me, "username", None) or f"labelstudio-user-{me.id}"


def pull(
    store: QueueStore,
    server: Server,
    reviewer: str | None = None,
    batch: str | None = None,
    replace: bool = False,
    when: str | None = None,
    client=None,
    rule: str = "latest",
) -> dict:
    """Fetch the project's annotations and import them all or nothing (ImportRefused lists every
    problem with its item id, and nothing is changed). Each item is recorded as answered by the Label
    Studio user who completed its annotation (several: as `rule`, params.yaml review.multiple_annotations,
    says); `reviewer` is who pulls (default: the key's user)."""
    from visem_pl.tasks.review.exchange import labelstudio

    info = pushed_batch(store, batch)
    client = client if client is not None else connect(server)
    raw = download(server, int(info["project"]), client=client)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LiveError(f"{server.url}: project {info['project']}'s export is not JSON ({exc})") from None
    reviewer = reviewer or who_pulls(server, client)
    answers = labelstudio.parse_export(data, rule=rule, users=user_emails(server, client))
    with tempfile.TemporaryDirectory(prefix="visem-ls-pull-") as tmp:
        original = Path(tmp) / f"{PULLED_PREFIX}{int(info['project'])}-{info['batch']}.json"
        original.write_bytes(raw)
        result = store.apply(answers, original, reviewer, LABELSTUDIO, replace=replace, when=when)
    return {"format": LABELSTUDIO, "project": int(info["project"]), "batch": info["batch"], **result}


def batch_of_project(store_root: Path | str, project: int) -> str | None:
    """The export batch of a review queue that was pushed to Label Studio project `project`."""
    for info in sorted(Path(store_root).glob("exports/*/labelstudio_project.json")):
        try:
            if int(json.loads(info.read_text(encoding="utf-8")).get("project", -1)) == int(project):
                return info.parent.name
        except (OSError, ValueError):
            continue
    return None

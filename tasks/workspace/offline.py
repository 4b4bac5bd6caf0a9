"""Set the process up offline and quiet before any heavy library is imported.

Labs run this on air-gapped workstations and CI has no internet: nothing may phone home,
auto-install a package or fetch weights, fonts or datasets at run time.
"""

from __future__ import annotations

import os
from pathlib import Path

# Environment understood by the libraries themselves; set before they are imported.
OFFLINE_ENV = {
    # Ultralytics: no hub, no pip auto-install of missing extras, no GitHub asset checks.
    "YOLO_OFFLINE": "true",
    "YOLO_AUTOINSTALL": "false",
    "YOLO_VERBOSE": "false",
    # Prefect: no telemetry to Prefect's analytics service.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    # DVC: no usage analytics, no updater check.
    "DVC_NO_ANALYTICS": "1",
    "DVC_NO_UPDATER": "1",
    # Weights & Biases, Comet and friends: never start if an import happens.
    "WANDB_MODE": "disabled",
    "COMET_MODE": "disabled",
    "HF_HUB_OFFLINE": "1",
}

# Ultralytics callbacks that would talk to a service or a tracker; "dvc" stays off unless asked,
# because DVCLive inside a DVC stage would fight DVC for the same workspace.
# (8.4 has no "hub" setting any more: YOLO_OFFLINE keeps the hub away.)
ULTRALYTICS_OFF = (
    "sync",
    "hub",
    "dvc",
    "mlflow",
    "wandb",
    "comet",
    "clearml",
    "neptune",
    "raytune",
    "tensorboard",
    "vscode_msg",
    "openvino_msg",
)


def configure() -> None:
    """Apply OFFLINE_ENV (writes nothing: `visem-pl validate` must leave every folder as it was)."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    quiet_openvino()


def quiet_ultralytics(dvc_callback: bool = False, project_dir: Path | None = None) -> None:
    """Switch off Ultralytics' network-facing settings (imports Ultralytics: call it only where it is used).

    Its settings file is kept in the project's `.cache/ultralytics/` (`Workspace.ultralytics_config`), not in the user's
    ~/.config, so the project's choices never leak into (or from) other projects.
    """
    configure()
    if "YOLO_CONFIG_DIR" not in os.environ:
        from visem_pl.tasks.workspace.paths import Workspace

        cfg = Workspace(project_dir or Path.cwd()).ultralytics_config
        cfg.mkdir(parents=True, exist_ok=True)
        os.environ["YOLO_CONFIG_DIR"] = str(cfg)
    from ultralytics import settings
    from ultralytics.utils import USER_CONFIG_DIR

    _local_font(USER_CONFIG_DIR)

    wanted = {key: False for key in ULTRALYTICS_OFF if key in settings}
    if dvc_callback and "dvc" in wanted:
        wanted["dvc"] = True
    if any(settings.get(k) != v for k, v in wanted.items()):
        settings.update(wanted)


def _local_font(config_dir: Path) -> None:
    """Give Ultralytics its label font locally.

    Checking a dataset, Ultralytics looks for Arial.ttf and otherwise probes GitHub to fetch
    it. Matplotlib (an Ultralytics dependency) ships DejaVu Sans; it stands in, offline.
    """
    target = Path(config_dir) / "Arial.ttf"
    if target.exists():
        return
    import shutil

    import matplotlib

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def quiet_openvino() -> None:
    """Keep OpenVINO from sending usage statistics; must run before `import openvino`.

    `import openvino` (through its model converter, `openvino.tools.ovc`) starts
    `openvino_telemetry` with no opt-in dialog, and with no consent file on the machine that
    counts as consent: it writes a client id under ~/intel and posts an "import" event (and
    one per conversion) to Google Analytics. Every consent check answers "declined" instead,
    which sends nothing and writes nothing. In memory only; idempotent; a no-op when the
    telemetry package is absent (OpenVINO then uses its own stub). `configure()` calls it.
    """
    try:
        from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
    except ImportError:
        return
    if getattr(OptInChecker.check, "_visem_declined", False):
        return

    def declined(self, *args, **kwargs):
        return ConsentCheckResult.DECLINED

    declined._visem_declined = True
    OptInChecker.check = declined

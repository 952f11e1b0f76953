"""Logger factories that need a decision Lightning's constructors don't make."""
from __future__ import annotations

import netrc
import os
import uuid
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger


def _wandb_key_available() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_mode() -> str:
    """WANDB_MODE when set; else online with an API key, offline without (W&B never prompts for a login)."""
    os.environ.setdefault("WANDB_MODE", "online" if _wandb_key_available() else "offline")
    return os.environ["WANDB_MODE"]


def wandb_logger(project: str, save_dir: str, group: str | None = None, sweep_dir: str | None = None,
                 **kwargs) -> WandbLogger:
    """W&B logger, online or offline by `wandb_mode()` (sync offline runs later with `wandb sync`).

    Runs of one Hydra sweep share a group (the sweep directory's name) unless `group` is given."""
    save = Path(save_dir)
    save.mkdir(parents=True, exist_ok=True)
    mode = wandb_mode()
    if group is None and sweep_dir and save.resolve().is_relative_to(Path(sweep_dir).resolve()):
        group = Path(sweep_dir).name
    # The run id lives in the run directory, so a resumed run (resume=auto) continues the same W&B run.
    id_file = save / "wandb_id.txt"
    if not id_file.exists():
        id_file.write_text(kwargs.pop("id", None) or uuid.uuid4().hex[:12])
    return WandbLogger(project=project, save_dir=save_dir, offline=mode == "offline", group=group,
                       id=id_file.read_text().strip(), resume="allow", mode=mode if mode == "disabled" else None,
                       **kwargs)

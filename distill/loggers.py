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


def wandb_logger(project: str, save_dir: str, **kwargs) -> WandbLogger:
    """W&B online when an API key is available, offline otherwise (sync later with `wandb sync`).

    WANDB_MODE, when set, wins. W&B never stops to ask for a login."""
    save = Path(save_dir)
    save.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_MODE", "online" if _wandb_key_available() else "offline")
    # The run id lives in the run directory, so a resumed run (resume=auto) continues the same W&B run.
    id_file = save / "wandb_id.txt"
    if not id_file.exists():
        id_file.write_text(kwargs.pop("id", None) or uuid.uuid4().hex[:12])
    return WandbLogger(project=project, save_dir=save_dir, offline=os.environ["WANDB_MODE"] == "offline",
                       id=id_file.read_text().strip(), resume="allow", **kwargs)

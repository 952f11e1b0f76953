"""Logger factories that need a decision Lightning's constructors don't make."""
from __future__ import annotations

import netrc
import os
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
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_MODE", "online" if _wandb_key_available() else "offline")
    return WandbLogger(project=project, save_dir=save_dir, offline=os.environ["WANDB_MODE"] == "offline", **kwargs)

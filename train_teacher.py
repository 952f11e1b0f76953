"""Train or fine-tune a timm teacher on a labeled folder; writes teacher.safetensors for `train.py`.

    python train_teacher.py experiment=cifar10_teacher      # a recipe's teacher
    python train_teacher.py teacher.name=resnet18 data.train_dir=/data/labeled data.val_dir=/data/val
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from distill.entry import exit_on_error, register_resolvers, run
from teachers.task import train_teacher

register_resolvers()


def train(cfg: DictConfig) -> dict:
    """Everything a run does, given a composed config (tests call this directly)."""
    return run(cfg, train_teacher)


@hydra.main(version_base="1.3", config_path="conf", config_name="train_teacher")
def main(cfg: DictConfig) -> dict | None:
    return exit_on_error(train, cfg)


if __name__ == "__main__":
    main()

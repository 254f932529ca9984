"""Shared edge code for the Hydra entry points: config -> typed dataclasses. Library code never imports Hydra."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf


def to_container(cfg: DictConfig, key: str) -> dict[str, Any]:
    """The resolved slice `key` of the config as plain Python (raises on missing `???` values)."""
    node = OmegaConf.select(cfg, key, throw_on_missing=True)
    return OmegaConf.to_container(node, resolve=True, throw_on_missing=True)  # type: ignore[return-value]


def require(cfg: DictConfig, key: str) -> Any:
    if OmegaConf.is_missing(cfg, key):
        raise SystemExit(f"missing required config key `{key}` (pass {key}=...)")
    return OmegaConf.select(cfg, key)


def apply_storage(cfg: DictConfig) -> None:
    """Make the `storage` slice (endpoint, region for s3:// paths) effective here and in child processes."""
    from vpmoe.utils.storage import StorageConfig

    try:
        StorageConfig(**to_container(cfg, "storage")).apply()
    except TypeError as e:
        raise SystemExit(f"invalid storage config: {e}") from e

"""Datasets from TFDS: a prepared copy first, a download only when the server answers."""

from __future__ import annotations

import socket
from typing import Any
import urllib.request

__all__ = ["TFDS_DEFAULT_DIR_TEXT", "TFDSUnavailable", "tfds_load"]

TFDS_DEFAULT_DIR_TEXT = "the TFDS data directory ($TFDS_DATA_DIR or ~/tensorflow_datasets)"


class TFDSUnavailable(Exception):
    """TFDS could not provide a dataset (not installed, not prepared and offline, ...)."""


def _probably_online(host, port, timeout=3.0):
    """False if the download host is certainly unreachable (no proxy, connection fails)."""
    if urllib.request.getproxies():
        return True  # cannot tell through a proxy; let TFDS try
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tfds_load(name: str, split: str, data_dir: str | None = None,
              download_host: tuple[str, int] | None = None, **kwargs: Any) -> Any:
    """``tfds.load(name, split=split, as_supervised=True, ...)``, or raise TFDSUnavailable.

    An already prepared dataset is used as is. Otherwise a download is only attempted when
    the download server answers (or a proxy is configured), because TFDS retries an
    unreachable server for minutes before it gives up. `download_host` is the server's
    (host, port); None: not probed.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise TFDSUnavailable(
            f"tensorflow-datasets is not installed ({err}); `pip install tensorflow-datasets`"
        ) from err
    kwargs = dict(split=split, data_dir=data_dir, as_supervised=True, **kwargs)
    try:
        return tfds.load(name, download=False, **kwargs)
    except AssertionError:
        pass  # TFDS's signal for "not prepared in data_dir"
    host = download_host
    if host is not None and not _probably_online(*host):
        raise TFDSUnavailable(
            f"not prepared there, and the download server {host[0]} is unreachable (offline?)"
        )
    try:
        return tfds.load(name, download=True, **kwargs)
    except Exception as err:  # noqa: BLE001 - reported with the places looked
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise TFDSUnavailable(
            f"not prepared there, and downloading failed: {type(err).__name__}: {first_line}"
        ) from err

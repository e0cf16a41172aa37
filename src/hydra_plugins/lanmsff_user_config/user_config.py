"""Search the user's config folder first, for lanmsff's commands only (other Hydra apps are left alone)."""

from __future__ import annotations

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class LanmsffUserConfig(SearchPathPlugin):
    """Prepends ``file://<user config dir>`` when the search path holds lanmsff's configs and the folder exists.

    The folder holds per-machine settings (``local/default.yaml``) and the user's own group options;
    a missing folder is skipped without Hydra's "not available" warning.
    """

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from lanmsff.utils.config import CONF_DIR, user_config_dir

        ours = {"pkg://lanmsff.conf", f"file://{CONF_DIR}", str(CONF_DIR)}
        if not any(str(entry.path).rstrip("/") in ours for entry in search_path.get_path()):
            return
        folder = user_config_dir()
        if folder.is_dir():
            search_path.prepend(provider="lanmsff-user", path=f"file://{folder.resolve()}")

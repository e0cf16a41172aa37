"""Hydra finds this plugin by itself (the ``hydra_plugins`` namespace): it puts the user's own config
folder (:func:`lanmsff.utils.config.user_config_dir`) in front of the project's configs."""

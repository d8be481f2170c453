"""The posecore hooks of plugin ``posebh``.

The method's components register here as they land (see this plugin's README for status).
"""

POSECORE_PLUGIN_API = 1

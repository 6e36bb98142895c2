"""The built-in plugins. Each subpackage is registered under the ``bench.plugins`` entry-point group
in ``pyproject.toml``, exactly as a third-party package would register its own."""

"""The built-in job-type templates (``<type>.tpl``), shipped with the package."""

from pathlib import Path

TEMPLATE_DIR = Path(__file__).parent

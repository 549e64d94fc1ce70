"""Where the shipped data lives (profiles, example configs, dashboards).

The project is installed editable (`pip install -e .`, what `make demo` does), so the data
folders are found next to the packages.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROFILES_DIR = REPO_ROOT / "firmware_configs" / "profiles"
GATEWAYS_DIR = REPO_ROOT / "firmware_configs" / "gateways"
DASHBOARDS_DIR = REPO_ROOT / "dashboards"

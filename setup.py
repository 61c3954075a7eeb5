"""Package layout: the core in ``mlms_ir/``, and three top-level folders mapped into it.

All other metadata lives in setup.cfg. The package list is discovered, not written out: every
folder with an ``__init__.py`` under a mapped root is installed (a hand-kept list once left out
``mlms_ir.datasets``, so a regular ``pip install .`` broke ``evaluate``).
"""

from setuptools import find_packages, setup

#: Import path -> source folder. ``backends``, ``converters`` and ``zoo`` are installed as
#: ``mlms_ir.backends`` ... never as generic top-level names.
ROOTS = {
    "mlms_ir": "mlms_ir",
    "mlms_ir.backends": "backends",
    "mlms_ir.converters": "converters",
    "mlms_ir.zoo": "zoo",
}


def packages() -> list[str]:
    found: list[str] = []
    for pkg, folder in ROOTS.items():
        found.append(pkg)
        found.extend(f"{pkg}.{sub}" for sub in find_packages(folder) if f"{pkg}.{sub}" not in ROOTS)
    return found


if __name__ == "__main__":
    setup(packages=packages(), package_dir=dict(ROOTS))

"""The package structure's import rules (vlbicore/__init__.py and each package's __init__ state them).

Imports are read from the source (AST), inside functions too, so a lazy import cannot dodge a rule.
"""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "vlbicore"
CONCERNS = ("data", "products", "models", "likelihood", "inference", "store", "survey")

# module prefix -> vlbicore modules it must never import
FORBIDDEN = {
    "vlbicore.models": ("data", "products", "likelihood", "inference", "store", "survey", "cli", "config",
                        "pipeline"),
    "vlbicore.data": ("products", "models", "likelihood", "inference", "store", "survey", "cli", "config",
                      "pipeline"),
    "vlbicore.products": ("models", "likelihood", "inference", "store", "survey", "cli", "config", "pipeline"),
    "vlbicore.likelihood": ("inference", "store", "survey", "cli", "config", "pipeline"),
    "vlbicore.inference": ("store", "survey", "cli", "config", "pipeline"),
    "vlbicore.store": ("data", "products", "models", "likelihood", "inference", "survey", "cli", "config",
                       "pipeline"),
    # gather, compare and report read stores only
    "vlbicore.survey.gather": ("data", "products", "models", "likelihood", "inference", "cli", "pipeline"),
    "vlbicore.survey.compare": ("data", "products", "models", "likelihood", "inference", "cli", "pipeline"),
    "vlbicore.survey.report": ("data", "products", "models", "likelihood", "inference", "cli", "pipeline"),
    "vlbicore.survey.calibration_plots": ("data", "products", "models", "likelihood", "inference", "cli",
                                          "pipeline", "calibration"),
    "vlbicore.survey": ("inference", "likelihood", "cli", "pipeline", "calibration"),
    # the calibration driver sits beside pipeline: it may use every package, but not the command line
    "vlbicore.calibration": ("cli", "pipeline"),
    "vlbicore.statistics": ("data", "products", "models", "likelihood", "inference", "store", "survey", "cli"),
}


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def vlbicore_imports(path: pathlib.Path) -> set[str]:
    """Every vlbicore module ``path`` imports (absolute or relative, at any depth of the code)."""
    tree = ast.parse(path.read_text())
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("vlbicore"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            if base.startswith("vlbicore"):
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_module_respects_the_import_rules(path):
    name = module_name(path)
    imports = vlbicore_imports(path)
    for prefix, banned in FORBIDDEN.items():
        if name == prefix or name.startswith(prefix + "."):
            bad = sorted(i for i in imports if any(i == f"vlbicore.{b}" or i.startswith(f"vlbicore.{b}.")
                                                   for b in banned))
            assert not bad, f"{name} imports {bad}, which the rules of {prefix} forbid"


def test_only_main_imports_the_command_line():
    importers = [module_name(p) for p in MODULES if any(i.startswith("vlbicore.cli") for i in vlbicore_imports(p))]
    assert importers == ["vlbicore.__main__"]


@pytest.mark.parametrize("package", CONCERNS)
def test_each_package_says_what_it_owns_and_may_import(package):
    doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text()))
    assert doc and len(doc.splitlines()) >= 3, f"vlbicore.{package} has no package docstring"
    assert "import" in doc and ("never" in doc.lower() or "only" in doc.lower()), doc


def test_every_module_states_its_purpose():
    missing = [module_name(p) for p in MODULES if not ast.get_docstring(ast.parse(p.read_text()))]
    assert not missing, f"modules without a docstring: {missing}"

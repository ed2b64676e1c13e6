"""The names an export is made of (its file names, the Triton ensemble's tensor names) are spelled
once, in the module that owns them; every other module of the package, the deploy code, the
tools and the benchmarks uses that constant, so renaming one cannot leave a copy behind."""
import ast

from conftest import REPO

OWNERS = {"model.onnx": "ppq2l/export/metadata.py", "inference.yml": "ppq2l/export/metadata.py",
          "IMAGE": "ppq2l/export/triton/model_config.py", "LABELS": "ppq2l/export/triton/model_config.py"}
FOLDERS = ("ppq2l", "deploy", "tools", "benchmarks")


def spelled(path):
    """The string constants of `path` equal to one of the names, docstrings left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
            and node.value in OWNERS and id(node) not in docstrings}


def test_each_name_is_spelled_only_by_its_owner():
    found = {}
    for folder in FOLDERS:
        for path in sorted((REPO / folder).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            for name in spelled(path):
                found.setdefault(name, []).append(relative)
    assert {name: places for name, places in found.items() if places != [OWNERS[name]]} == {}
    assert sorted(found) == sorted(OWNERS)  # and the owners do define them


def test_the_constants_hold_the_names_the_tests_and_the_docs_use():
    from ppq2l.export.metadata import DESCRIPTION_FILE, MODEL_FILE
    from ppq2l.export.triton.model_config import IMAGE_INPUT, LABELS_OUTPUT

    assert (MODEL_FILE, DESCRIPTION_FILE, IMAGE_INPUT, LABELS_OUTPUT) == \
        ("model.onnx", "inference.yml", "IMAGE", "LABELS")

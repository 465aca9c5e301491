"""The package's import graph: no cycles, no module using another module's private names.

Read from the source with `ast` (nothing is imported), so lazy imports inside functions count too.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "bert_tf"
# bert_tf.tokenization replaces itself with bert_tf.text.tokenization (the old import path).
ALIASES = {"bert_tf.tokenization": "bert_tf.text.tokenization"}


def _module_files():
  modules = {}
  for path in sorted(PACKAGE.rglob("*.py")):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
      parts = parts[:-1]
    modules[".".join(parts)] = path
  return modules


def _is_private(name):
  return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _same_package(module, package):
  """A package's private modules (e.g. a compiled `_kernels`) are its own to import."""
  return module.rpartition(".")[0] == package


def _analyse(modules):
  """Returns ({module: set of bert_tf modules it imports}, [private-name uses])."""
  edges, private = {}, []
  for module, path in modules.items():
    tree = ast.parse(path.read_text(), filename=str(path))
    targets, bound = set(), {}  # bound: local name -> bert_tf module it refers to
    for node in ast.walk(tree):
      if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "bert_tf":
        for alias in node.names:
          full = f"{node.module}.{alias.name}"
          if full in modules:
            targets.add(full)
            bound[alias.asname or alias.name] = full
            if _is_private(alias.name) and not _same_package(module, node.module):
              private.append(f"{path.name}:{node.lineno} imports {full}")
          else:
            targets.add(node.module)
            if _is_private(alias.name) and not _same_package(module, node.module):
              private.append(f"{path.name}:{node.lineno} imports {full}")
      elif isinstance(node, ast.Import):
        for alias in node.names:
          if alias.name.split(".")[0] == "bert_tf" and alias.name in modules:
            targets.add(alias.name)
            if alias.asname:
              bound[alias.asname] = alias.name
    for node in ast.walk(tree):
      if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
          and node.value.id in bound and _is_private(node.attr)):
        private.append(f"{path.name}:{node.lineno} uses {bound[node.value.id]}.{node.attr}")
    edges[module] = {ALIASES.get(t, t) for t in targets} - {module}
  return edges, private


def _find_cycle(edges):
  state, stack = {}, []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(edges.get(node, ())):
      if state.get(nxt) == "open":
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state:
        found = visit(nxt)
        if found:
          return found
    stack.pop()
    state[node] = "done"
    return None

  for node in sorted(edges):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return None


def test_the_analysis_sees_real_imports():
  edges, _ = _analyse(_module_files())
  # A check that found nothing would pass on anything: these edges exist in the code.
  assert "bert_tf.pretraining_data.records" in edges["bert_tf.pretraining_data.job"]
  assert "bert_tf.text.tokenization" in edges["bert_tf.finetuning.classification"]


def test_cycle_finder_finds_a_cycle():
  assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_import_graph_has_no_cycles():
  edges, _ = _analyse(_module_files())
  assert _find_cycle(edges) is None, " -> ".join(_find_cycle(edges))


def test_no_module_uses_another_modules_private_names():
  _, private = _analyse(_module_files())
  assert not private, "\n".join(private)


@pytest.mark.parametrize("folder", ["text", "pretraining_data", "pretraining", "finetuning",
                                    "checkpoints", "modeling", "cli", "utils"])
def test_every_stage_folder_says_what_lives_there(folder):
  init = PACKAGE / folder / "__init__.py"
  docstring = ast.get_docstring(ast.parse(init.read_text()))
  assert docstring and len(docstring.splitlines()) >= 1


def test_old_public_import_paths_still_work():
  from bert_tf import checkpoints, modeling, tokenization
  from bert_tf.text import tokenization as text_tokenization
  assert tokenization is text_tokenization
  assert tokenization.FullTokenizer is text_tokenization.FullTokenizer
  assert callable(checkpoints.load_google_checkpoint)
  assert callable(checkpoints.init_from_checkpoint)
  assert hasattr(modeling, "BertEncoder")

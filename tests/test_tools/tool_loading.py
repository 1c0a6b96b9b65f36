"""Load a script of tools/ as a module (tools/ is not a package)."""
import importlib.util
import os.path as osp

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def load_tool(name):
    """Import ``tools/<name>.py`` afresh and return the module."""
    spec = importlib.util.spec_from_file_location(
        f'pns_tool_{name}', osp.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

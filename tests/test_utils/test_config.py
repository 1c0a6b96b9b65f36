"""load_config: one error naming the file for every way a config fails."""
import pytest

from pns_mmdet.utils import ConfigFileError, load_config


def test_loads_and_checks_required_keys(tmp_path):
    path = tmp_path / 'ok.py'
    path.write_text('model = dict(type="X")\nwork_dir = "w"\n')
    assert load_config(str(path), ('model', )).model.type == 'X'
    with pytest.raises(ConfigFileError,
                       match=r'ok\.py" lacks test_dataloader, test_cfg'):
        load_config(str(path), ('model', 'test_dataloader', 'test_cfg'))


@pytest.mark.parametrize('name,content,expected', [
    ('syntax.py', b'model = dict(\n',
     "SyntaxError: '(' was never closed (line 1)"),
    ('binary.py', b'\x80\x81', 'not UTF-8 text (byte 0'),
    ('nul.py', b'a = 1\x00\n', 'SyntaxError'),
    ('exits.py', b'raise SystemExit(3)\n', 'SystemExit: 3'),
    ('base.py', b"_base_ = 'nope.py'\n", 'nope.py'),
    ('bad.json', b'{"a": ', 'JSONDecodeError'),
    ('bad.yaml', b'a: [1,', 'ParserError'),
    ('notes.txt', b'a = 1', 'must be a .py/.json/.yaml/.yml file'),
])
def test_broken_files_name_the_file(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConfigFileError) as info:
        load_config(str(path))
    assert f'config "{path}"' in str(info.value)
    assert expected in str(info.value)


def test_missing_and_directory(tmp_path):
    with pytest.raises(ConfigFileError, match='nope.py" does not exist'):
        load_config(str(tmp_path / 'nope.py'))
    (tmp_path / 'dir.py').mkdir()
    with pytest.raises(ConfigFileError, match='is a directory'):
        load_config(str(tmp_path / 'dir.py'))


def test_base_cycle_reported_at_once(tmp_path):
    (tmp_path / 'a.py').write_text("_base_ = ['./b.py']\nx = 1\n")
    (tmp_path / 'b.py').write_text("_base_ = './a.py'\n")
    (tmp_path / 'self.py').write_text("_base_ = './self.py'\n")
    with pytest.raises(ConfigFileError, match=r'a\.py" has a _base_ cycle: '
                       r'.*a\.py -> .*b\.py -> .*a\.py'):
        load_config(str(tmp_path / 'a.py'))
    with pytest.raises(ConfigFileError, match='self.py -> .*self.py'):
        load_config(str(tmp_path / 'self.py'))
    # A shared base reached twice (diamond) is no cycle.
    (tmp_path / 'c.py').write_text('y = 2\n')
    (tmp_path / 'd1.py').write_text("_base_ = './c.py'\n")
    (tmp_path / 'd2.py').write_text("_base_ = ['./d1.py', './c.py']\n")
    with pytest.raises(ConfigFileError, match='cannot be loaded'):
        # (mmengine itself refuses the duplicate key y of two bases)
        load_config(str(tmp_path / 'd2.py'))

import os
import os.path as osp
import stat

import pytest

from pns_mmdet.utils import atomic_write, check_writable_dir


def test_atomic_write_renames_on_success(tmp_path):
    target = tmp_path / 'out.json'
    with atomic_write(str(target), 'w', encoding='utf-8') as f:
        f.write('{"a": 1}')
        # Nothing under the final name until the block ends.
        assert not target.exists()
    assert target.read_text() == '{"a": 1}'
    assert sorted(os.listdir(tmp_path)) == ['out.json']
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    target = tmp_path / 'out.bin'
    target.write_bytes(b'old')
    with pytest.raises(RuntimeError, match='boom'):
        with atomic_write(str(target)) as f:
            f.write(b'new, half written')
            raise RuntimeError('boom')
    assert target.read_bytes() == b'old'
    assert sorted(os.listdir(tmp_path)) == ['out.bin']


def test_atomic_write_rejects_append_mode(tmp_path):
    with pytest.raises(ValueError, match='mode'):
        with atomic_write(str(tmp_path / 'x'), 'a'):
            pass


def test_check_writable_dir_creates_and_cleans(tmp_path):
    out = check_writable_dir(str(tmp_path / 'a' / 'b'))
    assert osp.isdir(out) and os.listdir(out) == []


@pytest.mark.skipif(os.geteuid() == 0, reason='root can write read-only '
                    'folders; the file case below covers the error path')
def test_check_writable_dir_read_only(tmp_path):
    ro = tmp_path / 'ro'
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(OSError, match='--out-dir .*cannot be written'):
        check_writable_dir(str(ro))


def test_check_writable_dir_file_in_the_way(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    with pytest.raises(OSError, match='--out-dir .*file.*cannot be written'):
        check_writable_dir(str(blocker / 'sub'))

"""Install pns_mmdet: ``pip install -e .`` (see README for the full stack)."""
import os.path as osp

from setuptools import find_packages, setup


def read_version() -> str:
    namespace: dict = {}
    with open(osp.join(osp.dirname(__file__), 'pns_mmdet', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def read_requirements(name: str) -> list:
    path = osp.join(osp.dirname(__file__), 'requirements', name)
    with open(path) as f:
        lines = [line.split('#')[0].strip() for line in f]
    return [line for line in lines if line]


setup(
    name='pns_mmdet',
    version=read_version(),
    description='PromptNucSeg (prompt-driven nucleus instance segmentation) '
    'as an MMDetection 3.x plugin',
    long_description=(open('README.md').read()
                      if osp.exists('README.md') else ''),
    long_description_content_type='text/markdown',
    packages=find_packages(
        exclude=('configs', 'tools', 'tests', 'benchmarks')),
    python_requires='>=3.9',
    install_requires=read_requirements('runtime.txt'),
    extras_require=dict(tests=read_requirements('tests.txt')),
    license='Apache License 2.0',
    zip_safe=False,
)

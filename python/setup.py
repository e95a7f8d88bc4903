"""setup.py: builds and installs the `xent` Python package with pip, offline:

    pip install --no-build-isolation ./python

The extension xent._xent is built by CMake from the repository's own CMake tree (the directory
above this one; tests, benchmarks and the CLI are not built), for the interpreter running pip.
Needs what `make deps` installs (a C++20 compiler, CMake, pybind11-dev, python3-dev and the
libraries xent links). Not a PyPI release recipe: there is no sdist of the C++ sources.
"""
import glob
import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        if not os.path.isfile(os.path.join(ROOT, "CMakeLists.txt")):
            raise RuntimeError(f"xent: expected the repository's CMakeLists.txt in {ROOT}; build from a checkout "
                               "(pip install --no-build-isolation ./python)")
        build_dir = os.path.abspath(os.path.join(self.build_temp, "cmake"))
        cmd = ["cmake", "-S", ROOT, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release", "-DXENT_BUILD_TESTS=OFF",
               "-DXENT_BUILD_BENCH=OFF", "-DXENT_BUILD_PYTHON=ON", f"-DPython3_EXECUTABLE={sys.executable}"]
        if shutil.which("ninja"):
            cmd += ["-G", "Ninja"]
        if shutil.which("ccache"):
            cmd += ["-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"]
        subprocess.check_call(cmd)
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1))
        subprocess.check_call(["cmake", "--build", build_dir, "--target", "xent_python_module", "-j", jobs])
        built = glob.glob(os.path.join(build_dir, "python", "xent", "_xent*.so"))
        if len(built) != 1:
            raise RuntimeError(f"xent: expected one built module _xent*.so in {build_dir}/python/xent, found {built}")
        dest = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(built[0], dest)


setup(
    name="xent",
    version="0.1.0",
    description="Exact, fast softmax and cross-entropy on the CPU for NumPy and PyTorch",
    packages=["xent", "xent.torch"],
    package_dir={"": "."},
    ext_modules=[CMakeExtension("xent._xent")],
    cmdclass={"build_ext": CMakeBuild},
    python_requires=">=3.9",
    install_requires=["numpy"],
    zip_safe=False,
)

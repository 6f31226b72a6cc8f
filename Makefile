# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_MINUTES ?= 3

.PHONY: demo test test-slow browser bench-serve bench-dist bench bench-quality bench-small bench-progan bench-style bench-sagan bench-pix2pix evolution data env clean-env

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# Fashion-MNIST: found where it is, else Debian's package (as root), else torchvision's download.
# emoji (colour, for progan and the emoji classifier's tests): Debian's font and unicode-data packages (as
# root); without them the emoji tests are skipped and `--data emoji` says what to install.
data: $(STAMP)
	@bash scripts/ensure_data.sh $(BIN)/ganforge fashion-mnist
	@bash scripts/ensure_data.sh $(BIN)/ganforge emoji || echo "emoji: not available here; its tests are skipped"

# chromium for the web page's browser tests (Playwright drives Debian's, as root); without it they are skipped
browser:
	@bash scripts/ensure_browser.sh

demo: data
	@run=runs/demo-$$(date +%Y%m%d-%H%M%S); \
	$(BIN)/ganforge train dcgan --data fashion-mnist --minutes $(DEMO_MINUTES) --out $$run && \
	$(BIN)/ganforge sample $$run --n 64 --out $$run/demo-samples --grid && \
	$(BIN)/ganforge interpolate $$run --seeds 0,1,2,3,4 --steps 10 --out $$run/interpolation.gif && \
	$(BIN)/ganforge interpolate $$run --seeds 0,1,2,3,4 --steps 10 --out $$run/interpolation.png && \
	echo && echo "The demo's pictures:" && \
	echo "  sample grid:        $$run/demo-samples/grid.png" && \
	echo "  training progress:  $$run/samples/progress.gif" && \
	echo "  interpolation:      $$run/interpolation.gif  (and .png)" && \
	echo "  the model:          $$run  (ganforge sample $$run --n 16 --out my-samples)"

# one process per core (pytest-xdist), one thread each: the tiny models of the fast tests gain little from a
# second thread, so this is 1.65x faster than one process on 2 threads (4 min 39 s against 7 min 42 s here)
test: data browser
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n auto

test-slow: data browser
	$(BIN)/python -m pytest -q -m slow

# each run merges its rows into docs/results/speed.json; progan at 32px (1 channel, Fashion-MNIST-like) and 64px
# (3 channels, emoji-like), stable stage, and the middle of the 64px fade-in; stylegan2 at 32px and 64px against the
# popular ports' loop
# sagan at 32px (1 channel, 10 classes) and 64px (3 channels, 9 classes) against the ports' loop (explicit attention);
# attention_cost.py: fused against explicit self-attention, and attention's share of a sagan step (attention.json)
bench: $(STAMP)
	$(BIN)/ganforge bench --json docs/results/speed.json
	$(BIN)/ganforge bench --models progan --resolution 32 --json docs/results/speed.json
	$(BIN)/ganforge bench --models progan --resolution 64 --json docs/results/speed.json
	$(BIN)/ganforge bench --models progan --resolution 64 --alpha 0.5 --json docs/results/speed.json
	$(BIN)/ganforge bench --models stylegan2 --resolution 32 --json docs/results/speed.json
	$(BIN)/ganforge bench --models stylegan2 --resolution 64 --json docs/results/speed.json
	$(BIN)/ganforge bench --models sagan --resolution 32 --json docs/results/speed.json
	$(BIN)/ganforge bench --models sagan --resolution 64 --json docs/results/speed.json
	$(BIN)/ganforge bench --models pix2pix --resolution 32 --json docs/results/speed.json
	$(BIN)/ganforge bench --models pix2pix --resolution 64 --json docs/results/speed.json
	$(BIN)/python benchmarks/attention_cost.py --json docs/results/attention.json
	$(BIN)/python benchmarks/report.py

# 20+ minutes: ganforge and the plain loop, 10 minutes each on real Fashion-MNIST, plus the real-data floor
bench-quality: data
	$(BIN)/python benchmarks/quality.py --which floor,ganforge,plain --minutes 10
	$(BIN)/python benchmarks/report.py

# about 60 minutes: progan and dcgan side by side on emoji at 64px (30 minutes), progan on Fashion-MNIST (10 minutes)
# and on a folder of transformed emoji (15 minutes)
bench-progan: data
	PY=$(BIN)/python bash benchmarks/progan_quality.sh

# about 55 minutes: stylegan2 and stylegan side by side on emoji at 64px (30 minutes), then each on Fashion-MNIST
# at 32px (10 minutes)
bench-style: data
	PY=$(BIN)/python bash benchmarks/style_quality.sh

# about 80 minutes: class-conditional sagan and dcgan on Fashion-MNIST, 20 minutes each alone and side by side; the
# held-out checks (sagan on emoji by Unicode group, and on a folder of class subfolders) (docs/benchmarks.md)
bench-sagan: data
	PY=$(BIN)/python bash benchmarks/sagan_quality.sh

# about 45 minutes: DCGAN on Fashion-MNIST class subsets of 5,000, 1,000 and 500 images, with and without
# augmentation (docs/benchmarks.md, "Small data")
bench-small: data
	PY=$(BIN)/python bash benchmarks/small_data.sh

# about 35 minutes: pix2pix against L1 alone, 15 minutes each side by side, on edges2fashion and on gray2emoji (held
# out); held-out test pairs: L1 to the truth, FID/KID (docs/benchmarks.md); the hand-drawn outlines' picture
bench-pix2pix: data
	PY=$(BIN)/python bash benchmarks/pix2pix_quality.sh

# torchrun on this CPU: 1 process against 2 (gloo), dcgan and stylegan2 -> docs/results/dist.json
bench-dist: data
	$(BIN)/python benchmarks/dist_scaling.py

# ganforge serve under 8 concurrent clients (its own 1-step models) -> docs/results/serve.json
bench-serve: $(STAMP)
	$(BIN)/python benchmarks/serve_load.py

# the evolution reports in docs/evolution/ (about 35 minutes, then about 100): every generation on the same data for
# the same minutes, two at a time (one core each); an interrupted job continues where it stopped when run again
EVOLUTION_FM    := evolution/fashion-mnist-32px
EVOLUTION_EMOJI := evolution/emoji-64px
evolution: data
	$(BIN)/ganforge evolution --data fashion-mnist --minutes-per-model 10 --jobs 2 --out $(EVOLUTION_FM)
	$(BIN)/ganforge evolution --data emoji --resolution 64 --minutes-per-model 30 --jobs 2 --out $(EVOLUTION_EMOJI)
	for job in $(EVOLUTION_FM) $(EVOLUTION_EMOJI); do \
	  mkdir -p docs/$$job && cp -r $$job/report.md $$job/report.html $$job/images docs/$$job/ || exit 1; done

clean-env:
	rm -rf $(VENV)

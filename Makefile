# Two entry points: `make demo` (capture the built-in default, validate, draw figures) and `make test`.
# Each creates the virtual environment on first use (CPU install path, torch pinned to 2.13.0).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_STORE ?= stores/demo.zarr
DEMO_MODEL ?= toy-llava-ov
CAPTURE := $(PY) -m capture --model $(DEMO_MODEL) --overwrite --no-progress
REAL_CAPTURE := $(PY) -m capture --model dino-smollm2-llava --dtype fp32 --overwrite --no-progress

.PHONY: demo test lint bench clean

$(VENV)/.installed: pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints-cpu.txt -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	@# trains toy-llava-ov into the cache the first time (a few minutes), reuses it afterwards
	$(if $(filter toy-%,$(DEMO_MODEL)),$(PY) -m toy train)
	$(CAPTURE) --dataset synthetic-coco --attention-last --out $(DEMO_STORE)
	$(PY) -m store validate $(DEMO_STORE)
	$(CAPTURE) --dataset synthetic-correspondence --out stores/demo-correspondence.zarr
	$(CAPTURE) --dataset synthetic-coco --samples annotations --template bbox --visual-prefix --tokens last --next-token-topk 5 \
		--out stores/demo-prefixes.zarr
	$(CAPTURE) --dataset synthetic-coco --samples categories --template "{image}{text}" --out stores/demo-categories.zarr
	for kind in normal noisy empty; do \
		$(CAPTURE) --dataset synthetic-coco --prompt-set $$kind --tokens image,text --out stores/demo-prompt-$$kind.zarr || exit 1; \
	done
	for store in $(DEMO_STORE) stores/demo-correspondence.zarr stores/demo-prefixes.zarr stores/demo-categories.zarr; do \
		$(PY) -m store catalog add $$store --catalog stores/catalog --replace || exit 1; \
	done
	$(PY) -m store catalog search model=$(DEMO_MODEL) dataset=synthetic-coco --catalog stores/catalog
	$(PY) -m analyses token-norms --store $(DEMO_STORE) --out figures/demo/token-norms
	@# the toy's 8 keys are too few for the dip test to find two modes (it warns and, by default, flags nothing):
	@# the demo forces the valley split to run the knockout loop; the key list records the test's verdict
	$(PY) -m analyses variance --store $(DEMO_STORE) --method valley --out figures/demo/variance
	$(PY) -m interventions spec --keys figures/demo/variance/input_agnostic_keys.json --name "input-agnostic keys" \
		--out figures/demo/interventions/knockout.json
	@# POPE's random, popular and adversarial negatives; controls: 10 seeded draws from the whole layer group (the
	@# input-dependent one is left out when too few unflagged units remain); Neo et al.'s windows scaled to 4 layers
	$(PY) -m interventions poll --model $(DEMO_MODEL) --spec figures/demo/interventions/knockout.json --controls \
		--layer-windows neo --out figures/demo/interventions/poll
	printf '{"name": "ablate object tokens", "ablate": [{"tokens": "object", "mean_from": "%s"}]}' \
		$(abspath $(DEMO_STORE)) > figures/demo/interventions/ablate-object.json
	printf '{"name": "ablate as many random tokens", "ablate": [{"tokens": "random:object", "mean_from": "%s"}], %s}' \
		$(abspath $(DEMO_STORE)) '"control_of": "ablate object tokens"' > figures/demo/interventions/ablate-random.json
	$(PY) -m interventions poll --model $(DEMO_MODEL) --spec figures/demo/interventions/ablate-object.json \
		--spec figures/demo/interventions/ablate-random.json --out figures/demo/interventions/poll-ablation
	@# Neo et al.'s three blocking scenarios by layer window, on single-instance objects that pass their
	@# hallucination control (the toy's shapes are larger than their 1,000-2,000 px², hence --object-area)
	$(PY) -m interventions scenarios --out figures/demo/interventions/scenarios
	$(PY) -m interventions poll --model $(DEMO_MODEL) --spec figures/demo/interventions/scenarios/block-object1-to-last.json \
		--spec figures/demo/interventions/scenarios/block-non-object-to-last.json \
		--spec figures/demo/interventions/scenarios/block-non-last-row-to-last-row.json --neo-selection \
		--object-area 0,1000000 --hallucination-control --layer-windows neo --out figures/demo/interventions/poll-scenarios
	$(PY) -m interventions describe --model $(DEMO_MODEL) --spec figures/demo/interventions/knockout.json --max-new-tokens 12 \
		--out figures/demo/interventions/describe
	@# Wei's masking intervals: no query attends to image tokens a..b-1 at any layer, beside the unmasked model
	for start in 0 8; do end=$$((start + 8)); \
		printf '{"name": "mask image[%s:%s]", "knockout": [{"queries": "all", "keys": "image[%s:%s]", "layers": "all"}]}' \
			$$start $$end $$start $$end > figures/demo/interventions/mask-$$start-$$end.json || exit 1; \
	done
	$(PY) -m interventions loss --model $(DEMO_MODEL) --keep 0,8,32,64,all --spec figures/demo/interventions/mask-0-8.json \
		--spec figures/demo/interventions/mask-8-16.json --out figures/demo/interventions/loss
	$(CAPTURE) --dataset synthetic-coco --intervention figures/demo/interventions/knockout.json \
		--out stores/demo-knockout.zarr
	$(PY) -m analyses clustering --store $(DEMO_STORE) --out figures/demo/clustering
	$(PY) -m analyses correspondence --store stores/demo-correspondence.zarr --out figures/demo/correspondence
	$(PY) -m analyses cosine --store stores/demo-prompt-normal.zarr --store stores/demo-prompt-noisy.zarr \
		--store stores/demo-prompt-empty.zarr --labels normal,noisy,empty --out figures/demo/cosine
	$(PY) -m analyses logit-lens --store $(DEMO_STORE) --out figures/demo/logit-lens
	$(PY) -m analyses ffn-memory --store stores/demo-prefixes.zarr --out figures/demo/ffn-memory
	$(PY) -m analyses norm-attention --store $(DEMO_STORE) --out figures/demo/norm-attention
	$(PY) -m analyses probing --store $(DEMO_STORE) --text-store stores/demo-categories.zarr --out figures/demo/probing
	$(PY) -m analyses probing --store stores/demo-correspondence.zarr --out figures/demo/probing-choice
	@# real parts (issue 20): dino-smollm2-llava, fetched, converted and assembled into the cache the first time
	@# (about 1.5 GB; minutes), then a few minutes: photos with the lens, the photos' pairs with correspondence
	$(PY) -m capture.real_parts fetch
	$(REAL_CAPTURE) --dataset photos --subset photos --limit 4 --out stores/demo-real-photos.zarr
	$(PY) -m analyses logit-lens --store stores/demo-real-photos.zarr --out figures/demo/real-parts/logit-lens
	$(REAL_CAPTURE) --dataset photos --subset pairs --tokens image --ffn-topk 0 --out stores/demo-real-pairs.zarr
	$(PY) -m analyses correspondence --store stores/demo-real-pairs.zarr --out figures/demo/real-parts/correspondence
	@echo "stores: stores/   figures: figures/demo/ (real parts: figures/demo/real-parts/)"

test: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) stores figures

.PHONY: setup test demo bench gpu-check
setup:
	bash scripts/setup.sh
test:
	bash scripts/test.sh
demo:
	bash scripts/demo.sh
bench:
	bash scripts/bench.sh
gpu-check:
	bash scripts/gpu-check.sh $(ARGS)

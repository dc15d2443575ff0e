.PHONY: run test install bench
run:      ## install everything and start TraceMem on the embedded default
	scripts/run.sh
test:     ## install everything and run the whole test suite (PostgreSQL + Redis)
	scripts/test.sh
install:
	scripts/install.sh
bench:    ## run the benchmarks and print a table
	scripts/install.sh && .venv/bin/python -m bench

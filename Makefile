# The two commands of a fresh machine: `make run` and `make test`. Everything else follows from them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGON2 := $(VENV)/.argon2-native

# Message catalogues: the .po files are the source, their .mo compiled here (never committed).
CATALOGUES := $(patsubst %.po,%.mo,$(wildcard translations/*/LC_MESSAGES/messages.po))

.PHONY: run test bench migrate clean messages

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# argon2id for AVX2 (gatehouse/security/argon2_native.py); without it argon2-cffi is used.
$(ARGON2): $(STAMP) gatehouse/security/argon2_native.py
	$(BIN)/python -m gatehouse.security.argon2_native build
	touch $(ARGON2)

translations/%.mo: translations/%.po $(STAMP)
	$(BIN)/pybabel compile --statistics -i $< -o $@

# After changing texts: new message ids into every catalogue (then translate them in the .po files).
messages: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k _l -k N_ --no-location --sort-output -o translations/messages.pot .
	$(BIN)/pybabel update --no-fuzzy-matching -i translations/messages.pot -d translations
	rm translations/messages.pot

migrate: $(STAMP) $(ARGON2) $(CATALOGUES)
	$(BIN)/flask --app wsgi db upgrade

run: migrate
	HOST=127.0.0.1 PORT=$${PORT:-8000} WEB_CONCURRENCY=$${WEB_CONCURRENCY:-2} $(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

test: $(STAMP) $(ARGON2) $(CATALOGUES)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP) $(ARGON2)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache

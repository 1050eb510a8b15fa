# make install PREFIX=...: the header, the shared and static libraries, a
# pkg-config file and a CMake package, for C and C++ users (no Python).
#
#   make install PREFIX=/usr/local
#   make install-test     installs into build/prefix, then builds and runs
#                         tests/install/client.c with pkg-config, and with
#                         CMake's find_package(cbreg) (shared and static);
#                         then tests/install/test_artifacts.py: what the
#                         crate and the sdist hold, and the sdist's build
#                         without Rust

PREFIX ?= /usr/local
CBREG_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
CBREG_SOMAJOR := 0
INSTALL_TARGET_DIR := target/install
INSTALL_TEST_PREFIX := $(CURDIR)/build/prefix

.PHONY: install install-libs install-test

install-libs:
	$(CARGO) rustc --release --lib --crate-type cdylib --target-dir $(INSTALL_TARGET_DIR) \
	  -- -C link-arg=-Wl,-soname,libcbreg.so.$(CBREG_SOMAJOR)
	$(CARGO) rustc --release --lib --crate-type staticlib --target-dir $(INSTALL_TARGET_DIR)

install: install-libs
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/lib/cmake/cbreg
	install -m 644 include/cbreg.h cpp_shim/cbreg.hpp $(DESTDIR)$(PREFIX)/include/
	install -m 755 $(INSTALL_TARGET_DIR)/release/libcbreg.so $(DESTDIR)$(PREFIX)/lib/libcbreg.so.$(CBREG_VERSION)
	ln -sf libcbreg.so.$(CBREG_VERSION) $(DESTDIR)$(PREFIX)/lib/libcbreg.so.$(CBREG_SOMAJOR)
	ln -sf libcbreg.so.$(CBREG_SOMAJOR) $(DESTDIR)$(PREFIX)/lib/libcbreg.so
	install -m 644 $(INSTALL_TARGET_DIR)/release/libcbreg.a $(DESTDIR)$(PREFIX)/lib/
	sed 's|@PREFIX@|$(PREFIX)|; s|@VERSION@|$(CBREG_VERSION)|' cmake/cbreg.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/cbreg.pc
	install -m 644 cmake/cbregConfig.cmake $(DESTDIR)$(PREFIX)/lib/cmake/cbreg/
	sed 's|@VERSION@|$(CBREG_VERSION)|' cmake/cbregConfigVersion.cmake.in > $(DESTDIR)$(PREFIX)/lib/cmake/cbreg/cbregConfigVersion.cmake

install-test: $(VENV_STAMP)
	rm -rf $(INSTALL_TEST_PREFIX) build/install-client
	$(MAKE) install PREFIX=$(INSTALL_TEST_PREFIX)
	@# No Python in the shared library: nothing undefined that starts with Py.
	! nm -D --undefined-only $(INSTALL_TEST_PREFIX)/lib/libcbreg.so | grep -q ' Py'
	mkdir -p build/install-client
	PKG_CONFIG_PATH=$(INSTALL_TEST_PREFIX)/lib/pkgconfig sh -c '$(CC) -std=c99 -Wall -Werror tests/install/client.c $$(pkg-config --cflags --libs cbreg) -Wl,-rpath,$(INSTALL_TEST_PREFIX)/lib -o build/install-client/pkgconfig_client'
	./build/install-client/pkgconfig_client
	$(VENV)/bin/cmake -S tests/install -B build/install-client/cmake -DCMAKE_PREFIX_PATH=$(INSTALL_TEST_PREFIX) >/dev/null
	$(VENV)/bin/cmake --build build/install-client/cmake >/dev/null
	./build/install-client/cmake/client
	./build/install-client/cmake/client_static
	$(VENV_PY) -m pytest -q -p no:cacheprovider tests/install

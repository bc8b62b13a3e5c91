# man.mk: the man page ext-setup-root(8), generated at build time from
# docs/ext-setup-root.8.md by go-md2man (a `tool` of go.mod, so its version
# is pinned and `make deps` downloads it), and the bash completion
# (completion/ext-setup-root.bash, as systemd ships for systemd-confext).
# Both are installed by `make install`. The page sits beside $(BIN).

MANDIR      ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
MAN_PAGE    ?= $(dir $(BIN))ext-setup-root.8

.PHONY: man install-man install-completion

all: man

man: $(MAN_PAGE)

$(MAN_PAGE): docs/ext-setup-root.8.md go.mod
	mkdir -p $(dir $@)
	$(GO) tool go-md2man -in $< -out $@.tmp
	mv -f $@.tmp $@

install-man: man
	install -D -m 0644 $(MAN_PAGE) $(DESTDIR)$(MANDIR)/man8/ext-setup-root.8

install-completion:
	install -D -m 0644 completion/ext-setup-root.bash $(DESTDIR)$(BASHCOMPDIR)/ext-setup-root

INSTALL_TARGETS += install-man install-completion

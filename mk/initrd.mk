# initrd.mk: `make install-initrd DESTDIR=...` installs what a systemd-only
# initrd (mkosi's, or any image builder's without dracut) needs to run our
# stages, as the tree the dracut module builds (docs/initrd.md):
#   - the static binary and both initrd units (the install-units rule);
#   - INITRD_CONFDIR/initrd.target.requires/ links to both units, so both run
#     on every boot and a failure fails the initrd transaction;
#   - INITRD_CONFDIR/NAME -> /dev/null masks of systemd's own
#     systemd-confext-sysroot.service and systemd-sysext-sysroot.service,
#     which would merge the same hierarchies of /sysroot at the same time.
# The links and masks are what `systemctl --root add-requires` and
# `systemctl --root mask` write; make needs no systemctl for them.

INITRD_CONFDIR ?= /etc/systemd/system
INITRD_UNITS   := ext-setup-root-pre.service ext-setup-root-post.service
INITRD_MASKS   := systemd-confext-sysroot.service systemd-sysext-sysroot.service

.PHONY: install-initrd install-initrd-links

install-initrd: build install-units install-initrd-links
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/ext-setup-root

install-initrd-links:
	install -d -m 0755 $(DESTDIR)$(INITRD_CONFDIR)/initrd.target.requires
	for u in $(INITRD_UNITS); do \
		ln -sfn $(SYSTEMDUNITDIR)/$$u $(DESTDIR)$(INITRD_CONFDIR)/initrd.target.requires/$$u || exit 1; \
	done
	for u in $(INITRD_MASKS); do ln -sfn /dev/null $(DESTDIR)$(INITRD_CONFDIR)/$$u || exit 1; done

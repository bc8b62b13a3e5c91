# install.mk: what `make install DESTDIR=... [PREFIX=/usr]` puts into an OS
# image besides the binary ($(DESTDIR)$(PREFIX)/bin/ext-setup-root, the
# lead's rule). The full list is in docs/boot.md ("What gets installed").
# Paths to the binary inside the files are rewritten to $(PREFIX)/bin.

SYSTEMDUNITDIR ?= /usr/lib/systemd/system
SYSTEMDCONFDIR ?= /usr/lib/systemd
DRACUTMODDIR   ?= /usr/lib/dracut/modules.d
DOCDIR         ?= $(PREFIX)/share/doc/ext-setup-root

# install-file SRC DEST MODE: copy with /usr/bin/ext-setup-root rewritten.
define install-file
	install -d -m 0755 $(dir $(2))
	sed 's|/usr/bin/ext-setup-root|$(PREFIX)/bin/ext-setup-root|g' $(1) > $(2).tmp
	chmod $(3) $(2).tmp
	mv -f $(2).tmp $(2)

endef

.PHONY: install-units install-dropins install-dracut install-docs

install-units:
	$(call install-file,units/initrd/ext-setup-root-pre.service,$(DESTDIR)$(SYSTEMDUNITDIR)/ext-setup-root-pre.service,0644)
	$(call install-file,units/initrd/ext-setup-root-post.service,$(DESTDIR)$(SYSTEMDUNITDIR)/ext-setup-root-post.service,0644)

install-dropins:
	$(call install-file,units/host/systemd-confext.service.d/10-ext-setup-root.conf,$(DESTDIR)$(SYSTEMDUNITDIR)/systemd-confext.service.d/10-ext-setup-root.conf,0644)
	$(call install-file,units/host/systemd-sysext.service.d/10-ext-setup-root.conf,$(DESTDIR)$(SYSTEMDUNITDIR)/systemd-sysext.service.d/10-ext-setup-root.conf,0644)
	$(call install-file,units/host/systemd-sysext@.service.d/10-ext-setup-root.conf,$(DESTDIR)$(SYSTEMDUNITDIR)/systemd-sysext@.service.d/10-ext-setup-root.conf,0644)
	$(call install-file,units/host/systemd-sysupdate-notify-sysext@.service.d/10-ext-setup-root.conf,$(DESTDIR)$(SYSTEMDUNITDIR)/systemd-sysupdate-notify-sysext@.service.d/10-ext-setup-root.conf,0644)
	$(call install-file,units/host/confext.conf.d/10-ext-setup-root.conf,$(DESTDIR)$(SYSTEMDCONFDIR)/confext.conf.d/10-ext-setup-root.conf,0644)

install-dracut:
	$(call install-file,dracut/99ext-setup-root/module-setup.sh,$(DESTDIR)$(DRACUTMODDIR)/99ext-setup-root/module-setup.sh,0755)

install-docs:
	$(call install-file,docs/boot.md,$(DESTDIR)$(DOCDIR)/boot.md,0644)
	$(call install-file,docs/varlink.md,$(DESTDIR)$(DOCDIR)/varlink.md,0644)

INSTALL_TARGETS += install-units install-dropins install-dracut install-docs

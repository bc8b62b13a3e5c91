# shellcheck shell=bash
# debian-mirror.sh: sourced by the scripts that fetch from Debian
# (prepare-qemu.sh, prepare-systemd262.sh). debian_mirror prints the
# machine's Debian archive URL, read from its apt configuration, so that no
# script names a mirror host:
#
#   1. $EXT_SETUP_ROOT_DEBIAN_MIRROR, when set;
#   2. the first URIs: of a deb822 stanza of Types: deb in
#      $APT_ETC/sources.list.d/*.sources;
#   3. the first "deb" line of $APT_ETC/sources.list and
#      $APT_ETC/sources.list.d/*.list.
#
# The security archive (a URI or suite ending in -security) and stanzas
# with Enabled: no are skipped: it carries only updates of the stable
# suites, not the testing suites or the kernels the tests fetch.
# APT_ETC is EXT_SETUP_ROOT_APT_ETC or /etc/apt (the tests point it at a
# fake tree). Nothing in the host's apt configuration is changed.

debian_mirror() {
	if [ -n "${EXT_SETUP_ROOT_DEBIAN_MIRROR:-}" ]; then
		printf '%s\n' "${EXT_SETUP_ROOT_DEBIAN_MIRROR%/}"
		return 0
	fi
	local etc=${EXT_SETUP_ROOT_APT_ETC:-/etc/apt} uri
	uri=$(
		shopt -s nullglob
		for f in "$etc"/sources.list.d/*.sources; do
			# Stanzas are separated by blank lines; fields are case-insensitive.
			awk '
				function flush() {
					if (types ~ /(^|[ \t])deb([ \t]|$)/ && enabled != "no" && suites !~ /-security/) {
						n = split(uris, u, /[ \t]+/)
						for (i = 1; i <= n; i++) if (u[i] != "" && u[i] !~ /-security\/?$/) { print u[i]; exit }
					}
					types = ""; uris = ""; suites = ""; enabled = ""
				}
				/^[ \t]*#/ { next }
				/^[ \t]*$/ { flush(); next }
				{
					k = tolower($0); sub(/:.*/, "", k); v = $0; sub(/^[^:]*:[ \t]*/, "", v)
					if (k == "types") types = v
					else if (k == "uris") uris = v
					else if (k == "suites") suites = v
					else if (k == "enabled") enabled = tolower(v)
				}
				END { flush() }
			' "$f"
		done | head -n1
	)
	if [ -z "$uri" ]; then
		uri=$(
			shopt -s nullglob
			cat "$etc/sources.list" "$etc"/sources.list.d/*.list 2>/dev/null |
				awk '$1 == "deb" {
					i = 2
					if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
					if ($i !~ /-security\/?$/ && $(i + 1) !~ /-security/) { print $i; exit }
				}'
		)
	fi
	if [ -z "$uri" ]; then
		echo "debian_mirror: no Debian mirror in $etc (sources.list.d/*.sources URIs: or sources.list deb lines); set EXT_SETUP_ROOT_DEBIAN_MIRROR" >&2
		return 1
	fi
	printf '%s\n' "${uri%/}"
}

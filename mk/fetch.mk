# fetch.mk: download of missing images (issue 15).
# bench-fetch times fetch + verify + extract of a 64 MiB image from a
# loopback HTTPS server against curl -o + sha256sum + bunzip2 of the same
# bytes in the same run, and the peak RSS for a 256 MiB image; the table
# goes to out/bench-fetch.md. Needs curl, sha256sum, bzip2 and bunzip2.

.PHONY: bench-fetch

bench-fetch:
	$(GO) run ./bench/fetch -out out/bench-fetch.md

BENCH_TARGETS += bench-fetch

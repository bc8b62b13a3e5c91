# cross.mk: arm64, Flatcar's second architecture. make test runs `cross`:
# the whole module (and the testhooks build) must build and vet for arm64,
# and the unit tests run for arm64 under qemu-user (scripts/cross-test.sh;
# forky's static qemu-aarch64 from scripts/prepare-qemu-user.sh). Adds
# about 5 minutes to make test on 2 cores.

.PHONY: cross qemu-user

qemu-user: systemd262-root
	EXT_SETUP_ROOT_CACHE=$(CACHE) scripts/prepare-qemu-user.sh

cross: qemu-user
	CGO_ENABLED=0 GOARCH=arm64 $(GO) build ./...
	CGO_ENABLED=0 GOARCH=arm64 $(GO) build -tags testhooks ./cmd/... ./internal/fault/
	CGO_ENABLED=0 GOARCH=arm64 $(GO) vet ./...
	CGO_ENABLED=0 GOARCH=arm64 $(GO) vet -tags testhooks ./cmd/... ./internal/fault/
	EXT_SETUP_ROOT_CACHE=$(CACHE) GO=$(GO) scripts/cross-test.sh arm64

TEST_PREREQS += cross

module github.com/ext-setup-root/ext-setup-root

go 1.26.8

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/coreos/go-systemd/v22 v22.7.0
	github.com/smallstep/pkcs7 v0.2.3
	github.com/u-root/u-root v0.16.0
	golang.org/x/sys v0.49.0
	google.golang.org/protobuf v1.36.12
)

require (
	github.com/cpuguy83/go-md2man/v2 v2.0.7 // indirect
	github.com/russross/blackfriday/v2 v2.1.0 // indirect
)

tool github.com/cpuguy83/go-md2man/v2

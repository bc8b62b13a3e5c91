package main

import "fmt"

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func init() {
	register(command{
		name:    "version",
		summary: "print the version",
		run: func(env *Env, args []string) error {
			if len(args) != 0 {
				return usagef("version takes no arguments")
			}
			_, err := fmt.Fprintln(env.Stdout, version)
			return err
		},
	})
}

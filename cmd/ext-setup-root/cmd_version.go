package main

import (
	"flag"
	"fmt"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func init() {
	register(command{
		name:    "version",
		summary: "print the version",
		run: func(env *Env, args []string) error {
			fs := flag.NewFlagSet("version", flag.ContinueOnError)
			fs.SetOutput(env.Stderr)
			if err := fs.Parse(args); err != nil {
				if err == flag.ErrHelp {
					return err
				}
				return usagef("version: %v", err)
			}
			if fs.NArg() != 0 {
				return usagef("version takes no arguments")
			}
			_, err := fmt.Fprintln(env.Stdout, version)
			return err
		},
	})
}

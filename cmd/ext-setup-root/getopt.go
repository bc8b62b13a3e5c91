package main

import (
	"fmt"
	"strings"
)

// option is one command line option for parseOptions.
type option struct {
	long  string // name without "--"
	short byte   // single-letter form (-h), 0 for none
	arg   bool   // takes a value: --name=VALUE or --name VALUE
	set   func(value string) error
	help  string // one line for the usage text; "" hides the option
	meta  string // name of the value in the usage text (PATH, BOOL)
}

// parseOptions reads args as systemd's tools do (getopt_long with argument
// permutation): options may come before, between or after the positional
// arguments, "--" ends the options (everything after it is positional), an
// option with a value takes it after '=' or as the next argument, one
// without a value refuses "=VALUE", and "-" alone is positional. It
// returns the positional arguments in order; an unknown option or a
// missing value is a usage error.
func parseOptions(args []string, opts []option) ([]string, error) {
	var pos []string
	find := func(long string, short byte) *option {
		for i := range opts {
			if (long != "" && opts[i].long == long) || (short != 0 && opts[i].short == short) {
				return &opts[i]
			}
		}
		return nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return append(pos, args[i+1:]...), nil
		case strings.HasPrefix(a, "--"):
			name, val, hasVal := strings.Cut(a[2:], "=")
			o := find(name, 0)
			if o == nil {
				return nil, usagef("unrecognized option '--%s'", name)
			}
			switch {
			case !o.arg && hasVal:
				return nil, usagef("option '--%s' doesn't allow an argument", name)
			case o.arg && !hasVal:
				if i+1 >= len(args) {
					return nil, usagef("option '--%s' requires an argument", name)
				}
				i++
				val = args[i]
			}
			if err := o.set(val); err != nil {
				return nil, usagef("--%s: %v", name, err)
			}
		case len(a) > 1 && a[0] == '-':
			// Short options, possibly grouped (-hx); a value-taking one
			// takes the rest of the word or the next argument.
			for j := 1; j < len(a); j++ {
				o := find("", a[j])
				if o == nil {
					return nil, usagef("invalid option -- '%c'", a[j])
				}
				if !o.arg {
					if err := o.set(""); err != nil {
						return nil, usagef("-%c: %v", a[j], err)
					}
					continue
				}
				val := a[j+1:]
				if val == "" {
					if i+1 >= len(args) {
						return nil, usagef("option requires an argument -- '%c'", a[j])
					}
					i++
					val = args[i]
				}
				if err := o.set(val); err != nil {
					return nil, usagef("-%c: %v", a[j], err)
				}
				break
			}
		default:
			pos = append(pos, a)
		}
	}
	return pos, nil
}

// optionsUsage formats the options' help lines like systemd's --help.
func optionsUsage(opts []option) string {
	var b strings.Builder
	for _, o := range opts {
		if o.help == "" {
			continue
		}
		left := "   "
		if o.short != 0 {
			left = fmt.Sprintf("-%c ", o.short)
		}
		left += "--" + o.long
		if o.arg {
			left += "=" + o.meta
		}
		fmt.Fprintf(&b, "  %-27s %s\n", left, o.help)
	}
	return b.String()
}

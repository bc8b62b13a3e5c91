package main

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseOptions(t *testing.T) {
	var force, help bool
	var root, json string
	var ess []string
	specs := func() []option {
		force, help, root, json, ess = false, false, "", "", nil
		return []option{
			{long: "force", set: func(string) error { force = true; return nil }},
			{long: "help", short: 'h', set: func(string) error { help = true; return nil }},
			{long: "root", arg: true, set: func(v string) error { root = v; return nil }},
			{long: "json", arg: true, set: func(v string) error {
				if v == "bad" {
					return errors.New("bad value")
				}
				json = v
				return nil
			}},
			{long: "essential", arg: true, set: func(v string) error { ess = append(ess, v); return nil }},
		}
	}
	for _, tc := range []struct {
		args  []string
		pos   []string
		check func() bool
	}{
		{[]string{"--root=/r", "status"}, []string{"status"}, func() bool { return root == "/r" }},
		{[]string{"status", "--root=/r", "--json=short"}, []string{"status"}, func() bool { return root == "/r" && json == "short" }},
		{[]string{"--root", "/r", "merge", "--json", "pretty"}, []string{"merge"}, func() bool { return root == "/r" && json == "pretty" }},
		{[]string{"merge", "--", "--force"}, []string{"merge", "--force"}, func() bool { return !force }},
		{[]string{"--", "-h"}, []string{"-h"}, func() bool { return !help }},
		{[]string{"-h", "list"}, []string{"list"}, func() bool { return help }},
		{[]string{"list", "-h"}, []string{"list"}, func() bool { return help }},
		{[]string{"-", "--force"}, []string{"-"}, func() bool { return force }},
		{[]string{"--root="}, nil, func() bool { return root == "" }},
		{[]string{"--essential=a", "merge", "--essential", "b"}, []string{"merge"}, func() bool { return reflect.DeepEqual(ess, []string{"a", "b"}) }},
	} {
		pos, err := parseOptions(tc.args, specs())
		if err != nil || !reflect.DeepEqual(pos, tc.pos) || !tc.check() {
			t.Errorf("%q: positional %q, err %v, check %v", tc.args, pos, err, tc.check())
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "unrecognized option '--bogus'"},
		{[]string{"-x"}, "invalid option -- 'x'"},
		{[]string{"--force=yes"}, "doesn't allow an argument"},
		{[]string{"status", "--root"}, "requires an argument"},
		{[]string{"--json=bad"}, "--json: bad value"},
	} {
		_, err := parseOptions(tc.args, specs())
		var ue usageError
		if err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want a usage error containing %q", tc.args, err, tc.want)
		}
	}
}

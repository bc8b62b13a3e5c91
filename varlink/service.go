package varlink

import (
	"context"
	"encoding/json"
	"strings"
)

// Info is what org.varlink.service.GetInfo reports.
type Info struct {
	Vendor, Product, Version, URL string
	// Interfaces maps each served interface name to its IDL text
	// (GetInterfaceDescription); org.varlink.service is added.
	Interfaces map[string]string
}

const serviceInterface = "org.varlink.service"

func isServiceMethod(m string) bool { return strings.HasPrefix(m, serviceInterface+".") }

// serviceMethod returns the org.varlink.service method named m.
func (s *Server) serviceMethod(m string) Method {
	switch strings.TrimPrefix(m, serviceInterface+".") {
	case "GetInfo":
		return s.getInfo
	case "GetInterfaceDescription":
		return s.getInterfaceDescription
	}
	return func(context.Context, *Request) error { return errMethodNotFound(m) }
}

func (s *Server) interfaces() []string {
	names := []string{serviceInterface}
	for n := range s.Info.Interfaces {
		names = append(names, n)
	}
	sortStrings(names)
	return names
}

func (s *Server) getInfo(_ context.Context, r *Request) error {
	if _, err := decodeParams(r.Call.Parameters, nil); err != nil {
		return err
	}
	return r.Reply(struct {
		Vendor     string   `json:"vendor"`
		Product    string   `json:"product"`
		Version    string   `json:"version"`
		URL        string   `json:"url"`
		Interfaces []string `json:"interfaces"`
	}{s.Info.Vendor, s.Info.Product, s.Info.Version, s.Info.URL, s.interfaces()}, false)
}

func (s *Server) getInterfaceDescription(_ context.Context, r *Request) error {
	var name string
	p, err := decodeParams(r.Call.Parameters, map[string]kind{"interface": kindString})
	if err != nil {
		return err
	}
	if v, ok := p["interface"]; ok {
		if err := json.Unmarshal(v, &name); err != nil {
			return errInvalidParameter("interface")
		}
	}
	desc, ok := s.Info.Interfaces[name]
	if name == serviceInterface {
		desc, ok = serviceIDL, true
	}
	if !ok {
		return &Error{Name: "org.varlink.service.InterfaceNotFound", Parameters: map[string]string{"interface": name}}
	}
	return r.Reply(map[string]string{"description": desc}, false)
}

// sortStrings is an insertion sort: a handful of interface names.
func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

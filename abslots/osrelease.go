package abslots

// unquote strips one level of shell quotes from an oem-release value, which
// Flatcar writes unquoted but users may quote.
func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '\'' || v[0] == '"') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}

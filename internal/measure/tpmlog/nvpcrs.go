package tpmlog

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// maxNvPCRsOutput bounds what NvPCRValue reads of systemd-analyze's
// output (a handful of short rows).
const maxNvPCRsOutput = 64 << 10

// nvpcrRow is one row of `systemd-analyze nvpcrs --json=short`.
type nvpcrRow struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// NvPCRValue returns the value of the NvPCR called name from the output of
// `systemd-analyze nvpcrs NAME --json=short` (a JSON array of rows, or one
// row), as lowercase hex. name is also the source's name in errors.
func NvPCRValue(r io.Reader, name string) (string, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxNvPCRsOutput+1))
	if err != nil {
		return "", fmt.Errorf("systemd-analyze nvpcrs: %w", err)
	}
	if len(data) > maxNvPCRsOutput {
		return "", fmt.Errorf("systemd-analyze nvpcrs: output longer than %d bytes", maxNvPCRsOutput)
	}
	var rows []nvpcrRow
	if err := json.Unmarshal(data, &rows); err != nil {
		var one nvpcrRow
		if err1 := json.Unmarshal(data, &one); err1 != nil {
			return "", fmt.Errorf("systemd-analyze nvpcrs: not a JSON row or array of rows: %w", err)
		}
		rows = []nvpcrRow{one}
	}
	for _, row := range rows {
		if row.Name != name {
			continue
		}
		v := strings.ToLower(row.Value)
		if b, err := hex.DecodeString(v); err != nil || len(b) != 32 {
			return "", fmt.Errorf("systemd-analyze nvpcrs: NvPCR %s: value %q is not 64 hex digits (not initialised?)", name, row.Value)
		}
		return v, nil
	}
	return "", fmt.Errorf("systemd-analyze nvpcrs: no NvPCR %s", name)
}

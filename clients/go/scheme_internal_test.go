package sessionvalidator

import (
	"encoding/json"
	"os"
	"testing"
)

func TestWithScheme(t *testing.T) {
	for target, want := range map[string]string{
		"localhost:50051":                   "dns:///localhost:50051",
		"sessionvalidator.internal:50051":   "dns:///sessionvalidator.internal:50051",
		"127.0.0.1:50051":                   "dns:///127.0.0.1:50051",
		"[::1]:50051":                       "dns:///[::1]:50051",
		"dns:///sv.internal:50051":          "dns:///sv.internal:50051",
		"dns://8.8.8.8/sv.internal:50051":   "dns://8.8.8.8/sv.internal:50051",
		"passthrough:///10.0.0.1:50051":     "passthrough:///10.0.0.1:50051",
		"unix:///run/sessionvalidator.sock": "unix:///run/sessionvalidator.sock",
		"unix:run/sessionvalidator.sock":    "unix:run/sessionvalidator.sock",
		"unix-abstract:sessionvalidator":    "unix-abstract:sessionvalidator",
	} {
		if got := withScheme(target); got != want {
			t.Errorf("withScheme(%q) = %q, want %q", target, got, want)
		}
	}
}

func TestAuthorityFor(t *testing.T) {
	raw, err := os.ReadFile("../../tests/vectors/client_conformance.json")
	if err != nil {
		t.Fatal(err)
	}
	var vectors struct {
		Authority struct {
			Cases []struct {
				Target    string  `json:"target"`
				Authority *string `json:"authority"`
			} `json:"cases"`
		} `json:"authority"`
	}
	if err := json.Unmarshal(raw, &vectors); err != nil {
		t.Fatal(err)
	}
	if len(vectors.Authority.Cases) == 0 {
		t.Fatal("no authority cases")
	}
	for _, c := range vectors.Authority.Cases {
		want := ""
		if c.Authority != nil {
			want = *c.Authority
		}
		if got := authorityFor(c.Target); got != want {
			t.Errorf("authorityFor(%q) = %q, want %q", c.Target, got, want)
		}
	}
}

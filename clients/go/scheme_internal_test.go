package sessionvalidator

import "testing"

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

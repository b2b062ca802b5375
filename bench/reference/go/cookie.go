package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"unicode/utf8"
)

// latin1 turns header bytes into the string Node would hold: one byte, one
// character (U+0000..U+00FF), re-encoded as UTF-8 for Go.
func latin1(b []byte) string {
	ascii := true
	for _, c := range b {
		if c >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return string(b)
	}
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return string(r)
}

func isSpaceTab(c byte) bool { return c == ' ' || c == '\t' }

// findCookie returns cookie.parse(header)[name] as npm cookie 0.7.2 computes
// it: pairs split on ';', keys and values trimmed of space/TAB, the first
// occurrence wins, a matching pair of quotes is stripped and the value is
// percent-decoded (raw value kept whole when decoding fails).
//
// The scan is byte-wise on UTF-8, which is safe because every delimiter is ASCII.
func findCookie(header, name string) (string, bool) {
	n := len(header)
	if n < 2 {
		return "", false
	}
	index := 0
	for index < n {
		eq := strings.IndexByte(header[index:], '=')
		if eq < 0 {
			return "", false
		}
		eq += index
		end := strings.IndexByte(header[index:], ';')
		if end < 0 {
			end = n
		} else {
			end += index
			if eq > end {
				// segment without '=': restart after the ';' before the '='
				index = strings.LastIndexByte(header[:eq], ';') + 1
				continue
			}
		}
		ks, ke := index, eq
		for ks < ke && isSpaceTab(header[ks]) {
			ks++
		}
		for ke > ks && isSpaceTab(header[ke-1]) {
			ke--
		}
		if header[ks:ke] == name {
			return cleanValue(header[eq+1 : end]), true
		}
		index = end + 1
	}
	return "", false
}

// cleanValue trims space/TAB, strips a surrounding pair of quotes and decodes.
func cleanValue(v string) string {
	s, e := 0, len(v)
	for s < e && isSpaceTab(v[s]) {
		s++
	}
	for e > s && isSpaceTab(v[e-1]) {
		e--
	}
	if e > s && v[s] == '"' && v[e-1] == '"' {
		s++
		e--
		if s > e { // a lone '"' becomes ""
			s = e
		}
	}
	return tryDecode(v[s:e])
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// tryDecode is cookie's tryDecode(decodeURIComponent): only when '%' is
// present, and the raw string is returned whole on any error. Each run of
// %XX escapes must form valid UTF-8 (no overlong forms, no surrogates),
// which is exactly what utf8.Valid checks.
func tryDecode(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	var out strings.Builder
	out.Grow(len(s))
	var run []byte
	flush := func() bool {
		if len(run) == 0 {
			return true
		}
		if !utf8.Valid(run) {
			return false
		}
		out.Write(run)
		run = run[:0]
		return true
	}
	for i := 0; i < len(s); {
		if s[i] == '%' {
			if i+2 >= len(s) {
				return s
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return s
			}
			run = append(run, hi<<4|lo)
			i += 3
			continue
		}
		if !flush() {
			return s
		}
		out.WriteByte(s[i])
		i++
	}
	if !flush() {
		return s
	}
	return out.String()
}

// signer verifies cookie-signature values against every secret, in order.
type signer struct {
	keys [][]byte
}

// unsign splits at the last '.', and returns the value and the index of the
// first secret whose HMAC-SHA256 (standard base64, no padding) matches
// exactly (constant-time compare).
func (s *signer) unsign(signed string) (string, int, bool) {
	dot := strings.LastIndexByte(signed, '.')
	if dot < 0 {
		return "", -1, false
	}
	value, given := signed[:dot], []byte(signed[dot+1:])
	var sum [sha256.Size]byte
	var enc [43]byte
	for i, key := range s.keys {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(value))
		base64.RawStdEncoding.Encode(enc[:], m.Sum(sum[:0]))
		if hmac.Equal(enc[:], given) {
			return value, i, true
		}
	}
	return "", -1, false
}

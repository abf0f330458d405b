package offline

import (
	"errors"
	"strings"
)

// Base45 (RFC 9285) is written here by hand: no maintained Go implementation is available to this project, and
// the encoding is a few lines. FuzzBase45 checks it round-trips and rejects every non-canonical input.

const b45Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"

var b45Value = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(b45Alphabet); i++ {
		t[b45Alphabet[i]] = int8(i)
	}
	return t
}()

// ErrBase45 is returned for a string that is not valid Base45 (RFC 9285 §4.2).
var ErrBase45 = errors.New("offline: invalid Base45")

// EncodeBase45 encodes b as RFC 9285 §4: each two bytes [a, b] as n = a*256 + b written c + d*45 + e*45² (three
// characters c d e), a final single byte as two characters.
func EncodeBase45(b []byte) string {
	var s strings.Builder
	s.Grow((len(b)/2)*3 + 2)
	for i := 0; i+1 < len(b); i += 2 {
		n := int(b[i])<<8 | int(b[i+1])
		s.WriteByte(b45Alphabet[n%45])
		s.WriteByte(b45Alphabet[n/45%45])
		s.WriteByte(b45Alphabet[n/2025])
	}
	if len(b)%2 == 1 {
		n := int(b[len(b)-1])
		s.WriteByte(b45Alphabet[n%45])
		s.WriteByte(b45Alphabet[n/45])
	}
	return s.String()
}

// DecodeBase45 decodes s (RFC 9285 §4.2). It refuses characters outside the alphabet, a length that leaves one
// character over, and triples or pairs whose value exceeds 65535 or 255, so each byte string has one encoding.
func DecodeBase45(s string) ([]byte, error) {
	if len(s)%3 == 1 {
		return nil, ErrBase45
	}
	out := make([]byte, 0, len(s)/3*2+1)
	for i := 0; i < len(s); i += 3 {
		var v [3]int
		n := min(3, len(s)-i)
		for j := 0; j < n; j++ {
			x := b45Value[s[i+j]]
			if x < 0 {
				return nil, ErrBase45
			}
			v[j] = int(x)
		}
		if n == 3 {
			w := v[0] + v[1]*45 + v[2]*2025
			if w > 0xffff {
				return nil, ErrBase45
			}
			out = append(out, byte(w>>8), byte(w))
		} else {
			w := v[0] + v[1]*45
			if w > 0xff {
				return nil, ErrBase45
			}
			out = append(out, byte(w))
		}
	}
	return out, nil
}

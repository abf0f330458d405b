package hsm

import (
	"fmt"
	"os"
	"strings"
)

// URI is a parsed RFC 7512 "pkcs11:" URI.
//
// The path attributes (RFC 7512 section 2.3) identify a token and an object on it; the query
// attributes say how to reach it: which module to load and where the PIN comes from. For leniency the
// parser also takes the query attributes in the path, separated by ";", as older Mohr configurations
// wrote them; String always writes the canonical form.
type URI struct {
	// Token is the "token" attribute: the token label (CK_TOKEN_INFO.label). Mohr finds the slot by
	// this label and never by slot number.
	Token string
	// Manufacturer, Serial and Model narrow the token further when set ("manufacturer", "serial",
	// "model": CK_TOKEN_INFO fields).
	Manufacturer, Serial, Model string
	// Object is the "object" attribute: the object's CKA_LABEL.
	Object string
	// Type is the "type" attribute: "private", "public", "cert", "secret-key" or "data".
	Type string
	// ID is the "id" attribute: the object's CKA_ID, percent-decoded to bytes.
	ID []byte
	// ModulePath is the "module-path" query attribute: the file name of the PKCS#11 library.
	ModulePath string
	// ModuleName is the "module-name" query attribute. Mohr does not search for modules by name; it is
	// kept for String.
	ModuleName string
	// PINSource is the "pin-source" query attribute: "file:/path", "/path" or "env:NAME". It is the
	// preferred way to give a PIN because the URI itself then carries no secret.
	PINSource string

	// pinValue is the "pin-value" query attribute. It is never printed: String leaves it out and no
	// error quotes it.
	pinValue string
	// extra holds the attributes Mohr does not interpret (library-*, slot-*, vendor "x-" attributes),
	// in order, so that String keeps them.
	extra []uriAttr
}

type uriAttr struct {
	name, value string
	query       bool
}

// Object types of the RFC 7512 section 2.3 "type" attribute.
var uriTypes = map[string]bool{"private": true, "public": true, "cert": true, "secret-key": true, "data": true}

// ParseURI parses an RFC 7512 "pkcs11:" URI. Attribute names are case-insensitive; values are
// percent-decoded (RFC 3986 section 2.1). An attribute may appear only once. Errors match ErrBadURI
// and never quote attribute values, which may include a PIN.
func ParseURI(s string) (*URI, error) {
	const scheme = "pkcs11:"
	if len(s) < len(scheme) || !strings.EqualFold(s[:len(scheme)], scheme) {
		return nil, fmt.Errorf("%w: not a pkcs11: URI", ErrBadURI)
	}
	rest := s[len(scheme):]
	path, query, hasQuery := strings.Cut(rest, "?")
	u := &URI{}
	seen := map[string]bool{}
	if err := u.parseAttrs(path, ";", false, seen); err != nil {
		return nil, err
	}
	if hasQuery {
		if err := u.parseAttrs(query, "&", true, seen); err != nil {
			return nil, err
		}
	}
	return u, nil
}

func (u *URI) parseAttrs(s, sep string, query bool, seen map[string]bool) error {
	if s == "" {
		return nil
	}
	for _, a := range strings.Split(s, sep) {
		if a == "" {
			continue
		}
		name, enc, ok := strings.Cut(a, "=")
		if !ok {
			return fmt.Errorf("%w: attribute without '='", ErrBadURI)
		}
		name = strings.ToLower(name)
		if !validAttrName(name) {
			return fmt.Errorf("%w: bad attribute name", ErrBadURI)
		}
		if seen[name] {
			return fmt.Errorf("%w: attribute %q repeated", ErrBadURI, name)
		}
		seen[name] = true
		v, err := pctDecode(enc)
		if err != nil {
			return fmt.Errorf("%w: attribute %q: %v", ErrBadURI, name, err)
		}
		switch name {
		case "token":
			u.Token = v
		case "manufacturer":
			u.Manufacturer = v
		case "serial":
			u.Serial = v
		case "model":
			u.Model = v
		case "object":
			u.Object = v
		case "type":
			if !uriTypes[v] {
				return fmt.Errorf("%w: unknown object type", ErrBadURI)
			}
			u.Type = v
		case "id":
			if v != "" {
				u.ID = []byte(v)
			}
		case "module-path":
			u.ModulePath = v
		case "module-name":
			u.ModuleName = v
		case "pin-source":
			u.PINSource = v
		case "pin-value":
			u.pinValue = v
		default:
			if v == "" {
				continue // an empty attribute says nothing; dropping it keeps String canonical
			}
			u.extra = append(u.extra, uriAttr{name: name, value: v, query: query})
		}
	}
	return nil
}

// validAttrName accepts the attribute names of RFC 7512 section 2.3 and vendor-specific ones:
// letters, digits, '-' and '_'.
func validAttrName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func pctDecode(s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("truncated percent-encoding")
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", fmt.Errorf("bad percent-encoding")
		}
		b.WriteByte(hi<<4 | lo)
		i += 2
	}
	return b.String(), nil
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

// pctEncode writes v percent-encoded: RFC 7512 section 2.3 lets unreserved characters and
// pk11-path-res-avail (":[]@!$'()*+,=" and, in the path, "&") or pk11-query-res-avail
// (the same plus "/?|", without "&") through; everything else is encoded.
func pctEncode(b *strings.Builder, v string, query bool) {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(v); i++ {
		c := v[i]
		keep := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("-._~:[]@!$'()*+,=", c) >= 0 ||
			!query && c == '&' || query && strings.IndexByte("/?|", c) >= 0
		if keep {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
}

// String returns the URI in canonical RFC 7512 form: path attributes in a fixed order, then the query.
// It never includes pin-value, so a URI may be logged; pin-source names where the PIN is, not the PIN.
func (u *URI) String() string {
	var b strings.Builder
	b.WriteString("pkcs11:")
	n := 0
	add := func(name, v string, query bool) {
		if v == "" {
			return
		}
		switch {
		case query && n == 0:
			b.WriteByte('?')
		case query:
			b.WriteByte('&')
		case n > 0:
			b.WriteByte(';')
		}
		n++
		b.WriteString(name)
		b.WriteByte('=')
		pctEncode(&b, v, query)
	}
	add("token", u.Token, false)
	add("manufacturer", u.Manufacturer, false)
	add("serial", u.Serial, false)
	add("model", u.Model, false)
	add("object", u.Object, false)
	add("type", u.Type, false)
	if len(u.ID) > 0 {
		if n > 0 {
			b.WriteByte(';')
		}
		n++
		b.WriteString("id=")
		const hex = "0123456789ABCDEF"
		for _, c := range u.ID {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	for _, a := range u.extra {
		if !a.query {
			add(a.name, a.value, false)
		}
	}
	n = 0 // the query starts with '?'
	add("module-name", u.ModuleName, true)
	add("module-path", u.ModulePath, true)
	add("pin-source", u.PINSource, true)
	for _, a := range u.extra {
		if a.query {
			add(a.name, a.value, true)
		}
	}
	return b.String()
}

// HasPIN reports whether the URI says where to find a PIN (pin-source) or carries one (pin-value).
func (u *URI) HasPIN() bool { return u.PINSource != "" || u.pinValue != "" }

// readPIN returns the user PIN: from pin-value if the URI carries one, else from the file or the
// environment variable pin-source names (RFC 7512 section 2.3 leaves the form of pin-source to the
// application; Mohr takes "file:" URIs, absolute paths and "env:NAME"). One trailing newline is
// removed from a file. Errors name the source, never the PIN.
func (u *URI) readPIN() ([]byte, error) {
	if u.pinValue != "" {
		return []byte(u.pinValue), nil
	}
	src := u.PINSource
	if src == "" {
		return nil, fmt.Errorf("%w: the URI has no pin-source", ErrPINSource)
	}
	if name, ok := strings.CutPrefix(src, "env:"); ok {
		v, ok := os.LookupEnv(name)
		if !ok || v == "" {
			return nil, fmt.Errorf("%w: environment variable %q is not set", ErrPINSource, name)
		}
		return []byte(v), nil
	}
	path := src
	if p, ok := strings.CutPrefix(src, "file:"); ok {
		path = p
		if q, ok := strings.CutPrefix(p, "//"); ok {
			// file://host/path (RFC 8089): only the local host, written empty or "localhost".
			host, rest, _ := strings.Cut(q, "/")
			if host != "" && host != "localhost" {
				return nil, fmt.Errorf("%w: pin-source names a remote file", ErrPINSource)
			}
			path = "/" + rest
		}
	}
	if path == "" {
		return nil, fmt.Errorf("%w: empty pin-source", ErrPINSource)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPINSource, err)
	}
	b = []byte(strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"))
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: PIN file %s is empty", ErrPINSource, path)
	}
	return b, nil
}

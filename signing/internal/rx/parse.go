package rx

import (
	"bytes"
	"encoding/json"
	"errors"
)

// alias reports whether key is not one of names but could be read as one: with another letter case (as
// encoding/json matches) or with escapes. Such keys are rejected in objects whose members the verifier reads.
func alias(key []byte, names ...string) bool {
	if bytes.IndexByte(key, '\\') >= 0 {
		return true
	}
	for _, n := range names {
		if bytes.EqualFold(key, []byte(n)) {
			return true
		}
	}
	return false
}

// ErrSyntax is returned by Parse for input that is not a single valid JSON value (RFC 8259), or that repeats a
// member the verifier reads.
var ErrSyntax = errors.New("rx: malformed JSON")

const maxDepth = 64

// Parse reads the members of a FHIR Bundle the verifier needs, like json.Unmarshal into a Bundle, but without
// reflection: it validates the whole document's JSON syntax and extracts only resourceType, entry[].fullUrl,
// id, entry[].resource.resourceType and entry[].resource.identifier[].{system,value}. Unlike encoding/json it
// rejects a document that repeats one of those members, so no two JSON readers can see different prescribers
// or patients in the same signed bytes. Verification calls it for every prescription, so it is on the hot path.
func Parse(b []byte) (Bundle, error) {
	p := parser{b: b}
	var out Bundle
	p.skipWS()
	if !p.object(func(key []byte) bool {
		switch string(key) {
		case "resourceType":
			return p.once(&out.ResourceType, 1) && p.str(&out.ResourceType)
		case "type":
			return p.once(&out.Type, 2) && p.str(&out.Type)
		case "id":
			return p.once(nil, 4) && p.str(&out.ID)
		case "entry":
			if !p.once(nil, 3) {
				return false
			}
			return p.array(func() bool {
				var e Entry
				ok := p.entry(&e)
				out.Entry = append(out.Entry, e)
				return ok
			})
		}
		return !alias(key, "resourceType", "type", "entry", "id") && p.value()
	}) {
		return Bundle{}, ErrSyntax
	}
	p.skipWS()
	if p.i != len(p.b) {
		return Bundle{}, ErrSyntax
	}
	return out, nil
}

type parser struct {
	b     []byte
	i     int
	depth int
	seen  uint64 // members seen in the current object, by bit (reset per object by the callers below)
}

// once records that member bit was read in the current object and fails if it was already.
func (p *parser) once(_ *string, bit uint) bool {
	if p.seen&(1<<bit) != 0 {
		return false
	}
	p.seen |= 1 << bit
	return true
}

func (p *parser) entry(e *Entry) bool {
	saved := p.seen
	p.seen = 0
	ok := p.object(func(key []byte) bool {
		switch string(key) {
		case "fullUrl":
			return p.once(nil, 1) && p.str(&e.FullURL)
		case "resource":
			return p.once(nil, 2) && p.resource(&e.Resource)
		}
		return !alias(key, "fullUrl", "resource") && p.value()
	})
	p.seen = saved
	return ok
}

func (p *parser) resource(r *Resource) bool {
	saved := p.seen
	p.seen = 0
	ok := p.object(func(key []byte) bool {
		switch string(key) {
		case "resourceType":
			return p.once(nil, 1) && p.str(&r.ResourceType)
		case "id":
			return p.once(nil, 2) && p.str(&r.ID)
		case "identifier":
			if !p.once(nil, 3) {
				return false
			}
			return p.array(func() bool {
				var id Identifier
				saved := p.seen
				p.seen = 0
				ok := p.object(func(key []byte) bool {
					switch string(key) {
					case "system":
						return p.once(nil, 1) && p.str(&id.System)
					case "value":
						return p.once(nil, 2) && p.str(&id.Value)
					}
					return !alias(key, "system", "value") && p.value()
				})
				p.seen = saved
				r.Identifier = append(r.Identifier, id)
				return ok
			})
		}
		return !alias(key, "resourceType", "id", "identifier") && p.value()
	})
	p.seen = saved
	return ok
}

func (p *parser) skipWS() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// object parses an object, calling member for each key with p positioned at its value.
func (p *parser) object(member func(key []byte) bool) bool {
	if p.i >= len(p.b) || p.b[p.i] != '{' {
		return false
	}
	p.depth++
	if p.depth > maxDepth {
		return false
	}
	p.i++
	p.skipWS()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		p.depth--
		return true
	}
	for {
		p.skipWS()
		start := p.i
		if !p.skipString() {
			return false
		}
		key := p.b[start+1 : p.i-1]
		p.skipWS()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return false
		}
		p.i++
		p.skipWS()
		if !member(key) {
			return false
		}
		p.skipWS()
		if p.i >= len(p.b) {
			return false
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			p.depth--
			return true
		default:
			return false
		}
	}
}

// array parses an array, calling elem with p positioned at each element.
func (p *parser) array(elem func() bool) bool {
	p.skipWS()
	if p.i >= len(p.b) || p.b[p.i] != '[' {
		return false
	}
	p.depth++
	if p.depth > maxDepth {
		return false
	}
	p.i++
	p.skipWS()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		p.depth--
		return true
	}
	for {
		p.skipWS()
		if !elem() {
			return false
		}
		p.skipWS()
		if p.i >= len(p.b) {
			return false
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			p.depth--
			return true
		default:
			return false
		}
	}
}

// str reads a JSON string into *dst. The common values are interned so that reading them does not allocate;
// strings with escapes are decoded by encoding/json (rare).
func (p *parser) str(dst *string) bool {
	start := p.i
	if !p.skipString() {
		return false
	}
	raw := p.b[start+1 : p.i-1]
	for _, c := range raw {
		if c == '\\' {
			return json.Unmarshal(p.b[start:p.i], dst) == nil
		}
	}
	switch string(raw) {
	case "Patient":
		*dst = "Patient"
	case "Practitioner":
		*dst = "Practitioner"
	case "MedicationRequest":
		*dst = "MedicationRequest"
	case "Bundle":
		*dst = "Bundle"
	case SystemNationalCode:
		*dst = SystemNationalCode
	case SystemCouncilNumber:
		*dst = SystemCouncilNumber
	default:
		*dst = string(raw)
	}
	return true
}

// skipString moves past a JSON string, checking escapes and rejecting control characters.
func (p *parser) skipString() bool {
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return false
	}
	p.i++
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return true
		case c == '\\':
			if p.i+1 >= len(p.b) {
				return false
			}
			switch p.b[p.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p.i += 2
			case 'u':
				if p.i+6 > len(p.b) {
					return false
				}
				for _, h := range p.b[p.i+2 : p.i+6] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return false
					}
				}
				p.i += 6
			default:
				return false
			}
		case c < 0x20:
			return false
		default:
			p.i++
		}
	}
	return false
}

// value skips any JSON value.
func (p *parser) value() bool {
	if p.i >= len(p.b) {
		return false
	}
	switch c := p.b[p.i]; {
	case c == '{':
		saved := p.seen
		ok := p.object(func([]byte) bool { return p.value() })
		p.seen = saved
		return ok
	case c == '[':
		return p.array(p.value)
	case c == '"':
		return p.skipString()
	case c == 't':
		return p.lit("true")
	case c == 'f':
		return p.lit("false")
	case c == 'n':
		return p.lit("null")
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	}
	return false
}

func (p *parser) lit(s string) bool {
	if len(p.b)-p.i < len(s) || string(p.b[p.i:p.i+len(s)]) != s {
		return false
	}
	p.i += len(s)
	return true
}

// number checks RFC 8259 §6: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
func (p *parser) number() bool {
	digits := func() int {
		n := 0
		for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.b[p.i] == '-' {
		p.i++
	}
	if p.i >= len(p.b) {
		return false
	}
	if p.b[p.i] == '0' {
		p.i++
	} else if digits() == 0 {
		return false
	}
	if p.i < len(p.b) && p.b[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return false
		}
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		p.i++
		if p.i < len(p.b) && (p.b[p.i] == '+' || p.b[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return false
		}
	}
	return true
}

// Package tlv parses and builds the BER-TLV data objects of ISO/IEC 7816-4 §5.2.2 (tags of one to three
// bytes, definite lengths of one to four bytes) as smart cards return them. Card responses are untrusted
// input: every parser here bounds its work by the input length and returns an error, never panics.
package tlv

import (
	"errors"
	"fmt"
)

// ErrMalformed reports bytes that are not well-formed BER-TLV.
var ErrMalformed = errors.New("malformed BER-TLV")

// Object is one data object: its tag (the tag bytes read as a big-endian number, e.g. 0x5FC10A) and value.
type Object struct {
	Tag   uint32
	Value []byte
}

// Constructed reports whether the tag's first byte has b6 set (ISO/IEC 7816-4 §5.2.2.1).
func (o Object) Constructed() bool {
	first := o.Tag
	for first > 0xFF {
		first >>= 8
	}
	return first&0x20 != 0
}

// ReadOne reads one data object from the front of b and returns it with the rest of b.
// Padding bytes '00' and 'FF' before a tag are skipped, as ISO/IEC 7816-4 §5.2.2 allows.
func ReadOne(b []byte) (Object, []byte, error) {
	for len(b) > 0 && (b[0] == 0x00 || b[0] == 0xFF) {
		b = b[1:]
	}
	if len(b) == 0 {
		return Object{}, nil, fmt.Errorf("%w: empty", ErrMalformed)
	}
	tag := uint32(b[0])
	i := 1
	if b[0]&0x1F == 0x1F { // subsequent tag bytes follow; b8 set means one more.
		for {
			if i >= len(b) || i >= 3 {
				return Object{}, nil, fmt.Errorf("%w: tag too long", ErrMalformed)
			}
			tag = tag<<8 | uint32(b[i])
			i++
			if b[i-1]&0x80 == 0 {
				break
			}
		}
	}
	if i >= len(b) {
		return Object{}, nil, fmt.Errorf("%w: missing length", ErrMalformed)
	}
	l := int(b[i])
	i++
	if l&0x80 != 0 {
		n := l & 0x7F
		if n == 0 || n > 3 {
			return Object{}, nil, fmt.Errorf("%w: length of %d bytes", ErrMalformed, n)
		}
		if i+n > len(b) {
			return Object{}, nil, fmt.Errorf("%w: truncated length", ErrMalformed)
		}
		l = 0
		for _, c := range b[i : i+n] {
			l = l<<8 | int(c)
		}
		i += n
	}
	if l > len(b)-i {
		return Object{}, nil, fmt.Errorf("%w: value of %d bytes, %d left", ErrMalformed, l, len(b)-i)
	}
	return Object{Tag: tag, Value: b[i : i+l : i+l]}, b[i+l:], nil
}

// Parse reads all data objects of b (one level, not recursive).
func Parse(b []byte) ([]Object, error) {
	var out []Object
	for {
		for len(b) > 0 && (b[0] == 0x00 || b[0] == 0xFF) {
			b = b[1:]
		}
		if len(b) == 0 {
			return out, nil
		}
		o, rest, err := ReadOne(b)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
		b = rest
	}
}

// Find returns the value of the first object with tag in b, at this level only.
func Find(b []byte, tag uint32) ([]byte, bool, error) {
	objs, err := Parse(b)
	if err != nil {
		return nil, false, err
	}
	for _, o := range objs {
		if o.Tag == tag {
			return o.Value, true, nil
		}
	}
	return nil, false, nil
}

// Append appends the encoding of tag and value to dst, with the shortest definite length.
func Append(dst []byte, tag uint32, value []byte) []byte {
	switch {
	case tag > 0xFFFF:
		dst = append(dst, byte(tag>>16), byte(tag>>8), byte(tag))
	case tag > 0xFF:
		dst = append(dst, byte(tag>>8), byte(tag))
	default:
		dst = append(dst, byte(tag))
	}
	l := len(value)
	switch {
	case l < 0x80:
		dst = append(dst, byte(l))
	case l <= 0xFF:
		dst = append(dst, 0x81, byte(l))
	case l <= 0xFFFF:
		dst = append(dst, 0x82, byte(l>>8), byte(l))
	default:
		dst = append(dst, 0x83, byte(l>>16), byte(l>>8), byte(l))
	}
	return append(dst, value...)
}

// Encode returns the encoding of one object.
func Encode(tag uint32, value []byte) []byte { return Append(nil, tag, value) }

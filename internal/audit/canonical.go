package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// CanonicalJSON returns the canonical encoding of ev, the bytes the hash chain and the Merkle tree commit to.
//
// The encoding is a JSON object with the fields time, kind, actor, subject and data, always all five, always in
// that order, with no insignificant white space. time is UTC in RFC 3339 with nanoseconds and trailing zeros
// removed (time.RFC3339Nano); strings are encoded as encoding/json encodes them; data is ev.Data compacted
// (json.Compact), or null when empty. Two events that differ only in the time zone of Time, in white space
// inside Data, or in a nil versus a JSON null Data have the same encoding.
//
// It fails if Kind is empty, Time is zero or outside years 0-9999, a string is not valid UTF-8, or Data is
// not valid JSON.
func CanonicalJSON(ev Event) ([]byte, error) {
	if ev.Kind == "" {
		return nil, errors.New("audit: event has no kind")
	}
	if ev.Time.IsZero() {
		return nil, errors.New("audit: event has no time")
	}
	t := ev.Time.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		return nil, fmt.Errorf("audit: event time year %d out of range", y)
	}
	var b bytes.Buffer
	b.Grow(96 + len(ev.Kind) + len(ev.Actor) + len(ev.Subject) + len(ev.Data))
	b.WriteString(`{"time":"`)
	b.WriteString(t.Format(time.RFC3339Nano))
	b.WriteString(`","kind":`)
	if err := writeString(&b, "kind", ev.Kind); err != nil {
		return nil, err
	}
	b.WriteString(`,"actor":`)
	if err := writeString(&b, "actor", ev.Actor); err != nil {
		return nil, err
	}
	b.WriteString(`,"subject":`)
	if err := writeString(&b, "subject", ev.Subject); err != nil {
		return nil, err
	}
	b.WriteString(`,"data":`)
	if len(bytes.TrimSpace(ev.Data)) == 0 {
		b.WriteString("null")
	} else if err := json.Compact(&b, ev.Data); err != nil {
		return nil, errors.New("audit: event data is not valid JSON")
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func writeString(b *bytes.Buffer, field, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("audit: event %s is not valid UTF-8", field)
	}
	enc, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("audit: event %s: %w", field, err)
	}
	b.Write(enc)
	return nil
}

// ParseEvent decodes an event from its canonical encoding (or any JSON object with the same fields). A JSON
// null Data decodes as nil Data, so ParseEvent(CanonicalJSON(ev)) has the canonical encoding of ev.
func ParseEvent(b []byte) (Event, error) {
	var ev Event
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		return Event{}, fmt.Errorf("audit: malformed event: %w", err)
	}
	if dec.More() {
		return Event{}, errors.New("audit: malformed event: trailing data")
	}
	if bytes.Equal(bytes.TrimSpace(ev.Data), []byte("null")) {
		ev.Data = nil
	}
	ev.Time = ev.Time.UTC()
	return ev, nil
}

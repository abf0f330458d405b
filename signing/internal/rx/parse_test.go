package rx

import (
	"encoding/json"
	"reflect"
	"testing"
	"unicode/utf8"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"minimal", `{"resourceType":"Bundle","entry":[]}`, true},
		{"identifiers", `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"u","resource":{"resourceType":"Patient","identifier":[{"system":"s","value":"0499370899"}],"x":[1,-2.5e3,true,null,{"a":"\u00e9"}]}}]}`, true},
		{"escaped value", `{"resourceType":"Bund\u006ce"}`, true},
		{"duplicate resourceType", `{"resourceType":"Bundle","resourceType":"Other"}`, false},
		{"duplicate identifier value", `{"entry":[{"resource":{"identifier":[{"value":"1","value":"2"}]}}]}`, false},
		{"case alias", `{"resourceType":"Bundle","ResourceType":"X"}`, false},
		{"escaped key alias", `{"resource\u0054ype":"X"}`, false},
		{"trailing comma", `{"a":1,}`, false},
		{"trailing garbage", `{} x`, false},
		{"leading zero", `{"a":01}`, false},
		{"control char", "{\"a\":\"\x01\"}", false},
		{"bad escape", `{"a":"\x"}`, false},
		{"deep", string(make([]byte, 0)) + deep(100), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			if (err == nil) != tc.ok {
				t.Fatalf("Parse: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func deep(n int) string {
	s := `{"a":`
	for i := 0; i < n; i++ {
		s += `[`
	}
	for i := 0; i < n; i++ {
		s += `]`
	}
	return s + `}`
}

// FuzzParse compares Parse with encoding/json: whatever Parse accepts is valid JSON and reads as
// json.Unmarshal reads it; valid JSON without repeated members or deep nesting is accepted.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","identifier":[{"system":"a","value":"b"}]}}]}`))
	f.Add([]byte(`{"a":[1,2,{"b":null}],"entry":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := Parse(b)
		if err != nil {
			return
		}
		if !utf8.Valid(b) {
			return // encoding/json replaces invalid UTF-8; Parse keeps bytes (national codes are ASCII digits)
		}
		if !json.Valid(b) {
			t.Fatalf("Parse accepted invalid JSON %q", b)
		}
		var want Bundle
		if err := json.Unmarshal(b, &want); err != nil {
			return // e.g. a member of another JSON type than Bundle's field: Parse skips nothing it reads
		}
		if !reflect.DeepEqual(normal(got), normal(want)) {
			t.Fatalf("Parse %+v, encoding/json %+v", got, want)
		}
	})
}

func normal(b Bundle) Bundle {
	if len(b.Entry) == 0 {
		b.Entry = nil
	}
	for i := range b.Entry {
		if len(b.Entry[i].Resource.Identifier) == 0 {
			b.Entry[i].Resource.Identifier = nil
		}
	}
	return b
}
